// smoe prune: the options of prune/prune.h.
#include "jobs.h"
#include "smoe/core/options.h"
#include "smoe/prune/prune.h"

namespace smoe {

int run_prune(int argc, char** argv) {
  PruneJobOptions o;
  bool no_align = false;
  po::options_description opts("smoe prune options");
  opts.add_options()("model", po::value(&o.model)->required(), "checkpoint folder (HF layout)")(
      "plan", po::value(&o.plan)->required(), "plan from smoe cluster")(
      "out", po::value(&o.out)->required(), "folder for the pruned checkpoint (replaced when complete)")(
      "no-align", po::bool_switch(&no_align), "merge experts without aligning their hidden units first")(
      "overwrite", po::bool_switch(&o.overwrite), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"prune", "--model DIR --plan plan.h5 --out DIR",
                                      "Writes the checkpoint pruned by a plan, in the model family's own layout, "
                                      "tensor by tensor."},
                         opts, vm))
    return 0;
  o.prune.align = !no_align;
  o.inputs = option_inputs(vm, {});
  prune(o);
  return 0;
}

}  // namespace smoe
