// Task corpora: JSONL files, one record per line, either {"text": "..."}
// (tokenised) or {"input_ids": [..]} (used as they are).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace smoe {

class Tokenizer;

struct Document {
  std::vector<int64_t> tokens;
  int64_t line = 0;       // 1-based line in the file
  uint64_t text_bytes = 0;  // UTF-8 bytes of the text; 0 for input_ids records
};

// Reads records one at a time. Every error (malformed JSON, a record with neither
// field, an id outside [0, vocab_size)) names the file and line.
class CorpusReader {
 public:
  CorpusReader(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size);
  // False at the end of the file. Blank lines are skipped.
  bool next(Document* doc);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const Tokenizer& tokenizer_;
  int64_t vocab_size_;
  std::ifstream in_;
  int64_t line_ = 0;
};

// All records of a corpus; InputError naming the file when it holds none.
std::vector<Document> read_corpus(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size);

// Cuts documents into sequences of at most `context` tokens, in order; pieces
// shorter than two tokens (nothing to predict) are dropped.
std::vector<std::vector<int64_t>> split_sequences(const std::vector<Document>& docs, int64_t context);

}  // namespace smoe
