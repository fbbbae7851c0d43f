// smoe collect: runs a checkpoint expert-parallel over one or more task corpora
// and writes their routing statistics to stats.h5 (docs/stats-h5.md).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "smoe/core/choices.h"
#include "smoe/parallel/job.h"

namespace smoe {

struct CollectOptions {
  std::string model;                                       // checkpoint folder
  std::vector<std::pair<std::string, std::string>> tasks;  // (name, corpus: JSONL or indexed dataset)
  std::string out;                                         // stats.h5
  std::vector<std::string> inputs;                         // other files the options name (--config)
  ComputeDtype dtype = ComputeDtype::F32;
  int64_t context = 2048;
  int64_t batch = 8;
  std::string tokenizer;                                   // make_tokenizer's spec; "": the model's own
  Schedule schedule = Schedule::Default;
  int64_t max_tokens = 0;                                  // of each corpus; 0: all
  bool out_mean = false;
  int64_t sample = 0;                                      // rows of hidden_sample per layer
  uint64_t seed = 0;
  int64_t checkpoint_tokens = 0;                           // 0: off
  double checkpoint_minutes = 10;                          // 0: off
  bool resume = false;
  double progress_seconds = 30;
  std::string placement;                                   // placement map; "": contiguous blocks
  double capacity_factor = 0;
  bool overwrite = false;
};

// Every rank calls. Checkpointed: a stop signal was answered with a working file
// (OUT.work.h5) from which --resume continues.
JobEnd collect(const CollectOptions& options, JobContext& context);

}  // namespace smoe
