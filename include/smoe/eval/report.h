// The study's report: many results.json files (from smoe eval) in, a table
// (Markdown and CSV) and a plot of quality against pruning factor out.
#pragma once

#include <string>
#include <vector>

namespace smoe {

struct ReportOptions {
  std::vector<std::string> results;  // results.json files (find_results)
  std::string out;                   // an existing folder for report.md, report.csv, quality.svg
  std::string metric = "perplexity,none";
  std::string plot_format = "svg";   // svg or png
};

// The results files named by --results: files as given, folders searched for
// *result*.json; InputError when a name is neither or nothing is found.
std::vector<std::string> find_results(const std::vector<std::string>& results);
// InputError for an unknown --metric or --plot-format.
void check_report_options(const ReportOptions& options);

// Returns the number of rows written.
size_t write_report(const ReportOptions& options);

}  // namespace smoe
