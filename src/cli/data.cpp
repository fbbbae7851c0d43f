// smoe data synth: writes the built-in synthetic task suite.
#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/options.h"
#include "smoe/eval/synth.h"

namespace smoe {

int run_data(int argc, char** argv) {
  SynthOptions o;
  std::string what;
  po::options_description opts("smoe data options");
  opts.add_options()("what", po::value(&what)->required(), "what to write: synth")(
      "out", po::value(&o.out)->required(), "folder to write DIR/<task>/{train,eval}.jsonl into")(
      "seed", po::value(&o.seed)->default_value(o.seed), "seed")(
      "facts", po::value(&o.facts)->default_value(o.facts), "facts per task")(
      "train", po::value(&o.train)->default_value(o.train), "training lines per task")(
      "eval", po::value(&o.eval)->default_value(o.eval), "eval examples per task and record kind (at most --facts)")(
      "overwrite", po::bool_switch(&o.overwrite), kOverwriteHelp);
  po::positional_options_description pos;
  pos.add("what", 1);
  po::variables_map vm;
  // `smoe data synth --out DIR`: the first argument names what to write.
  std::vector<char*> args(argv, argv + argc);
  if (argc > 1 && argv[1][0] != '-') {
    static std::string flag = "--what";
    args.insert(args.begin() + 1, flag.data());
  }
  if (!parse_job_options(static_cast<int>(args.size()), args.data(),
                         {"data", "synth --out DIR [--seed S] [--facts N] [--train N] [--eval N]",
                          "Writes the built-in synthetic multi-task suite (four tasks of stored knowledge, each in "
                          "its own characters; train and eval splits)."},
                         opts, vm))
    return 0;
  SMOE_CHECK_INPUT(what == "synth", "smoe data knows 'synth', not '", clip(what), "'");
  o.inputs = option_inputs(vm, {});
  synth_suite(o);
  return 0;
}

}  // namespace smoe
