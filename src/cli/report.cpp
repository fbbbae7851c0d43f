// smoe report: the study's table and plot from many results.json files.
#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/options.h"
#include "smoe/core/output.h"
#include "smoe/io/outputs.h"
#include "smoe/eval/report.h"

namespace smoe {

int run_report(int argc, char** argv) {
  ReportOptions o;
  po::options_description opts("smoe report options");
  opts.add_options()("results", po::value<std::vector<std::string>>(&o.results)->required()->multitoken(),
                     "results.json files, or folders searched for *result*.json")(
      "out", po::value<std::string>(&o.out)->required(), "folder for report.md, report.csv and the plot")(
      "metric", po::value<std::string>(&o.metric)->default_value("perplexity,none"),
      "the primary metric: of the figures, the comparisons and the thresholds")(
      "bootstrap", po::value<int64_t>(&o.bootstrap)->default_value(2000), "paired bootstrap replicates per comparison")(
      "seed", po::value<uint64_t>(&o.seed)->default_value(0), "seed of the bootstrap")(
      "overwrite", po::bool_switch(), kOverwriteHelp);
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
  check_report_options(o);
  o.results = find_results(o.results);
  OutputSpec spec = folder_output(o.out, "report");
  spec.overwrite = vm["overwrite"].as<bool>();
  spec.inputs = o.results;
  for (const auto& config : option_inputs(vm, {})) spec.inputs.push_back(config);
  Output output(spec);
  o.out = output.temp();
  const size_t rows = write_report(o);
  output.commit();
  log_info(str("report: ", rows, " rows; wrote ", output.path(), "/report.md, report.csv, thresholds.csv and the "
                   "figures quality, thresholds and pareto (.png, .svg)"));
  return 0;
}

}  // namespace smoe
