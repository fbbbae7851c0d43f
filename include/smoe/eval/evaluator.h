// Task evaluation (DESIGN.md §8): perplexity and bits per byte on text records,
// multiple-choice accuracy by summed (acc) and length-normalised (acc_norm)
// log-likelihood, exact match of greedy generation. Distributed like collect:
// each rank takes records i % P == rank and every rank makes the same number of
// forward calls (empty ones once its own records run out).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "smoe/eval/statistics.h"

namespace smoe {

class Communicator;
class Decoder;
class MoeExecutor;
class Tokenizer;

struct EvalRecord {
  enum Kind { Text, MultipleChoice, Generate } kind = Text;
  int64_t line = 0;                           // line in the eval file
  int64_t index = 0;                          // record number in the file, from 0, over all ranks
  std::vector<int64_t> tokens;                // Text
  uint64_t text_bytes = 0;                    // Text, from {"text"}: UTF-8 bytes; 0 for input_ids
  std::vector<int64_t> context;               // MultipleChoice
  std::vector<std::vector<int64_t>> choices;  // MultipleChoice
  std::vector<uint64_t> choice_bytes;         // MultipleChoice
  int64_t label = 0;                          // MultipleChoice
  std::vector<int64_t> prompt;                // Generate
  std::vector<int64_t> answer;                // Generate: tokens of answer + "\n" (the generation's length)
  std::string answer_text;                    // Generate
};

// Reads this rank's share of an eval file; every error names the file and line,
// among them a choice that leaves no room for its context within `context` tokens.
// Text is tokenized as lm-evaluation-harness does by default: a multiple-choice
// record's context and choice encoded whole, without special tokens, and cut
// after as many tokens as the context alone has (trailing whitespace of the
// context goes with the choice); no BOS before a context or prompt, except that
// an empty one becomes the tokenizer's BOS. A text record is encoded with the
// tokenizer's special tokens. Generation matches when the decoded tokens read
// answer + "\n".
std::vector<EvalRecord> read_eval_records(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size,
                                          int64_t context, int rank, int ranks);

// Runs this rank's records; returns every record's scores, gathered from all
// ranks, in the order of the file (text records with a text of one token score
// nll 0 over 0 tokens).
TaskSamples evaluate(const Decoder& decoder, MoeExecutor& executor, Communicator& host, const Tokenizer& tokenizer,
                     const std::vector<EvalRecord>& records, int64_t context);

}  // namespace smoe
