// smoe plan-resources: the options of model/resource-report.h.
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "jobs.h"
#include "smoe/core/error.h"
#include "smoe/core/options.h"
#include "smoe/model/resource-report.h"

namespace smoe {

namespace {

std::vector<int> rank_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    SMOE_CHECK_INPUT(!item.empty() && *end == '\0' && v >= 1 && v <= 1000000, "--ranks must be a comma-separated list of "
                     "positive integers, found '", clip(text), "'");
    out.push_back(static_cast<int>(v));
  }
  SMOE_CHECK_INPUT(!out.empty(), "--ranks must name at least one rank count");
  return out;
}

}  // namespace

int run_plan_resources(int argc, char** argv) {
  ResourceReportOptions o;
  std::string ranks;
  po::options_description opts("smoe plan-resources options");
  opts.add_options()("model", po::value(&o.model)->required(), "checkpoint folder or its config.json")(
      "ranks", po::value(&ranks)->default_value("8,16,32,64"), "rank (GPU) counts, comma-separated")(
      "tokens", po::value(&o.tokens)->default_value(o.tokens), "corpus tokens to collect statistics over")(
      "context", po::value(&o.context)->default_value(o.context), "collect's --context")(
      "batch", po::value(&o.batch)->default_value(o.batch), "collect's --batch")(
      "gpu", po::value(&o.gpu)->default_value(o.gpu), "h100, h200, a100, b200 or mi300x")(
      "gpus-per-node", po::value(&o.gpus_per_node)->default_value(o.gpus_per_node), "GPUs (ranks) per node")(
      "mfu", po::value(&o.mfu)->default_value(o.mfu), "fraction of the GPU's BF16 peak the forward pass reaches")(
      "json", po::bool_switch(&o.json), "print the figures as JSON instead of a table");
  po::variables_map vm;
  if (!parse_job_options(argc, argv, {"plan-resources", "--model DIR|config.json [options]",
                                      "Prints parameters, checkpoint size, memory per rank for both collect schedules, "
                                      "all-to-all volume per token and the time to collect statistics on a GPU cluster."},
                         opts, vm))
    return 0;
  o.ranks = rank_list(ranks);
  std::fputs(resource_report(o).c_str(), stdout);
  return 0;
}

}  // namespace smoe
