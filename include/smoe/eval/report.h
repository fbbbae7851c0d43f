// The study's report: many results.json files (from smoe eval) in, a table
// (Markdown and CSV) and a plot of quality against pruning factor out.
#pragma once

#include <string>
#include <vector>

namespace smoe {

struct ReportOptions {
  std::vector<std::string> results;  // results.json files, or folders searched for them
  std::string out;                   // folder for report.md, report.csv, quality.svg
  std::string metric = "perplexity,none";
  std::string plot_format = "svg";   // svg or png
};

// Returns the number of rows written.
size_t write_report(const ReportOptions& options);

}  // namespace smoe
