// smoe plan-resources: memory per rank, all-to-all volume and a time estimate for
// collecting statistics with a model, from its config.json alone (docs/scale.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smoe {

struct ResourceReportOptions {
  std::string model;                 // checkpoint folder or its config.json
  std::vector<int> ranks{8, 16, 32, 64};
  double tokens = 1e8;               // corpus tokens to collect over
  int64_t context = 4096, batch = 1;  // collect's
  std::string gpu = "h100";          // cluster_preset's name
  int gpus_per_node = 8;
  double mfu = 0.35;
  bool json = false;                 // the figures as JSON instead of a table
};

// The report as printed: a Markdown table with notes, or JSON.
std::string resource_report(const ResourceReportOptions& options);

}  // namespace smoe
