#include "smoe/core/numbers.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "smoe/core/error.h"

namespace smoe {

int64_t parse_int(const std::string& text, const std::string& what) {
  const bool digits = !text.empty() && text.find_first_not_of("0123456789", text[0] == '-' || text[0] == '+') ==
                                           std::string::npos && text.size() > (text[0] == '-' || text[0] == '+' ? 1u : 0u);
  SMOE_CHECK_INPUT(digits, what, ": '", clip(text), "' is not an integer");
  errno = 0;
  const long long v = std::strtoll(text.c_str(), nullptr, 10);
  SMOE_CHECK_INPUT(errno != ERANGE, what, ": ", clip(text), " is beyond the integers smoe reads (|n| < 2^63)");
  return v;
}

double parse_number(const std::string& text, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  const double v = text.empty() ? NAN : std::strtod(text.c_str(), &end);
  const bool whole = !text.empty() && end == text.c_str() + text.size() && !std::isspace(static_cast<unsigned char>(text[0]));
  SMOE_CHECK_INPUT(whole && std::isfinite(v) && errno != ERANGE, what, ": '", clip(text),
                   "' is not a finite number");
  return v;
}

}  // namespace smoe
