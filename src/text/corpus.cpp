#include "smoe/text/corpus.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/core/hash.h"
#include "smoe/io/indexed-dataset.h"
#include "smoe/io/json.h"
#include "smoe/text/tokenizer.h"

namespace smoe {

namespace {

bool is_blank(const std::string& line) { return line.find_first_not_of(" \t\r") == std::string::npos; }

std::ifstream open_jsonl(const std::string& path) {
  check_input_file(path, "corpus");
  std::ifstream in(path, std::ios::binary);
  SMOE_CHECK_INPUT(in.good(), path, ": cannot open corpus: ", errno_text());
  return in;
}

// The first line start at or after `at` (0 stays 0): the byte after the first
// newline at or after at - 1; `size` when there is none.
uint64_t line_start_from(std::ifstream& in, uint64_t at, uint64_t size) {
  if (at == 0) return 0;
  in.clear();
  in.seekg(static_cast<std::streamoff>(at - 1));
  std::string buf(1 << 16, '\0');
  uint64_t pos = at - 1;
  while (pos < size) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<size_t>(in.gcount());
    if (got == 0) break;
    const void* nl = std::memchr(buf.data(), '\n', got);
    if (nl) return std::min(size, pos + static_cast<uint64_t>(static_cast<const char*>(nl) - buf.data()) + 1);
    pos += got;
  }
  return size;
}

}  // namespace

CorpusReader::CorpusReader(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size,
                           const CorpusPart& part)
    : path_(path), tokenizer_(tokenizer), vocab_size_(vocab_size), part_(part) {
  SMOE_ASSERT(part.begin <= part.end, "bad corpus part");
  const std::string prefix = indexed_dataset_prefix(path);
  uint64_t extent = 0;
  if (!prefix.empty()) {
    indexed_ = std::make_unique<IndexedDataset>(prefix);
    extent = indexed_->size();
  } else {
    in_ = open_jsonl(path);
    in_.seekg(static_cast<std::streamoff>(part.begin));
    extent = corpus_extent(path);
  }
  part_.end = std::min(part.end, extent);
  pos_ = std::min(part.begin, part_.end);
  line_ = part.first_line - 1;
  records_ = part.first_record;
}

CorpusReader::~CorpusReader() = default;

void CorpusReader::check_ids(const Document& doc) const {
  for (int64_t id : doc.tokens) {
    if (id >= 0 && id < vocab_size_) continue;
    const std::string where = indexed_ ? str(indexed_->prefix(), ".bin: sequence ", doc.index) : str(path_, ":", doc.line);
    throw InputError(str(where, ": token id ", id, doc.text_bytes > 0 ? " (from " + tokenizer_.name() + ")" : "",
                         " is outside the model's vocabulary [0, ", vocab_size_, ")"));
  }
}

// A Megatron indexed dataset: record i is sequence i ("line" i + 1 in messages).
bool CorpusReader::next_indexed(Document* doc) {
  if (pos_ >= part_.end) return false;
  doc->offset = pos_;
  doc->index = static_cast<int64_t>(pos_);
  doc->line = doc->index + 1;
  doc->text_bytes = 0;
  doc->tokens = indexed_->sequence(pos_++);
  return true;
}

bool CorpusReader::next(Document* doc) {
  bool found = false;
  if (indexed_) {
    found = next_indexed(doc);
  } else {
    std::string text;
    while (!found && pos_ < part_.end && std::getline(in_, text)) {
      const uint64_t start = pos_;
      pos_ += text.size() + (in_.eof() ? 0 : 1);
      ++line_;
      SMOE_CHECK_INPUT(text.size() <= kMaxJsonBytes, path_, ":", line_, ": a record of ", text.size(),
                       " bytes, beyond the limit of ", kMaxJsonBytes);
      if (is_blank(text)) continue;
      const nlohmann::json j = parse_json(text, str(path_, ":", line_));
      SMOE_CHECK_INPUT(j.is_object(), path_, ":", line_, ": a record must be a JSON object");
      doc->offset = start;
      doc->line = line_;
      doc->index = records_++;
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
        for (const auto& v : *ids)
          doc->tokens.push_back(json_to_int(v, str(path_, ":", line_), "an 'input_ids' entry"));
      } else {
        throw InputError(str(path_, ":", line_, ": record has neither 'text' nor 'input_ids'"));
      }
      found = true;
    }
    SMOE_CHECK_INPUT(found || pos_ >= part_.end || in_.eof(), path_, ": read error after line ", line_);
  }
  if (!found) return false;
  check_ids(*doc);
  if (doc->offset == part_.cut_at && static_cast<int64_t>(doc->tokens.size()) > part_.cut_keep)
    doc->tokens.resize(static_cast<size_t>(part_.cut_keep));
  return true;
}

std::vector<std::string> corpus_files(const std::string& path) {
  const std::string prefix = indexed_dataset_prefix(path);
  if (!prefix.empty()) {
    for (const char* ext : {".bin", ".idx"}) check_input_file(prefix + ext, "indexed dataset");
    return {prefix + ".bin", prefix + ".idx"};
  }
  check_input_file(path, "corpus");
  return {path};
}

std::string corpus_sha256(const std::string& path) {
  const std::vector<std::string> files = corpus_files(path);
  if (files.size() == 1) return sha256_file(files[0]);
  std::string hashes;
  for (const auto& f : files) hashes += sha256_file(f);
  return sha256_hex(hashes);
}

uint64_t corpus_extent(const std::string& path) {
  const std::string prefix = indexed_dataset_prefix(path);
  if (!prefix.empty()) return IndexedDataset(prefix).size();
  check_input_file(path, "corpus");
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  SMOE_CHECK_INPUT(!ec, path, ": cannot read the corpus's size: ", ec.message());
  return size;
}

