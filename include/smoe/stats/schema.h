// The statistics of a MoE layer (docs/stats-h5.md), one name per field
// everywhere: the collector's accumulators, stats.h5, collect's working file and
// the reader. A new summed statistic is one entry of summed_stats() (and its
// computation in the collector); allocation, checkpoints, the reduction over
// ranks, writing and reading with checks follow the table.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace smoe {

struct LayerStats {
  int64_t layer = 0, num_experts = 0, top_k = 0;
  int64_t tokens = 0;             // tokens routed through the layer
  // Summed over tokens (and ranks): see summed_stats().
  at::Tensor count, gate_sum, prob_sum, coact, logit_sum, logit_gram, act_norm_sum, reap_sum;
  at::Tensor out_mean;            // [E, d] float64 (collect --out-mean): every expert's mean output over all
                                  // tokens; a sum while collecting, divided by tokens once reduced
  at::Tensor hidden_sample;       // [n, d] float32 (collect --sample): the layer inputs of sampled tokens
  at::Tensor hidden_sample_keys;  // [n] int64: their keys, ascending (collector and working file only)
};

// A statistic summed over tokens and ranks, stored as it is.
struct SummedStat {
  const char* name;               // in LayerStats, stats.h5 and the working file
  bool pairs;                     // [E, E]; else [E]
  bool whole;                     // int64 counts; else float64 sums
  at::Tensor LayerStats::*field;
};

inline const std::vector<SummedStat>& summed_stats() {
  static const std::vector<SummedStat> stats = {
      {"count", false, true, &LayerStats::count},                // top-k selections
      {"gate_sum", false, false, &LayerStats::gate_sum},         // combine weights
      {"prob_sum", false, false, &LayerStats::prob_sum},         // router scores of every expert (soft counts)
      {"coact", true, true, &LayerStats::coact},                 // chosen together for a token (diagonal = count)
      {"logit_sum", false, false, &LayerStats::logit_sum},       // router logits
      {"logit_gram", true, false, &LayerStats::logit_gram},      // z z^T over router logits z
      {"act_norm_sum", false, false, &LayerStats::act_norm_sum}, // ||f_e(x)|| over routed tokens
      {"reap_sum", false, false, &LayerStats::reap_sum},         // g_e(x) ||f_e(x)|| over routed tokens
  };
  return stats;
}

}  // namespace smoe
