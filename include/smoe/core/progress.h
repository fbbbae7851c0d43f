// Progress lines for long jobs, from rank 0, at most one per interval:
//   collect code: 120000/500000 tokens (24.0%), 8120 tokens/s, ETA 0:00:46
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace smoe {

class Progress {
 public:
  Progress(std::string label, std::string unit, int64_t total, double interval_seconds);
  // `done` so far; prints when the interval has passed (or `force`).
  void update(int64_t done, bool force = false);
  // A new total; `estimated` totals (of a corpus read as it streams) are shown with '~'.
  void set_total(int64_t total, bool estimated);

 private:
  std::string label_, unit_;
  int64_t total_;
  bool estimated_ = false;
  double interval_;
  int64_t start_done_ = -1;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace smoe
