#include "smoe/core/log.h"

#include <cstdio>
#include <ctime>

namespace smoe {

namespace {
int g_rank = 0;

void emit(const char* level, const std::string& message) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
  std::fprintf(stderr, "[%s smoe r%d] %s%s\n", stamp, g_rank, level, message.c_str());
  std::fflush(stderr);
}
}  // namespace

void set_log_rank(int rank) { g_rank = rank; }

std::string utc_now() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void log_info(const std::string& message) {
  if (g_rank == 0) emit("", message);
}

void log_error(const std::string& message) { emit("error: ", message); }

}  // namespace smoe
