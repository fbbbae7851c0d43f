#include "smoe/core/error.h"

#include <cerrno>
#include <cstring>

namespace smoe {

std::string errno_text() { return std::strerror(errno); }

}  // namespace smoe
