// Errors and checks.
//
// Two kinds of failure, kept apart as in c10: an InputError is the user's (bad
// option, bad file) and exits with status 2; a RuntimeError is ours or the
// machine's (an invariant broke, a system call failed) and exits with status 1.
// Every message says what was expected and what was seen, and names the file
// where there is one.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace smoe {

class Error : public std::runtime_error {
 public:
  Error(const std::string& what, int exit_status) : std::runtime_error(what), exit_status_(exit_status) {}
  int exit_status() const { return exit_status_; }

 private:
  int exit_status_;
};

// Bad usage or bad input: exit status 2.
class InputError : public Error {
 public:
  explicit InputError(const std::string& what) : Error(what, 2) {}
};

// A failure at run time that the input did not cause: exit status 1.
class RuntimeError : public Error {
 public:
  explicit RuntimeError(const std::string& what) : Error(what, 1) {}
};

// Stopped by SIGTERM or SIGUSR1 where there was nothing to checkpoint yet: exit status 3.
class StopError : public Error {
 public:
  explicit StopError(const std::string& what) : Error(what, 3) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<<.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

// errno's text for a failed system call.
std::string errno_text();

// Input quoted in a message: at most `limit` bytes, control bytes shown as '?', and
// the full length said when cut, so a 50 MB record never floods a log.
std::string clip(const std::string& text, size_t limit = 80);

}  // namespace smoe

// A check on user input: throws InputError with the message.
#define SMOE_CHECK_INPUT(cond, ...) \
  do {                              \
    if (!(cond)) throw ::smoe::InputError(::smoe::str(__VA_ARGS__)); \
  } while (0)

// An internal invariant: throws RuntimeError naming file:line and the condition.
#define SMOE_ASSERT(cond, ...)                                                               \
  do {                                                                                       \
    if (!(cond))                                                                             \
      throw ::smoe::RuntimeError(::smoe::str(__FILE__, ":", __LINE__, ": internal check '", \
                                             #cond, "' failed: ", ##__VA_ARGS__));          \
  } while (0)

// A system call that returns -1 on failure: throws RuntimeError with errno's text.
#define SMOE_CHECK_SYS(call, ...)                                                              \
  do {                                                                                         \
    if ((call) == -1)                                                                          \
      throw ::smoe::RuntimeError(::smoe::str(__VA_ARGS__, ": ", ::smoe::errno_text(), " (", \
                                             __FILE__, ":", __LINE__, ")"));                 \
  } while (0)
