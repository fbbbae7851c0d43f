// The grouping methods (DESIGN.md §7) and the expert budgets: statistics in, a
// plan out. See docs/methods.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "smoe/prune/plan.h"
#include "smoe/stats/stats-reader.h"

namespace smoe {

class Communicator;
class Decoder;

struct ClusterOptions {
  std::string method;                    // frequency, uncurl, mc-smoe, hc-smoe, reap, naee
  std::string budget = "uniform";        // uniform or adaptive
  double factor = 0;                     // E / factor experts kept (uniform) or in total (adaptive)
  int64_t experts = 0;                   // or this many per layer (uniform)
  uint64_t seed = 0;
  int restarts = 10;                     // k-means restarts (uncurl)
  std::string merge_weight = "gate_sum"; // gate_sum or count
  std::string router_policy = "most-used";
  int64_t naee_limit = 20000;            // exhaustive search while C(E, k) is at most this
};

const std::vector<std::string>& method_names();

// Groups per layer. Uniform: E / factor (at least 1) or `experts`. Adaptive: one
// threshold on normalised frequency (count / (tokens * top_k)) over all layers,
// chosen so that about sum(E) / factor experts stay; at least one per layer.
std::vector<int64_t> layer_budgets(const TaskStatsData& stats, const ClusterOptions& options);

// NAEE evaluates candidate subsets on the layer's hidden sample with the layer's
// weights: `decoder` holds every expert of the layers (loaded one at a time);
// `comm` splits the candidates over the ranks. Other methods pass nullptrs.
Plan make_plan(const TaskStatsData& stats, const ClusterOptions& options, Decoder* decoder, Communicator* comm);

}  // namespace smoe
