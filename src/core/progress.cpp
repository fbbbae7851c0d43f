#include "smoe/core/progress.h"

#include <cstdio>

#include "smoe/core/log.h"

namespace smoe {

Progress::Progress(std::string label, std::string unit, int64_t total, double interval_seconds)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      interval_(interval_seconds),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

void Progress::set_total(int64_t total, bool estimated) {
  total_ = total;
  estimated_ = estimated;
}

void Progress::update(int64_t done, bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (start_done_ < 0) start_done_ = done;  // a resumed job counts its rate from here
  if (!force && std::chrono::duration<double>(now - last_).count() < interval_) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done - start_done_) / elapsed : 0.0;
  char eta[32] = "?";
  if (rate > 0 && total_ >= done) {
    const long s = static_cast<long>(static_cast<double>(total_ - done) / rate);
    std::snprintf(eta, sizeof eta, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  }
  char line[256];
  std::snprintf(line, sizeof line, "%s: %lld/%s%lld %s (%.1f%%), %.0f %s/s, ETA %s", label_.c_str(),
                static_cast<long long>(done), estimated_ ? "~" : "", static_cast<long long>(total_), unit_.c_str(),
                total_ > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100.0, rate,
                unit_.c_str(), eta);
  log_info(line);
}

}  // namespace smoe
