#include "smoe/core/error.h"

#include <cerrno>
#include <cstring>

namespace smoe {

std::string errno_text() { return std::strerror(errno); }

std::string clip(const std::string& text, size_t limit) {
  std::string out = text.size() > limit ? text.substr(0, limit) : text;
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  if (text.size() > limit) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

}  // namespace smoe
