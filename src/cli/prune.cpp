// smoe prune: applies a plan to a checkpoint, writing the pruned checkpoint.
#include <ATen/ATen.h>

#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/options.h"
#include "smoe/core/output.h"
#include "smoe/model/checkpoint.h"
#include "smoe/io/outputs.h"
#include "smoe/prune/plan.h"
#include "smoe/prune/prune.h"

namespace smoe {

int run_prune(int argc, char** argv) {
  po::options_description opts("smoe prune options");
  opts.add_options()("model", po::value<std::string>()->required(), "checkpoint folder (HF layout)")(
      "plan", po::value<std::string>()->required(), "plan from smoe cluster")(
      "out", po::value<std::string>()->required(), "folder for the pruned checkpoint (replaced when complete)")(
      "no-align", po::bool_switch(), "merge experts without aligning their hidden units first")(
      "overwrite", po::bool_switch(), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"prune", "--model DIR --plan plan.h5 --out DIR",
                                      "Writes the checkpoint pruned by a plan, in the model family's own layout, "
                                      "tensor by tensor."},
                         opts, vm))
    return 0;
  const std::string plan_path = vm["plan"].as<std::string>();
  OutputSpec spec = folder_output(vm["out"].as<std::string>(), "prune");
  spec.overwrite = vm["overwrite"].as<bool>();
  spec.inputs = option_inputs(vm, {"model", "plan"});
  AtomicOutput output(spec);
  Checkpoint checkpoint(vm["model"].as<std::string>());
  Plan plan = read_plan(plan_path);
  PruneSummary s = prune_checkpoint(checkpoint, plan, plan_path, output.temp(), {!vm["no-align"].as<bool>()});
  output.commit();
  log_info(str("prune: ", s.experts_before, " experts -> ", s.experts_after, ", ", s.bytes_before >> 20, " MB -> ",
               s.bytes_after >> 20, " MB; wrote ", output.path()));
  return 0;
}

}  // namespace smoe
