// The study's report: many results.json files (from smoe eval) in; out, in one
// folder: report.md and report.csv (every metric with its 95% interval, the cost
// of every model, the paired comparison with the from-scratch model of equal
// size), thresholds.csv (the threshold pruning factor per pretrained expert count
// and method), and three figures, each as PNG and SVG: quality (small multiples,
// one panel per pretrained expert count), thresholds (the headline) and pareto
// (quality against expert parameters).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smoe {

struct ReportOptions {
  std::vector<std::string> results;  // results.json files, or folders searched (find_results)
  std::string out;                   // the report's folder
  std::vector<std::string> inputs;   // other files the options name (--config)
  bool overwrite = false;
  std::string metric = "perplexity,none";
  int64_t bootstrap = 2000;          // paired bootstrap replicates per comparison
  uint64_t seed = 0;                 // of the bootstrap
};

// The results files named by --results: files as given, folders searched for
// *result*.json; InputError when a name is neither or nothing is found.
std::vector<std::string> find_results(const std::vector<std::string>& results);
// InputError for an unknown --metric or a --bootstrap outside [100, 1e6].
void check_report_options(const ReportOptions& options);

// Writes the report into `dir` (an existing folder); returns the number of rows
// written to report.csv.
size_t write_report(const ReportOptions& options, const std::string& dir);
// The job: the results found, the report written to options.out as one AtomicOutput.
void report(const ReportOptions& options);

}  // namespace smoe
