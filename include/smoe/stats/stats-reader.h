// Reading a task's statistics back from stats.h5 (docs/stats-h5.md).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "smoe/stats/schema.h"

namespace smoe {

struct TaskStatsData {
  std::string path, task;
  std::map<std::string, std::string> attrs;  // the file's string attributes (provenance)
  std::vector<LayerStats> layers;             // MoE layers, in order
};

// InputError naming the file when it is not a complete smoe stats file, when the
// task is absent (listing those present), or when a dataset is missing or misshapen.
TaskStatsData read_task_stats(const std::string& path, const std::string& task);

}  // namespace smoe
