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
      "the metric of the plot and of the comparison with training from scratch")(
      "plot-format", po::value<std::string>(&o.plot_format)->default_value("svg"), "svg or png")(
      "overwrite", po::bool_switch(), kOverwriteHelp);
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"report", "--results DIR... --out DIR",
                                      "Turns results files into the study's table (Markdown, CSV) and a plot of "
                                      "quality against pruning factor, one line per pretrained expert count and "
                                      "method. Results are told apart by their smoe.labels (experts, method, "
                                      "factor; method 'scratch' for models trained from scratch)."},
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
  log_info(str("report: ", rows, " rows; wrote ", output.path(), "/report.md, report.csv, quality.", o.plot_format));
  return 0;
}

}  // namespace smoe
