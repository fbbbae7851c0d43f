// smoe collect: the options of stats/collect.h.
#include "jobs.h"
#include "smoe/core/options.h"
#include "smoe/core/signals.h"
#include "smoe/parallel/job.h"
#include "smoe/stats/collect.h"

namespace smoe {

int run_collect(int argc, char** argv) {
  CollectOptions o;
  std::string schedule;
  std::vector<std::string> tasks;
  po::options_description opts("smoe collect options");
  opts.add_options()("model", po::value(&o.model)->required(), "checkpoint folder (HF layout)")(
      "task", po::value(&tasks)->required()->composing(),
      "NAME=FILE: a task and its corpus, JSONL or a Megatron indexed dataset (PREFIX or folder) (repeatable)")(
      "out", po::value(&o.out)->required(), "statistics file to write (HDF5)")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads per rank (0: every core the rank may use)")(
      "context", po::value(&o.context)->default_value(o.context), "longest sequence; longer documents are cut")(
      "batch", po::value(&o.batch)->default_value(o.batch), "pieces of one document of equal length run together")(
      "tokenizer", po::value(&o.tokenizer), kTokenizerHelp)(
      "schedule", po::value(&schedule)->default_value(choice_name(schedule_names(), o.schedule)),
      "default (whole model loaded) or layerwise (one layer's experts at a time, hidden states held)")(
      "max-tokens", po::value(&o.max_tokens)->default_value(o.max_tokens), "use at most this many tokens of each corpus (0: all)")(
      "out-mean", po::bool_switch(&o.out_mean), "also record out_mean: every expert's mean output over all tokens (costly)")(
      "sample", po::value(&o.sample)->default_value(o.sample), "rows of hidden_sample per layer (0: none)")(
      "seed", po::value(&o.seed)->default_value(o.seed), "seed of the hidden_sample")(
      "checkpoint-tokens", po::value(&o.checkpoint_tokens)->default_value(o.checkpoint_tokens),
      "checkpoint into OUT.work.h5 every this many tokens (0: off)")(
      "checkpoint-minutes", po::value(&o.checkpoint_minutes)->default_value(o.checkpoint_minutes), "and every this many minutes (0: off)")(
      "resume", po::bool_switch(&o.resume), "continue from OUT.work.h5 if it exists")(
      "progress-seconds", po::value(&o.progress_seconds)->default_value(o.progress_seconds), "seconds between progress lines")(
      "placement", po::value(&o.placement), "expert placement map (JSON); default: contiguous blocks")(
      "capacity-factor", po::value(&o.capacity_factor)->default_value(o.capacity_factor), "drop routed slots beyond this capacity (0: none)")(
      "overwrite", po::bool_switch(&o.overwrite), kOverwriteHelp);
  add_device_option(opts);
  add_dtype_option(opts);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"collect", "--model DIR --task NAME=FILE [--task ...] --out stats.h5 [options]",
                                      "Runs the model over each task's corpus, experts sharded over the MPI ranks, "
                                      "and writes per-task, per-MoE-layer routing statistics to an HDF5 file."},
                         opts, vm))
    return 0;
  o.dtype = compute_dtype(vm);
  o.schedule = parse_choice(schedule_names(), "--schedule", schedule);
  o.tasks = parse_named_files(tasks, "--task");
  o.inputs = option_inputs(vm, {"model", "placement", "tokenizer"});
  JobContext context(job_setup("collect", argc, argv, vm));
  return collect(o, context) == JobEnd::Checkpointed ? kExitCheckpointed : 0;
}

}  // namespace smoe
