// Task corpora: JSONL files, one record per line, either {"text": "..."}
// (tokenised, with the tokenizer's special tokens) or {"input_ids": [..]} (used
// as they are); or a Megatron-LM indexed dataset (PREFIX, PREFIX.bin or
// PREFIX.idx, or a folder holding tokens.bin and tokens.idx), one record per sequence.
//
// Under MPI each rank reads one contiguous part: JSONL bytes cut at line starts,
// or a run of sequences; records keep their numbers in the whole file, so every
// result keyed by record is the same for any rank count. Readers stream: one
// record, and the batch made from it, in memory at a time.
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
  uint64_t offset = 0;    // where the record starts: JSONL byte, or sequence number
};

// The records one reader takes: JSONL bytes [begin, end), both line starts, or
// indexed-dataset sequences [begin, end); the numbering at `begin`; and the token
// cap (--max-tokens): the record at offset `cut_at` keeps its first `cut_keep`
// tokens and `end` lies right after it.
struct CorpusPart {
  uint64_t begin = 0;
  uint64_t end = UINT64_MAX;  // past the extent: to the end of the corpus
  int64_t first_line = 1;
  int64_t first_record = 0;
  uint64_t cut_at = UINT64_MAX;
  int64_t cut_keep = 0;
};

// Reads the records of one part, one at a time. Every error (malformed JSON, a
// record with neither field, an id outside [0, vocab_size)) names the file and line.
class CorpusReader {
 public:
  CorpusReader(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size, const CorpusPart& part = {});
  ~CorpusReader();
  // False at the end of the part. Blank lines are skipped.
  bool next(Document* doc);
  const std::string& path() const { return path_; }
  // Where the next record starts (JSONL byte, or sequence number); the part's end after the last.
  uint64_t position() const { return pos_; }
  // The part's end, within the corpus.
  uint64_t end() const { return part_.end; }

 private:
  bool next_indexed(Document* doc);
  void check_ids(const Document& doc) const;

  std::string path_;
  const Tokenizer& tokenizer_;
  int64_t vocab_size_;
  CorpusPart part_;
  std::ifstream in_;
  std::unique_ptr<IndexedDataset> indexed_;
  uint64_t pos_ = 0;
  int64_t line_ = 0;
  int64_t records_ = 0;
};

// The files a corpus is made of: the JSONL file, or PREFIX.bin and PREFIX.idx;
// InputError when `path` is neither.
std::vector<std::string> corpus_files(const std::string& path);
// SHA-256 of a JSONL corpus; of an indexed dataset, SHA-256 over its two files' hashes.
std::string corpus_sha256(const std::string& path);

// The corpus's extent: JSONL bytes, or the indexed dataset's sequence count.
uint64_t corpus_extent(const std::string& path);

// Part `part` of `parts` of [0, extent): JSONL bytes evenly spaced and each moved
// to the next line start, or indexed sequences split evenly by tokens.
std::pair<uint64_t, uint64_t> corpus_range(const std::string& path, uint64_t extent, int part, int parts);
// The JSONL split alone, whatever files lie beside `path`.
std::pair<uint64_t, uint64_t> jsonl_range(const std::string& path, uint64_t extent, int part, int parts);

// Newlines and records (non-blank lines) in JSONL bytes [begin, end), read in
// blocks; for an indexed dataset, both are the sequence count.
struct RecordCount {
  int64_t newlines = 0, records = 0;
};
RecordCount count_records(const std::string& path, uint64_t begin, uint64_t end);

// The first `max_tokens` tokens of a corpus, read from its start: the part of
// one reader that takes all of them (end, cut_at, cut_keep set).
CorpusPart corpus_cap(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size, int64_t max_tokens);

// Every record of a corpus, for small corpora (training); InputError naming the
// file when it holds none.
std::vector<Document> read_corpus(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size);

// A piece of a document, at most `context` tokens long.
struct Sequence {
  int64_t document = 0;  // Document::index
  int64_t piece = 0;     // which piece of the document
  std::vector<int64_t> tokens;
};

// Cuts a document into sequences of at most `context` tokens, in order; pieces
// shorter than two tokens (nothing to predict) are dropped.
std::vector<Sequence> split_sequences(const Document& doc, int64_t context);

// Batches read as they are needed: each document cut by split_sequences, then
// consecutive pieces of one document with equal length, up to `batch`, run
// together. Pieces of different documents never share a batch, so the batches
// are the same for any number of ranks.
class BatchReader {
 public:
  BatchReader(CorpusReader& reader, int64_t context, int64_t batch);
  // The next batch; false when the reader's records are done.
  bool next(std::vector<Sequence>* batch);
  // Totals of the batches returned so far.
  int64_t tokens() const { return tokens_; }
  int64_t sequences() const { return sequences_; }

 private:
  CorpusReader& reader_;
  int64_t context_, batch_;
  std::vector<Sequence> pieces_;  // of the current document
  size_t at_ = 0;
  int64_t tokens_ = 0, sequences_ = 0;
};

}  // namespace smoe
