// The built-in synthetic multi-task suite (DESIGN.md §9): four tasks of stored
// knowledge, each its own table of facts (key -> value) written in its own
// characters (lower case, upper case, digits, punctuation). Disjoint characters
// let routing tell the tasks apart, so that experts can specialise by task; facts
// to memorise make total expert capacity matter, so that quality grows with the
// number of experts at fixed active parameters. Deterministic for a seed. Each
// task has a train split (text) and an eval split asking each of its first
// `eval` facts three ways: text (perplexity), multiple choice, prompt/answer;
// and score.jsonl, 64 documents of 16 facts, to measure speed with smoe score.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smoe {

const std::vector<std::string>& synth_task_names();

struct SynthOptions {
  std::string out;                  // the suite's folder (smoe data synth)
  std::vector<std::string> inputs;  // files the options name (--config)
  bool overwrite = false;
  uint64_t seed = 0;
  int64_t facts = 200;    // facts per task
  int64_t train = 20000;  // training lines per task (facts drawn uniformly)
  int64_t eval = 200;     // eval examples per task and record kind (distinct facts, at most `facts`)
};

// Writes DIR/<task>/train.jsonl, eval.jsonl and score.jsonl for every task.
void write_synth_suite(const std::string& dir, const SynthOptions& options);
// The job: the suite written to options.out as one AtomicOutput.
void synth_suite(const SynthOptions& options);

}  // namespace smoe
