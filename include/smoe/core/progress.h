// Progress lines for long jobs, from rank 0, at most one per interval:
//   collect code: 120000/500000 tokens (24.0%), 8120 tok/s, ETA 0:00:46
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

 private:
  std::string label_, unit_;
  int64_t total_;
  double interval_;
  int64_t start_done_ = -1;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace smoe
