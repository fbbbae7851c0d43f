// smoe eval: scores a checkpoint on task eval sets and writes results.json in the
// layout of lm-evaluation-harness (results -> task -> "metric,none"), with smoe's
// own record of the model, its cost, its plan and the run's labels.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "smoe/core/choices.h"

namespace smoe {

class JobContext;

struct EvalOptions {
  std::string model;                                        // checkpoint folder
  std::vector<std::pair<std::string, std::string>> tasks;   // (name, eval set)
  std::vector<std::pair<std::string, std::string>> labels;  // recorded under smoe.labels
  std::string out;                                          // results.json
  std::vector<std::string> inputs;                          // other files the options name (--config)
  ComputeDtype dtype = ComputeDtype::F32;
  int64_t context = 2048;
  std::string tokenizer;                                    // "": the model's own
  std::string placement;                                    // "": contiguous blocks
  bool overwrite = false;
};

// Every rank calls (experts sharded over the ranks); rank 0 writes the results.
void evaluate_model(const EvalOptions& options, JobContext& context);

}  // namespace smoe
