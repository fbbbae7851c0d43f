// Task evaluation (DESIGN.md §8): perplexity and bits per byte on text records,
// multiple-choice accuracy by summed (acc) and length-normalised (acc_norm)
// log-likelihood, exact match of greedy generation. Distributed like collect:
// each rank takes records i % P == rank and every rank makes the same number of
// forward calls (empty ones once its own records run out).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smoe {

class Communicator;
class Decoder;
class MoeExecutor;
class Tokenizer;

struct EvalRecord {
  enum Kind { Text, MultipleChoice, Generate } kind = Text;
  int64_t line = 0;
  std::vector<int64_t> tokens;                // Text
  uint64_t text_bytes = 0;                    // Text, from {"text"}: UTF-8 bytes; 0 for input_ids
  std::vector<int64_t> context;               // MultipleChoice
  std::vector<std::vector<int64_t>> choices;  // MultipleChoice
  std::vector<uint64_t> choice_bytes;         // MultipleChoice
  int64_t label = 0;                          // MultipleChoice
  std::vector<int64_t> prompt;                // Generate
  std::vector<int64_t> answer;                // Generate: tokens of answer + "\n"
};

// Reads this rank's share of an eval file; every error names the file and line,
// among them a choice that leaves no room for its context within `context` tokens.
std::vector<EvalRecord> read_eval_records(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size,
                                          int64_t context, int rank, int ranks);

struct EvalTotals {
  double nll = 0;           // over predicted text tokens
  int64_t tokens = 0;       // predicted text tokens
  double text_bytes = 0;    // bytes of text records (for bits per byte)
  double text_nll = 0;      // nll over text records given as text
  int64_t mc = 0, mc_correct = 0, mc_correct_norm = 0;
  int64_t gen = 0, gen_correct = 0;
};

// Runs this rank's records; returns the totals summed over all ranks.
EvalTotals evaluate(const Decoder& decoder, MoeExecutor& executor, Communicator& host,
                    const std::vector<EvalRecord>& records, int64_t context);

}  // namespace smoe
