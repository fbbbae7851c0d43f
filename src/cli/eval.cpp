// smoe eval: the options of eval/eval-job.h.
#include "jobs.h"
#include "smoe/core/options.h"
#include "smoe/eval/eval-job.h"
#include "smoe/parallel/job.h"

namespace smoe {

int run_eval(int argc, char** argv) {
  EvalOptions o;
  std::vector<std::string> tasks, labels;
  po::options_description opts("smoe eval options");
  opts.add_options()("model", po::value(&o.model)->required(), "checkpoint folder (HF layout)")(
      "task", po::value(&tasks)->required()->composing(), "NAME=FILE: an eval set (repeatable)")(
      "out", po::value(&o.out)->required(), "results file to write (JSON)")(
      "label", po::value(&labels)->composing(),
      "KEY=VALUE recorded under 'smoe.labels' (e.g. experts=8, method=uncurl, factor=2); repeatable")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads per rank")(
      "context", po::value(&o.context)->default_value(o.context), "longest sequence the model sees")(
      "tokenizer", po::value(&o.tokenizer), kTokenizerHelp)(
      "placement", po::value(&o.placement), "expert placement map (JSON)")(
      "overwrite", po::bool_switch(&o.overwrite), kOverwriteHelp);
  add_device_option(opts);
  add_dtype_option(opts);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"eval", "--model DIR --task NAME=FILE [--task ...] --out results.json",
                                      "Evaluates a checkpoint on eval sets: perplexity and bits per byte, "
                                      "multiple-choice accuracy, exact match of greedy generation."},
                         opts, vm))
    return 0;
  o.dtype = compute_dtype(vm);
  o.tasks = parse_named_files(tasks, "--task");
  o.labels = parse_named_values(labels, "--label", "KEY=VALUE", false);
  o.inputs = option_inputs(vm, {"model", "placement", "tokenizer"});
  JobContext context(job_setup("eval", argc, argv, vm));
  evaluate_model(o, context);
  return 0;
}

}  // namespace smoe
