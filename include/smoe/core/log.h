// Log lines for batch jobs: timestamped, on stderr, one line each so that they
// read well in a Slurm log file. Only the process set as the logger (rank 0)
// prints info lines; errors print from every rank.
#pragma once

#include <string>

namespace smoe {

void set_log_rank(int rank);
void log_info(const std::string& message);
void log_error(const std::string& message);
// The time now in UTC, ISO 8601: "2026-11-30T17:40:00Z" (provenance of outputs).
std::string utc_now();

}  // namespace smoe
