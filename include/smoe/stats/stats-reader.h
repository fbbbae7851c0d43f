// Reading a task's statistics back from stats.h5 (docs/stats-h5.md).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

namespace smoe {

struct LayerStatsData {
  int64_t layer = 0, num_experts = 0, top_k = 0, tokens = 0;
  at::Tensor count, gate_sum, prob_sum, coact, logit_sum, logit_gram, act_norm_sum, reap_sum;
  at::Tensor out_mean;       // undefined unless collected with --out-mean
  at::Tensor hidden_sample;  // undefined unless collected with --sample
};

struct TaskStatsData {
  std::string path, task;
  std::map<std::string, std::string> attrs;  // the file's string attributes (provenance)
  std::vector<LayerStatsData> layers;        // MoE layers, in order
};

// InputError naming the file when it is not a complete smoe stats file, when the
// task is absent (listing those present), or when a dataset is missing or misshapen.
TaskStatsData read_task_stats(const std::string& path, const std::string& task);

}  // namespace smoe
