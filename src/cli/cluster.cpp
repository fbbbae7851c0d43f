// smoe cluster: the options of prune/cluster.h.
#include <iostream>

#include "jobs.h"
#include "smoe/core/options.h"
#include "smoe/parallel/job.h"
#include "smoe/prune/cluster.h"

namespace smoe {

int run_cluster(int argc, char** argv) {
  ClusterJobOptions o;
  ClusterOptions& c = o.cluster;
  std::string method, budget, merge_weight, router;
  int64_t index = -1;
  po::options_description opts("smoe cluster options");
  opts.add_options()("stats", po::value(&o.stats)->required(), "statistics file from smoe collect")(
      "task", po::value(&o.task), "task in the statistics file")(
      "method", po::value(&method), choice_list(method_names()).c_str())(
      "factor", po::value(&c.factor), "pruning factor: keep E / factor experts per layer (or in total, adaptive)")(
      "experts", po::value(&c.experts), "or keep this many experts per layer")(
      "budget", po::value(&budget)->default_value(choice_name(budget_names(), c.budget)), choice_list(budget_names()).c_str())(
      "out", po::value(&o.out)->required(), "plan file to write; {task}, {method} and {factor} are replaced (for grids)")(
      "seed", po::value(&c.seed)->default_value(c.seed), "seed for clustering")(
      "restarts", po::value(&c.restarts)->default_value(c.restarts), "k-means restarts (uncurl)")(
      "merge-weight", po::value(&merge_weight)->default_value(choice_name(merge_weight_names(), c.merge_weight)),
      ("merge weights: " + choice_list(merge_weight_names())).c_str())(
      "router", po::value(&router)->default_value(choice_name(router_policy_names(), c.router_policy)),
      "router row of a merged group: most-used (the reference member's) or weighted (the merge-weighted mean)")(
      "model", po::value(&o.model), "checkpoint folder (naee only: it runs the experts)")(
      "naee-limit", po::value(&c.naee_limit)->default_value(c.naee_limit),
      "naee: search every kept subset while there are at most this many, greedy beyond")(
      "grid", po::value(&o.grid), "INI file with [grid] tasks, methods, factors: run entry --index of it")(
      "index", po::value(&index), "entry of the grid (default: $SLURM_ARRAY_TASK_ID)")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads")(
      "overwrite", po::bool_switch(&o.overwrite), kOverwriteHelp);
  add_device_option(opts);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"cluster", "--stats stats.h5 --task NAME --method M --factor F --out plan.h5",
                                      "Groups each MoE layer's experts for one task by one method and writes the "
                                      "plan (groups, merge weights, router policy) to an HDF5 file."},
                         opts, vm))
    return 0;
  if (vm.count("method")) o.method = parse_choice(method_names(), "--method", method);
  if (vm.count("index")) o.index = index;
  c.budget = parse_choice(budget_names(), "--budget", budget);
  c.merge_weight = parse_choice(merge_weight_names(), "--merge-weight", merge_weight);
  c.router_policy = parse_choice(router_policy_names(), "--router", router);
  o.inputs = option_inputs(vm, {"stats", "model", "grid"});
  JobContext context(job_setup("cluster", argc, argv, vm));
  cluster(o, context);
  return 0;
}

int run_grid(int argc, char** argv) {
  std::string grid;
  int64_t index = -1;
  po::options_description opts("smoe grid options");
  opts.add_options()("grid", po::value(&grid)->required(), "INI file with [grid] tasks, methods, factors")(
      "index", po::value(&index), "entry of the grid (default: $SLURM_ARRAY_TASK_ID)");
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"grid", "--grid grid.ini [--index I]",
                                      "Prints entry I of a grid as one line: TASK METHOD FACTOR (the order of "
                                      "smoe cluster --grid: factors fastest, then methods, then tasks)."},
                         opts, vm))
    return 0;
  const GridEntry e = grid_entry(grid, vm.count("index") ? std::optional<int64_t>(index) : std::nullopt);
  std::cout << e.task << ' ' << choice_name(method_names(), e.method) << ' ' << e.factor << '\n';
  return 0;
}

}  // namespace smoe