std::pair<uint64_t, uint64_t> jsonl_range(const std::string& path, uint64_t extent, int part, int parts) {
  SMOE_ASSERT(parts >= 1 && part >= 0 && part < parts, "bad corpus part ", part, " of ", parts);
  const auto k = static_cast<uint64_t>(part), n = static_cast<uint64_t>(parts);
  std::ifstream in = open_jsonl(path);
  return {line_start_from(in, extent / n * k + extent % n * k / n, extent),
          line_start_from(in, extent / n * (k + 1) + extent % n * (k + 1) / n, extent)};
}

std::pair<uint64_t, uint64_t> corpus_range(const std::string& path, uint64_t extent, int part, int parts) {
  const std::string prefix = indexed_dataset_prefix(path);
  if (prefix.empty()) return jsonl_range(path, extent, part, parts);
  SMOE_ASSERT(parts >= 1 && part >= 0 && part < parts, "bad corpus part ", part, " of ", parts);
  const auto k = static_cast<uint64_t>(part), n = static_cast<uint64_t>(parts);
  // Sequences by tokens: part m starts with the sequence that holds token m/n of the total.
  IndexedDataset data(prefix);
  extent = std::min(extent, data.size());
  uint64_t total = 0;
  for (uint64_t i = 0; i < extent; ++i) total += data.length(i);
  auto start_of = [&](uint64_t m) {
    if (m == 0 || m == n) return m == 0 ? uint64_t{0} : extent;
    const uint64_t target = total / n * m + total % n * m / n;
    uint64_t before = 0, i = 0;
    while (i < extent && before + data.length(i) <= target) before += data.length(i++);
    return i;
  };
  return {start_of(k), start_of(k + 1)};
}

RecordCount count_records(const std::string& path, uint64_t begin, uint64_t end) {
  RecordCount count;
  if (!indexed_dataset_prefix(path).empty()) {
    count.newlines = count.records = static_cast<int64_t>(end - begin);
    return count;
  }
  std::ifstream in = open_jsonl(path);
  in.seekg(static_cast<std::streamoff>(begin));
  std::string buf(1 << 20, '\0');
  bool filled = false;  // the current line has a character other than space, tab or CR
  for (uint64_t pos = begin; pos < end;) {
    in.read(buf.data(), static_cast<std::streamsize>(std::min<uint64_t>(buf.size(), end - pos)));
    const auto got = static_cast<size_t>(in.gcount());
    SMOE_CHECK_INPUT(got > 0, path, ": read error at byte ", pos);
    for (size_t i = 0; i < got; ++i) {
      const char c = buf[i];
      if (c == '\n') {
        ++count.newlines;
        count.records += filled;
        filled = false;
      } else if (c != ' ' && c != '\t' && c != '\r') {
        filled = true;
      }
    }
    pos += got;
  }
  count.records += filled;  // a last line without a newline
  return count;
}

CorpusPart corpus_cap(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size, int64_t max_tokens) {
  CorpusReader reader(path, tokenizer, vocab_size);
  CorpusPart cap;
  int64_t tokens = 0;
  Document d;
  while (tokens < max_tokens && reader.next(&d)) {
    const auto n = static_cast<int64_t>(d.tokens.size());
    if (tokens + n >= max_tokens) {
      cap.cut_at = d.offset;
      cap.cut_keep = max_tokens - tokens;
      cap.end = reader.position();
    }
    tokens += n;
  }
  return cap;
}

std::vector<Document> read_corpus(const std::string& path, const Tokenizer& tokenizer, int64_t vocab_size) {
  CorpusReader reader(path, tokenizer, vocab_size);
  std::vector<Document> docs;
  Document d;
  while (reader.next(&d)) docs.push_back(d);
  SMOE_CHECK_INPUT(!docs.empty(), path, ": corpus holds no records");
  return docs;
}

std::vector<Sequence> split_sequences(const Document& doc, int64_t context) {
  SMOE_ASSERT(context >= 2, "context must be at least 2 tokens");
  std::vector<Sequence> seqs;
  int64_t piece = 0;
  for (size_t begin = 0; begin < doc.tokens.size(); begin += static_cast<size_t>(context), ++piece) {
    const size_t end = std::min(doc.tokens.size(), begin + static_cast<size_t>(context));
    if (end - begin >= 2)
      seqs.push_back({doc.index, piece, std::vector<int64_t>(doc.tokens.begin() + begin, doc.tokens.begin() + end)});
  }
  return seqs;
}

BatchReader::BatchReader(CorpusReader& reader, int64_t context, int64_t batch)
    : reader_(reader), context_(context), batch_(batch) {
  SMOE_ASSERT(batch >= 1, "batch must be at least 1");
}

bool BatchReader::next(std::vector<Sequence>* batch) {
  Document doc;
  while (at_ == pieces_.size()) {
    if (!reader_.next(&doc)) return false;
    pieces_ = split_sequences(doc, context_);
    at_ = 0;
  }
  size_t j = at_ + 1;
  while (j < pieces_.size() && static_cast<int64_t>(j - at_) < batch_ &&
         pieces_[j].tokens.size() == pieces_[at_].tokens.size())
    ++j;
  batch->assign(std::make_move_iterator(pieces_.begin() + static_cast<std::ptrdiff_t>(at_)),
                std::make_move_iterator(pieces_.begin() + static_cast<std::ptrdiff_t>(j)));
  at_ = j;
  sequences_ += static_cast<int64_t>(batch->size());
  for (const auto& s : *batch) tokens_ += static_cast<int64_t>(s.tokens.size());
  return true;
}

}  // namespace smoe
