// Running an external program (gnuplot): an argument vector, never a shell.
#pragma once

#include <string>
#include <vector>

namespace smoe {

// Runs argv[0] (looked up in PATH) with `argv`, in folder `cwd`, its stdout and
// stderr written to `log`; waits for it. RuntimeError naming the program when it
// cannot start or does not exit with 0, quoting the end of its output.
void run_program(const std::vector<std::string>& argv, const std::string& cwd, const std::string& log);

}  // namespace smoe
