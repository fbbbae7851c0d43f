// smoe score: runs a checkpoint over a corpus: the mean negative log-likelihood
// and perplexity; optionally the logits and the routing choices. The way to
// check that a checkpoint loads and runs right.
//
// Under MPI the experts are sharded over the ranks (expert parallelism) and each
// rank streams its own part of the corpus (share_corpus).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "smoe/core/choices.h"

namespace smoe {

class JobContext;

struct ScoreOptions {
  std::string model;                 // checkpoint folder
  std::string corpus;                // JSONL or indexed dataset
  std::vector<std::string> inputs;   // other files the options name (--config)
  ComputeDtype dtype = ComputeDtype::F32;
  int64_t context = 2048;
  int64_t batch = 8;
  std::string tokenizer;             // make_tokenizer's spec; "": the model's own
  ExecutorKind executor = ExecutorKind::Auto;
  std::string placement;             // "": contiguous blocks
  double capacity_factor = 0;
  std::string logits;                // .safetensors for logits, tokens and routing; "": none
  bool overwrite = false;
};

struct ScoreResult {
  int64_t predicted = 0;  // tokens predicted (every sequence's length - 1), all ranks
  double nll = 0;         // mean negative log-likelihood, nats
  double seconds = 0;
  int64_t dropped_slots = 0, routed_slots = 0;  // expert-parallel with a capacity factor
};

// Every rank calls; every rank returns the same result.
ScoreResult score(const ScoreOptions& options, JobContext& context);

}  // namespace smoe
