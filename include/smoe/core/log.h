// Log lines for batch jobs: timestamped, on stderr, one line each so that they
// read well in a Slurm log file. Only the process set as the logger (rank 0)
// prints info lines; errors print from every rank.
#pragma once

#include <string>

namespace smoe {

void set_log_rank(int rank);
void log_info(const std::string& message);
void log_error(const std::string& message);

}  // namespace smoe
