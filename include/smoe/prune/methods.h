// The grouping methods (DESIGN.md §7) and the expert budgets: statistics in, a
// plan out. See docs/methods.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "smoe/core/choices.h"
#include "smoe/prune/plan.h"
#include "smoe/stats/stats-reader.h"

namespace smoe {

class Communicator;
class Decoder;

enum class Method { Frequency, Uncurl, McSmoe, HcSmoe, Reap, Naee };
inline const ChoiceNames<Method>& method_names() {
  static const ChoiceNames<Method> names{{Method::Frequency, "frequency"}, {Method::Uncurl, "uncurl"},
                                        {Method::McSmoe, "mc-smoe"},       {Method::HcSmoe, "hc-smoe"},
                                        {Method::Reap, "reap"},            {Method::Naee, "naee"}};
  return names;
}

// How many experts each layer keeps: the same share everywhere, or by one
// frequency threshold over all layers.
enum class Budget { Uniform, Adaptive };
inline const ChoiceNames<Budget>& budget_names() {
  static const ChoiceNames<Budget> names{{Budget::Uniform, "uniform"}, {Budget::Adaptive, "adaptive"}};
  return names;
}

// Each member's weight in its group's merge: its summed gates, or its selection count.
enum class MergeWeight { GateSum, Count };
inline const ChoiceNames<MergeWeight>& merge_weight_names() {
  static const ChoiceNames<MergeWeight> names{{MergeWeight::GateSum, "gate_sum"}, {MergeWeight::Count, "count"}};
  return names;
}

struct ClusterOptions {
  Method method = Method::Frequency;
  Budget budget = Budget::Uniform;
  double factor = 0;                     // E / factor experts kept (uniform) or in total (adaptive)
  int64_t experts = 0;                   // or this many per layer (uniform)
  uint64_t seed = 0;
  int restarts = 10;                     // k-means restarts (uncurl)
  MergeWeight merge_weight = MergeWeight::GateSum;
  RouterPolicy router_policy = RouterPolicy::MostUsed;
  int64_t naee_limit = 20000;            // exhaustive search while C(E, k) is at most this
};

// Groups per layer. Uniform: E / factor (at least 1) or `experts`. Adaptive: one
// threshold on normalised frequency (count / (tokens * top_k)) over all layers,
// chosen so that about sum(E) / factor experts stay; at least one per layer.
std::vector<int64_t> layer_budgets(const TaskStatsData& stats, const ClusterOptions& options);

// NAEE evaluates candidate subsets on the layer's hidden sample with the layer's
// weights: `decoder` holds every expert of the layers (loaded one at a time);
// `comm` splits the candidates over the ranks. Other methods pass nullptrs.
Plan make_plan(const TaskStatsData& stats, const ClusterOptions& options, Decoder* decoder, Communicator* comm);

}  // namespace smoe
