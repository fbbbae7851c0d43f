#include "smoe/core/options.h"

#include <sched.h>
#include <unistd.h>

#include <fstream>
#include <iostream>

#include "smoe/core/error.h"

namespace smoe {

bool parse_job_options(int argc, char** argv, const JobUsage& usage, po::options_description& options,
                       po::variables_map& vm) {
  po::options_description common("Common options");
  common.add_options()("help,h", "print this help and exit")(
      "config", po::value<std::string>(), "read options from this INI file (command-line options win)");
  po::options_description all;
  all.add(options).add(common);
  try {
    po::store(po::command_line_parser(argc, argv).options(all).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: smoe " << usage.job << " " << usage.synopsis << "\n\n" << usage.summary << "\n\n" << all;
      return false;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      SMOE_CHECK_INPUT(in.good(), path, ": cannot open config file: ", errno_text());
      try {
        po::store(po::parse_config_file(in, options), vm);
      } catch (const po::error& e) {
        throw InputError(str(path, ": ", e.what()));
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(str("smoe ", usage.job, ": ", e.what(), " (see smoe ", usage.job, " --help)"));
  }
  return true;
}

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  // The cores this process may run on: all of them alone, its share under
  // Slurm or a binding mpirun.
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

}  // namespace smoe
