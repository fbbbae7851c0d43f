// The built-in synthetic multi-task suite: small tasks that need different
// skills (arithmetic, string reversal, sorting, counting, a toy grammar, key-value
// lookup), so that experts have something to specialise on. Deterministic for a
// seed. Each task has a train split (text) and an eval split holding the three
// record kinds smoe eval scores: text (perplexity), multiple choice, prompt/answer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smoe {

const std::vector<std::string>& synth_task_names();

struct SynthOptions {
  uint64_t seed = 0;
  int64_t train = 2000;  // training examples per task
  int64_t eval = 100;    // eval examples per task and record kind
};

// Writes DIR/<task>/train.jsonl and DIR/<task>/eval.jsonl for every task.
void write_synth_suite(const std::string& dir, const SynthOptions& options);

}  // namespace smoe
