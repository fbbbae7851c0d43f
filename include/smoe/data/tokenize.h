// smoe tokenize: a JSONL corpus of {"text": ...} records to token ids, in
// order, as JSONL {"input_ids": [...]} or as a Megatron-LM indexed dataset (a
// folder holding tokens.bin and tokens.idx); or, with `decode`, ids back to text.
// Each MPI rank reads only its byte range of the corpus (split at line starts)
// and tokenizes it on `threads` threads, streaming; the parts land in one output
// at offsets from a prefix sum, so the result is the same for any rank count.
#pragma once

#include <string>

#include "smoe/core/choices.h"

namespace smoe {

class JobContext;

struct TokenizeOptions {
  std::string tokenizer;  // make_tokenizer's spec (a file, or "byte")
  std::string corpus;
  std::string out;
  enum class Format { Jsonl, Megatron } format = Format::Jsonl;
  static const ChoiceNames<Format>& format_names() {
    static const ChoiceNames<Format> names{{Format::Jsonl, "jsonl"}, {Format::Megatron, "megatron"}};
    return names;
  }
  bool add_special_tokens = true;   // as `tokenizer(text)`; false: encode(text, add_special_tokens=False)
  bool decode = false;              // {"input_ids"} records to {"text"}
  bool skip_special_tokens = false;  // decode only
  bool overwrite = false;
  int threads = 0;  // 0: every core this process may use
  double progress_seconds = 30;
};

// Rank 0 reports the totals in the log; InputError naming the file, the byte
// offset (and line) and the fault for a bad record.
void tokenize_corpus(const TokenizeOptions& options, JobContext& context);

}  // namespace smoe
