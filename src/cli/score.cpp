// smoe score: the options of eval/score.h; prints the result as NAME=VALUE lines.
#include <cmath>
#include <cstdio>

#include "jobs.h"
#include "smoe/core/options.h"
#include "smoe/eval/score.h"
#include "smoe/parallel/job.h"

namespace smoe {

int run_score(int argc, char** argv) {
  ScoreOptions o;
  std::string executor;
  po::options_description opts("smoe score options");
  opts.add_options()("model", po::value(&o.model)->required(), "checkpoint folder (HF layout)")(
      "corpus", po::value(&o.corpus)->required(),
      "JSONL corpus ({\"text\": ...} or {\"input_ids\": [...]}), or a Megatron indexed dataset (PREFIX or folder)")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads (0: every core this process may use)")(
      "context", po::value(&o.context)->default_value(o.context), "longest sequence; longer documents are cut")(
      "batch", po::value(&o.batch)->default_value(o.batch), "pieces of one document of equal length run together, up to this many")(
      "tokenizer", po::value(&o.tokenizer), kTokenizerHelp)(
      "executor", po::value(&executor)->default_value(choice_name(executor_names(), o.executor)),
      "MoE execution: local, expert-parallel, or auto (expert-parallel under MPI with more than one rank)")(
      "placement", po::value(&o.placement), "expert placement map (JSON); default: contiguous blocks of experts")(
      "capacity-factor", po::value(&o.capacity_factor)->default_value(o.capacity_factor),
      "if > 0, each expert takes at most factor * T * k / E of a rank's T tokens; the lowest gates are dropped")(
      "logits", po::value(&o.logits), "write logits, tokens and routing choices to this .safetensors file")(
      "overwrite", po::bool_switch(&o.overwrite), kOverwriteHelp);
  add_device_option(opts);
  add_dtype_option(opts);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"score", "--model DIR --corpus FILE [options]",
                                      "Runs a checkpoint over a corpus and prints tokens, mean negative "
                                      "log-likelihood and perplexity=<value>."},
                         opts, vm))
    return 0;
  o.dtype = compute_dtype(vm);
  o.executor = parse_choice(executor_names(), "--executor", executor);
  o.inputs = option_inputs(vm, {"model", "placement", "tokenizer"});
  JobContext context(job_setup("score", argc, argv, vm));
  const ScoreResult r = score(o, context);
  if (context.rank() == 0) {
    std::printf("tokens=%lld\nnll=%.6f\nperplexity=%.6f\ntokens_per_second=%.1f\n",
                static_cast<long long>(r.predicted), r.nll, std::exp(r.nll), r.predicted / r.seconds);
    if (o.capacity_factor > 0)
      std::printf("dropped_slots=%lld\nrouted_slots=%lld\n", static_cast<long long>(r.dropped_slots),
                  static_cast<long long>(r.routed_slots));
  }
  return 0;
}

}  // namespace smoe
