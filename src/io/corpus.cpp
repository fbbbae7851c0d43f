#include "smoe/io/corpus.h"

#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/io/indexed-dataset.h"
#include "smoe/io/json.h"
#include "smoe/text/tokenizer.h"

namespace smoe {

CorpusReader::CorpusReader(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size, int shard_index,
                           int shard_count, int64_t max_tokens)
    : path_(path),
      tokenizer_(tokenizer),
      vocab_size_(vocab_size),
      shard_index_(shard_index),
      shard_count_(shard_count),
      max_tokens_(max_tokens) {
  SMOE_ASSERT(shard_count >= 1 && shard_index >= 0 && shard_index < shard_count, "bad corpus shard");
  const std::string prefix = indexed_dataset_prefix(path);
  if (!prefix.empty()) {
    indexed_ = std::make_unique<IndexedDataset>(prefix);
    return;
  }
  check_input_file(path, "corpus");
  in_.open(path, std::ios::binary);
  SMOE_CHECK_INPUT(in_.good(), path, ": cannot open corpus: ", errno_text());
}

CorpusReader::~CorpusReader() = default;

// A Megatron indexed dataset: record i is sequence i ("line" i + 1 in messages).
bool CorpusReader::next_indexed(Document* doc) {
  while (static_cast<uint64_t>(records_) < indexed_->size()) {
    if (max_tokens_ > 0 && tokens_ >= max_tokens_) return false;
    const int64_t index = records_++;
    const bool mine = index % shard_count_ == shard_index_;
    if (!mine && max_tokens_ == 0) continue;
    doc->line = index + 1;
    doc->index = index;
    doc->text_bytes = 0;
    doc->tokens = indexed_->sequence(static_cast<uint64_t>(index));
    for (int64_t id : doc->tokens)
      SMOE_CHECK_INPUT(id >= 0 && id < vocab_size_, indexed_->prefix(), ".bin: sequence ", index, ": token id ", id,
                       " is outside the model's vocabulary [0, ", vocab_size_, ")");
    if (max_tokens_ > 0) {
      const int64_t room = max_tokens_ - tokens_;
      if (static_cast<int64_t>(doc->tokens.size()) > room) doc->tokens.resize(static_cast<size_t>(room));
      tokens_ += static_cast<int64_t>(doc->tokens.size());
    }
    if (mine) return true;
  }
  return false;
}

bool CorpusReader::next(Document* doc) {
  if (indexed_) return next_indexed(doc);
  std::string text;
  while (std::getline(in_, text)) {
    ++line_;
    SMOE_CHECK_INPUT(text.size() <= kMaxJsonBytes, path_, ":", line_, ": a record of ", text.size(),
                     " bytes, beyond the limit of ", kMaxJsonBytes);
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (max_tokens_ > 0 && tokens_ >= max_tokens_) return false;
    const int64_t index = records_++;
    const bool mine = index % shard_count_ == shard_index_;
    // Under a token cap every rank reads every record, to know where the cap falls.
    if (!mine && max_tokens_ == 0) continue;
    const nlohmann::json j = parse_json(text, str(path_, ":", line_));
    SMOE_CHECK_INPUT(j.is_object(), path_, ":", line_, ": a record must be a JSON object");
    doc->line = line_;
    doc->index = index;
    doc->tokens.clear();
    doc->text_bytes = 0;
    if (auto t = j.find("text"); t != j.end()) {
      SMOE_CHECK_INPUT(t->is_string(), path_, ":", line_, ": 'text' must be a string");
      const std::string& s = t->get_ref<const std::string&>();
      try {
        doc->tokens = tokenizer_.encode(s, true);
      } catch (const InputError& e) {
        throw InputError(str(path_, ":", line_, ": ", e.what()));
      }
      doc->text_bytes = s.size();
    } else if (auto ids = j.find("input_ids"); ids != j.end()) {
      SMOE_CHECK_INPUT(ids->is_array(), path_, ":", line_, ": 'input_ids' must be a list of integers");
      doc->tokens.reserve(ids->size());
      for (const auto& v : *ids) doc->tokens.push_back(json_to_int(v, str(path_, ":", line_), "an 'input_ids' entry"));
    } else {
      throw InputError(str(path_, ":", line_, ": record has neither 'text' nor 'input_ids'"));
    }
    for (int64_t id : doc->tokens)
      SMOE_CHECK_INPUT(id >= 0 && id < vocab_size_, path_, ":", line_, ": token id ", id,
                       doc->text_bytes > 0 ? " (from " + tokenizer_.name() + ")" : std::string(),
                       " is outside the model's vocabulary [0, ", vocab_size_, ")");
    if (max_tokens_ > 0) {
      const int64_t room = max_tokens_ - tokens_;
      if (static_cast<int64_t>(doc->tokens.size()) > room) doc->tokens.resize(static_cast<size_t>(room));
      tokens_ += static_cast<int64_t>(doc->tokens.size());
    }
    if (!mine) continue;
    return true;
  }
  SMOE_CHECK_INPUT(in_.eof(), path_, ": read error after line ", line_);
  return false;
}

std::vector<Document> read_corpus(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size,
                                  int shard_index, int shard_count, int64_t max_tokens) {
  CorpusReader reader(path, tokenizer, vocab_size, shard_index, shard_count, max_tokens);
  std::vector<Document> docs;
  Document d;
  while (reader.next(&d)) docs.push_back(d);
  SMOE_CHECK_INPUT(reader.records_seen() > 0, path, ": corpus holds no records");
  return docs;
}

std::vector<Sequence> split_sequences(const std::vector<Document>& docs, int64_t context) {
  SMOE_ASSERT(context >= 2, "context must be at least 2 tokens");
  std::vector<Sequence> seqs;
  for (const auto& d : docs) {
    int64_t piece = 0;
    for (size_t begin = 0; begin < d.tokens.size(); begin += static_cast<size_t>(context), ++piece) {
      size_t end = std::min(d.tokens.size(), begin + static_cast<size_t>(context));
      if (end - begin >= 2)
        seqs.push_back({d.index, piece, std::vector<int64_t>(d.tokens.begin() + begin, d.tokens.begin() + end)});
    }
  }
  return seqs;
}

}  // namespace smoe

namespace smoe {

std::vector<std::pair<size_t, size_t>> batch_sequences(const std::vector<Sequence>& seqs, int64_t batch) {
  SMOE_ASSERT(batch >= 1, "batch must be at least 1");
  std::vector<std::pair<size_t, size_t>> batches;
  for (size_t i = 0; i < seqs.size();) {
    size_t j = i + 1;
    while (j < seqs.size() && static_cast<int64_t>(j - i) < batch && seqs[j].document == seqs[i].document &&
           seqs[j].tokens.size() == seqs[i].tokens.size())
      ++j;
    batches.emplace_back(i, j);
    i = j;
  }
  return batches;
}

}  // namespace smoe
