// smoe data synth: writes the built-in synthetic task suite.
#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/options.h"
#include "smoe/core/output.h"
#include "smoe/io/outputs.h"
#include "smoe/eval/synth.h"

namespace smoe {

int run_data(int argc, char** argv) {
  po::options_description opts("smoe data options");
  opts.add_options()("what", po::value<std::string>()->required(), "what to write: synth")(
      "out", po::value<std::string>()->required(), "folder to write DIR/<task>/{train,eval}.jsonl into")(
      "seed", po::value<uint64_t>()->default_value(0), "seed")(
      "facts", po::value<int64_t>()->default_value(200), "facts per task")(
      "train", po::value<int64_t>()->default_value(20000), "training lines per task")(
      "eval", po::value<int64_t>()->default_value(200), "eval examples per task and record kind (at most --facts)")(
      "overwrite", po::bool_switch(), kOverwriteHelp);
  po::positional_options_description pos;
  pos.add("what", 1);
  po::variables_map vm;
  // `smoe data synth --out DIR`: the first argument names what to write.
  std::vector<char*> args(argv, argv + argc);
  if (argc > 1 && argv[1][0] != '-') {
    static std::string what = "--what";
    args.insert(args.begin() + 1, what.data());
  }
  if (!parse_job_options(static_cast<int>(args.size()), args.data(),
                         {"data", "synth --out DIR [--seed S] [--facts N] [--train N] [--eval N]",
                          "Writes the built-in synthetic multi-task suite (four tasks of stored knowledge, each in "
                          "its own characters; train and eval splits)."},
                         opts, vm))
    return 0;
  SMOE_CHECK_INPUT(vm["what"].as<std::string>() == "synth", "smoe data knows 'synth', not '",
                   vm["what"].as<std::string>(), "'");
  for (const char* n : {"facts", "train", "eval"})
    SMOE_CHECK_INPUT(vm[n].as<int64_t>() >= 1 && vm[n].as<int64_t>() <= 10000000, "--", n, " must lie in [1, 1e7], found ",
                     vm[n].as<int64_t>());
  OutputSpec spec = folder_output(vm["out"].as<std::string>(), "data");
  spec.overwrite = vm["overwrite"].as<bool>();
  spec.inputs = option_inputs(vm, {});
  Output output(spec);
  write_synth_suite(output.temp(), {vm["seed"].as<uint64_t>(), vm["facts"].as<int64_t>(), vm["train"].as<int64_t>(),
                                      vm["eval"].as<int64_t>()});
  output.commit();
  log_info("data: wrote the synthetic suite to " + output.path());
  return 0;
}

}  // namespace smoe
