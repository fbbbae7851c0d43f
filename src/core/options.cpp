#include "smoe/core/options.h"

#include <sched.h>
#include <unistd.h>

#include <cmath>
#include <iostream>
#include <sstream>

#include "smoe/core/error.h"
#include "smoe/core/file.h"

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
      std::string text = read_file(path, "config file", 16u << 20);
      if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // a UTF-8 byte-order mark, as editors on Windows write
      std::istringstream in(text);
      try {
        po::store(po::parse_config_file(in, options), vm);
      } catch (const po::error& e) {
        throw InputError(str(path, ": ", e.what()));
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(str("smoe ", usage.job, ": ", clip(e.what(), 200), " (see smoe ", usage.job, " --help)"));
  }
  // Boost reads "inf" and "nan" as numbers; no option of smoe means either.
  for (const auto& [name, value] : vm)
    if (const double* d = boost::any_cast<double>(&value.value()))
      SMOE_CHECK_INPUT(std::isfinite(*d), "--", name, " must be a finite number, found ", *d);
  return true;
}

std::vector<std::string> option_inputs(const po::variables_map& vm, const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const std::string& name : names)
    if (vm.count(name) && vm[name].as<std::string>() != "byte") out.push_back(vm[name].as<std::string>());
  if (vm.count("config")) out.push_back(vm["config"].as<std::string>());
  return out;
}

std::vector<std::string> option_inputs(const po::variables_map& vm, const std::vector<std::string>& names,
                                       const std::vector<std::pair<std::string, std::string>>& named,
                                       const std::string& what) {
  std::vector<std::string> out = option_inputs(vm, names);
  for (const auto& [name, file] : named) {
    check_input_file(file, what);
    out.push_back(file);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_named_files(const std::vector<std::string>& specs,
                                                                   const std::string& option) {
  return parse_named_values(specs, option, "NAME=FILE", true);
}

std::vector<std::pair<std::string, std::string>> parse_named_values(const std::vector<std::string>& specs,
                                                                    const std::string& option, const std::string& form,
                                                                    bool value_required) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& spec : specs) {
    const size_t eq = spec.find('=');
    SMOE_CHECK_INPUT(eq != std::string::npos && eq > 0 && (!value_required || eq + 1 < spec.size()), option,
                     " must be ", form, ", found '", clip(spec), "'");
    const std::string name = spec.substr(0, eq);
    const bool plain = name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
                           std::string::npos && name != "." && name != ".." && name.size() <= 128;
    SMOE_CHECK_INPUT(plain, option, " name '", clip(name), "' must be letters, digits, '_', '-' or '.' (at most 128)");
    for (const auto& t : out) SMOE_CHECK_INPUT(t.first != name, option, " '", name, "' given twice");
    out.emplace_back(name, spec.substr(eq + 1));
  }
  return out;
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
