// smoe report: the study's table and plot from many results.json files.
#include "jobs.h"
#include "smoe/core/options.h"
#include "smoe/eval/report.h"

namespace smoe {

int run_report(int argc, char** argv) {
  ReportOptions o;
  po::options_description opts("smoe report options");
  opts.add_options()("results", po::value<std::vector<std::string>>(&o.results)->required()->multitoken(),
                     "results.json files, or folders searched for *result*.json")(
      "out", po::value<std::string>(&o.out)->required(), "folder for report.md, report.csv and the plot")(
      "metric", po::value(&o.metric)->default_value(o.metric),
      "the primary metric: of the figures, the comparisons and the thresholds")(
      "bootstrap", po::value(&o.bootstrap)->default_value(o.bootstrap), "paired bootstrap replicates per comparison")(
      "seed", po::value(&o.seed)->default_value(o.seed), "seed of the bootstrap")(
      "overwrite", po::bool_switch(&o.overwrite), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"report", "--results DIR... --out DIR",
                                      "Turns results files into the study's tables (report.md, report.csv: every "
                                      "metric with its 95% interval, each pruned model against the from-scratch "
                                      "model of equal size by a paired bootstrap), thresholds.csv, and the figures "
                                      "quality, thresholds and pareto (PNG and SVG). Results are told apart by "
                                      "their smoe.labels (experts, method, factor; method 'scratch' for models "
                                      "trained from scratch)."},
                         opts, vm))
    return 0;
  o.inputs = option_inputs(vm, {});
  report(o);
  return 0;
}

}  // namespace smoe
