// Task corpora: JSONL files, one record per line, either {"text": "..."}
// (tokenised, with the tokenizer's special tokens) or {"input_ids": [..]} (used
// as they are); or a Megatron-LM indexed dataset (PREFIX, PREFIX.bin or
// PREFIX.idx, or a folder holding tokens.bin and tokens.idx), one record per sequence.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace smoe {

class Tokenizer;
class IndexedDataset;

struct Document {
  int64_t index = 0;      // 0-based record number in the file (blank lines not counted)
  std::vector<int64_t> tokens;
  int64_t line = 0;       // 1-based line in the file
  uint64_t text_bytes = 0;  // UTF-8 bytes of the text; 0 for input_ids records
};

// Reads records one at a time. Every error (malformed JSON, a record with neither
// field, an id outside [0, vocab_size)) names the file and line. With a shard
// (shard_index of shard_count), only records whose number % shard_count ==
// shard_index are parsed and returned: each MPI rank reads its own share.
class CorpusReader {
 public:
  // max_tokens > 0 caps the corpus at its first max_tokens tokens (the record that
  // crosses the cap is cut), the same cap for every shard count.
  CorpusReader(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size, int shard_index = 0,
               int shard_count = 1, int64_t max_tokens = 0);
  ~CorpusReader();
  // False at the end of the file. Blank lines are skipped.
  bool next(Document* doc);
  const std::string& path() const { return path_; }
  // Records seen so far, this shard's and the others'.
  int64_t records_seen() const { return records_; }

 private:
  std::string path_;
  bool next_indexed(Document* doc);

  const Tokenizer& tokenizer_;
  int64_t vocab_size_;
  std::ifstream in_;
  std::unique_ptr<IndexedDataset> indexed_;
  int shard_index_;
  int shard_count_;
  int64_t max_tokens_;
  int64_t line_ = 0;
  int64_t records_ = 0;
  int64_t tokens_ = 0;  // tokens of all records read so far, with max_tokens
};

// All records of a corpus (of one shard); InputError naming the file when the
// corpus holds no records at all.
std::vector<Document> read_corpus(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size,
                                  int shard_index = 0, int shard_count = 1, int64_t max_tokens = 0);

// A piece of a document, at most `context` tokens long.
struct Sequence {
  int64_t document = 0;  // Document::index
  int64_t piece = 0;     // which piece of the document
  std::vector<int64_t> tokens;
};

// Cuts documents into sequences of at most `context` tokens, in order; pieces
// shorter than two tokens (nothing to predict) are dropped.
std::vector<Sequence> split_sequences(const std::vector<Document>& docs, int64_t context);

// Batches of consecutive pieces of one document with equal length, up to
// `batch` each, as [begin, end) ranges into `seqs`. Pieces of different documents
// never share a batch, so batches are the same for any number of ranks.
std::vector<std::pair<size_t, size_t>> batch_sequences(const std::vector<Sequence>& seqs, int64_t batch);

}  // namespace smoe
