#include "smoe/data/tokenize.h"

#include <ATen/ATen.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/core/log.h"
#include "smoe/core/options.h"
#include "smoe/core/output.h"
#include "smoe/core/progress.h"
#include "smoe/parallel/job.h"
#include "smoe/text/corpus.h"
#include "smoe/io/indexed-dataset.h"
#include "smoe/io/json.h"
#include "smoe/io/outputs.h"
#include "smoe/text/tokenizer.h"

namespace smoe {

namespace {

constexpr size_t kBlockBytes = 8u << 20;  // lines read and tokenized together

// RuntimeError with errno's text when a system call failed.
template <class... Args>
void check_sys(bool ok, const Args&... what) {
  if (!ok) throw RuntimeError(str(what..., ": ", errno_text()));
}

// "FILE:LINE (byte B)" for a record starting at byte `offset`; the line counted
// only here, on the error path.
std::string record_place(const std::string& path, uint64_t offset) {
  std::ifstream in(path, std::ios::binary);
  std::string buf(1 << 16, '\0');
  uint64_t line = 1, pos = 0;
  while (pos < offset && in) {
    in.read(buf.data(), static_cast<std::streamsize>(std::min<uint64_t>(buf.size(), offset - pos)));
    const auto got = static_cast<size_t>(in.gcount());
    line += static_cast<uint64_t>(std::count(buf.data(), buf.data() + got, '\n'));
    pos += got;
  }
  return str(path, ":", line, " (byte ", offset, ")");
}

void append_ids(std::string& out, const std::vector<int64_t>& ids) {
  out += "{\"input_ids\":[";
  char num[24];
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    auto r = std::to_chars(num, num + sizeof num, ids[i]);
    out.append(num, r.ptr);
  }
  out += "]}\n";
}

void append_binary(std::string& out, const std::vector<int64_t>& ids, IndexedDtype dtype) {
  for (int64_t id : ids) {
    if (dtype == IndexedDtype::UInt16) {
      const auto v = static_cast<uint16_t>(id);
      out.append(reinterpret_cast<const char*>(&v), 2);
    } else {
      const auto v = static_cast<int32_t>(id);
      out.append(reinterpret_cast<const char*>(&v), 4);
    }
  }
}

class PartFile {
 public:
  explicit PartFile(std::string path) : path_(std::move(path)) {
    track_output_temporary(path_);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    check_sys(fd_ >= 0, "cannot create ", path_);
  }
  ~PartFile() { remove(); }
  // Gone: before the output is committed (the commit syncs every file of the folder).
  void remove() {
    if (removed_) return;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
    untrack_output_temporary(path_);
    removed_ = true;
  }
  void write(const std::string& bytes) {
    write_all(fd_, bytes.data(), bytes.size(), path_);
    size_ += bytes.size();
  }
  // Copies the part into `fd` from byte `offset` on.
  void copy_to(int fd, uint64_t offset, const std::string& target) {
    ::close(fd_);
    fd_ = -1;
    const int in = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    check_sys(in >= 0, "cannot reopen ", path_);
    std::string buf(kBlockBytes, '\0');
    for (uint64_t done = 0; done < size_;) {
      const ssize_t n = ::read(in, buf.data(), buf.size());
      if (n <= 0) {
        ::close(in);
        check_sys(false, "cannot read ", path_);
      }
      pwrite_all(fd, buf.data(), static_cast<size_t>(n), offset + done, target);
      done += static_cast<uint64_t>(n);
    }
    ::close(in);
  }
  uint64_t size() const { return size_; }

 private:
  static void write_all(int fd, const char* p, size_t n, const std::string& path) {
    while (n > 0) {
      const ssize_t w = ::write(fd, p, n);
      check_sys(w > 0, "cannot write ", path);
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

 public:
  static void pwrite_all(int fd, const char* p, size_t n, uint64_t offset, const std::string& path) {
    while (n > 0) {
      const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
      check_sys(w > 0, "cannot write ", path);
      p += w;
      n -= static_cast<size_t>(w);
      offset += static_cast<uint64_t>(w);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  bool removed_ = false;
};

struct Counts {
  uint64_t records = 0, tokens = 0, bytes = 0;  // bytes: of this rank's part
};

// One record (a line) to its output bytes; `lengths` gets the record's token count.
void convert(const TokenizeOptions& o, const Tokenizer& tok, IndexedDtype dtype, const char* line, size_t size,
             const std::string& where, std::string& out, int64_t& tokens) {
  const nlohmann::json j = parse_json(line, line + size, where);
  SMOE_CHECK_INPUT(j.is_object(), where, ": a record must be a JSON object");
  if (o.decode) {
    SMOE_CHECK_INPUT(j.contains("input_ids") && j["input_ids"].is_array(), where,
                     ": --decode needs {\"input_ids\": [...]} records");
    std::vector<int64_t> ids;
    for (const auto& x : j["input_ids"]) {
      const int64_t id = json_to_int(x, where, "a token id");
      SMOE_CHECK_INPUT(id >= 0 && id < tok.vocab_size(), where, ": token id ", id,
                       " is outside the tokenizer's vocabulary [0, ", tok.vocab_size(), ")");
      ids.push_back(id);
    }
    tokens = static_cast<int64_t>(ids.size());
    const nlohmann::json r = {{"text", tok.decode(ids, o.skip_special_tokens)}};
    out += r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out += '\n';
    return;
  }
  SMOE_CHECK_INPUT(j.contains("text") && j["text"].is_string(), where, ": a record needs a \"text\" string");
  std::vector<int64_t> ids;
  try {
    ids = tok.encode(j["text"].get_ref<const std::string&>(), o.add_special_tokens);
  } catch (const InputError& e) {
    throw InputError(str(where, ": ", e.what()));
  }
  tokens = static_cast<int64_t>(ids.size());
  if (o.format == TokenizeOptions::Format::Jsonl)
    append_ids(out, ids);
  else
    append_binary(out, ids, dtype);
}

// Lines of a block, [start, length), blank ones skipped; `cut` ends the last.
std::vector<std::pair<size_t, size_t>> block_lines(const std::string& data, size_t cut) {
  std::vector<std::pair<size_t, size_t>> lines;
  for (size_t s = 0; s < cut;) {
    const char* nl = static_cast<const char*>(std::memchr(data.data() + s, '\n', cut - s));
    const size_t e = nl ? static_cast<size_t>(nl - data.data()) : cut;
    size_t len = e - s;
    if (len > 0 && data[s + len - 1] == '\r') --len;
    if (data.find_first_not_of(" \t\r", s) < s + len) lines.emplace_back(s, len);
    s = e + 1;
  }
  return lines;
}

// What one rank's part of the corpus turns into.
struct Part {
  const TokenizeOptions& o;
  const Tokenizer& tok;
  IndexedDtype dtype;
  int threads;
  Counts counts;
  std::vector<int32_t> lengths;  // --format megatron: each record's tokens

  void add_block(const std::string& data, const std::vector<std::pair<size_t, size_t>>& lines, uint64_t pos,
                 PartFile& file);
};

// Converts a block's lines on `threads` threads and appends them to the file;
// the first failing record (in file order) is thrown, naming its place.
void Part::add_block(const std::string& data, const std::vector<std::pair<size_t, size_t>>& lines, uint64_t pos,
                     PartFile& file) {
  std::vector<std::string> outs(lines.size()), errors(lines.size());
  std::vector<int64_t> tokens(lines.size());
  std::vector<char> input_error(lines.size(), 0);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < lines.size(); i = next++) {
      try {
        convert(o, tok, dtype, data.data() + lines[i].first, lines[i].second,
                str(o.corpus, ": record at byte ", pos + lines[i].first), outs[i], tokens[i]);
      } catch (const InputError& e) {
        errors[i] = e.what();
        input_error[i] = 1;
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  struct Join {  // the started threads, joined before the results are read (or on a failed start)
    std::vector<std::thread>& pool;
    void all() {
      for (auto& t : pool)
        if (t.joinable()) t.join();
    }
    ~Join() { all(); }
  } join{pool};
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  join.all();
  std::string joined;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string place = record_place(o.corpus, pos + lines[i].first);
    if (!errors[i].empty()) {
      const std::string prefix = str(o.corpus, ": record at byte ", pos + lines[i].first);
      std::string msg = errors[i];
      if (msg.compare(0, prefix.size(), prefix) == 0) msg = place + msg.substr(prefix.size());
      if (input_error[i]) throw InputError(msg);
      throw RuntimeError(msg);
    }
    joined += outs[i];
    counts.tokens += static_cast<uint64_t>(tokens[i]);
    if (o.format == TokenizeOptions::Format::Megatron) {
      SMOE_CHECK_INPUT(tokens[i] < (int64_t{1} << 31), place, ": a record of ", tokens[i],
                       " tokens, beyond the indexed dataset's int32 lengths");
      lengths.push_back(static_cast<int32_t>(tokens[i]));
    }
  }
  counts.records += lines.size();
  file.write(joined);
}

// Reads bytes [begin, end) of the corpus block by block, whole lines at a time.
void tokenize_range(Part& part, uint64_t begin, uint64_t end, PartFile& file) {
  const TokenizeOptions& o = part.o;
  std::ifstream in(o.corpus, std::ios::binary);
  SMOE_CHECK_INPUT(in.good(), o.corpus, ": cannot open corpus: ", errno_text());
  Progress progress("tokenize", "bytes", static_cast<int64_t>(end - begin), o.progress_seconds);
  std::string carry, block(kBlockBytes, '\0');
  in.seekg(static_cast<std::streamoff>(begin));
  uint64_t pos = begin;  // file offset of carry's first byte
  while (pos < end) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kBlockBytes, end - pos - carry.size()));
    in.read(block.data(), static_cast<std::streamsize>(want));
    const auto got = static_cast<size_t>(in.gcount());
    SMOE_CHECK_INPUT(got == want, o.corpus, ": the corpus changed while being read");
    std::string data = carry + block.substr(0, got);
    const bool last = pos + data.size() >= end;
    size_t cut = last ? data.size() : data.rfind('\n');
    if (cut == std::string::npos) {  // one line longer than a block: read on
      SMOE_CHECK_INPUT(data.size() <= kMaxJsonBytes, record_place(o.corpus, pos), ": a record of more than ",
                       kMaxJsonBytes, " bytes");
      carry = std::move(data);
      continue;
    }
    if (!last) ++cut;
    part.add_block(data, block_lines(data, cut), pos, file);
    pos += cut;
    carry = data.substr(cut);
    progress.update(static_cast<int64_t>(pos - begin));
  }
  part.counts.bytes = file.size();
}

// tokens.idx: rank 0 writes the header and the first document index; every rank
// its records' lengths, pointers and document indices, at their place.
void write_index(const std::string& idx, IndexedDtype dtype, const std::vector<int32_t>& lengths,
                 const uint64_t before[3], uint64_t records, int rank) {
  const int fd = ::open(idx.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  check_sys(fd >= 0, "cannot open ", idx);
  if (rank == 0) {
    const std::string header = indexed_header(dtype, records);
    PartFile::pwrite_all(fd, header.data(), header.size(), 0, idx);
    const int64_t zero = 0;
    PartFile::pwrite_all(fd, reinterpret_cast<const char*>(&zero), 8, indexed_document_at(records, 0), idx);
  }
  std::vector<int64_t> pointers(lengths.size()), documents(lengths.size());
  uint64_t at = before[1];
  for (size_t i = 0; i < lengths.size(); ++i) {
    pointers[i] = static_cast<int64_t>(at);
    at += static_cast<uint64_t>(lengths[i]) * indexed_dtype_bytes(dtype);
    documents[i] = static_cast<int64_t>(before[0] + i + 1);
  }
  PartFile::pwrite_all(fd, reinterpret_cast<const char*>(lengths.data()), 4 * lengths.size(),
                       indexed_length_at(records, before[0]), idx);
  PartFile::pwrite_all(fd, reinterpret_cast<const char*>(pointers.data()), 8 * pointers.size(),
                       indexed_pointer_at(records, before[0]), idx);
  PartFile::pwrite_all(fd, reinterpret_cast<const char*>(documents.data()), 8 * documents.size(),
                       indexed_document_at(records, before[0] + 1), idx);
  check_sys(::close(fd) == 0, "cannot close ", idx);
}

std::string open_output(const TokenizeOptions& o, JobContext& ctx) {
  const bool megatron = o.format == TokenizeOptions::Format::Megatron;
  OutputSpec spec = megatron ? folder_output(o.out, "tokenize") : OutputSpec{};
  if (!megatron) {
    spec.path = o.out;
    spec.job = "tokenize";
    spec.is_own = [](const std::string&) { return false; };  // a JSONL file carries no mark
  }
  spec.overwrite = o.overwrite;
  spec.inputs = {o.corpus};
  if (o.tokenizer != "byte") spec.inputs.push_back(o.tokenizer);
  return ctx.add_output(spec);
}

}  // namespace

void tokenize_corpus(const TokenizeOptions& o, JobContext& ctx) {
  const int rank = ctx.rank(), ranks = ctx.ranks();
  const bool megatron = o.format == TokenizeOptions::Format::Megatron;
  SMOE_CHECK_INPUT(!(megatron && o.decode), "--decode writes JSONL text, not --format megatron");
  const std::unique_ptr<Tokenizer> tok = make_tokenizer(o.tokenizer);
  check_input_file(o.corpus, "corpus");
  Part part{o, *tok, indexed_dtype_for(tok->vocab_size()), resolve_threads(o.threads), {}, {}};
  const std::string temp = open_output(o, ctx);
  const std::string data_target = megatron ? temp + "/tokens.bin" : temp;

  // This rank's byte range, from one line start to the next rank's, into a part file.
  const uint64_t size = std::filesystem::file_size(o.corpus);
  const auto [begin, end] = jsonl_range(o.corpus, size, rank, ranks);
  log_info(str("tokenize: ", tok->name(), ", ", o.corpus, " (", size, " bytes), ", ranks, " rank(s) x ", part.threads,
               " threads", o.decode ? ", decoding ids" : o.add_special_tokens ? "" : ", no special tokens"));
  PartFile file(str(data_target, ".part", rank));
  tokenize_range(part, begin, end, file);

  // Where this rank's part goes: prefix sums over ranks.
  uint64_t before[3] = {0, 0, 0}, total[3] = {0, 0, 0};
  const Counts& mine = part.counts;
  const at::Tensor counts = ctx.host().all_gather(at::tensor(
      {static_cast<int64_t>(mine.records), static_cast<int64_t>(mine.bytes), static_cast<int64_t>(mine.tokens)},
      at::kLong));  // [ranks, 3]
  for (int r = 0; r < ranks; ++r)
    for (int i = 0; i < 3; ++i) {
      const auto n = static_cast<uint64_t>(counts[r][i].item<int64_t>());
      total[i] += n;
      if (r < rank) before[i] += n;
    }
  const int fd = ::open(data_target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  check_sys(fd >= 0, "cannot open ", data_target);
  file.copy_to(fd, before[1], data_target);
  file.remove();
  if (megatron) write_index(temp + "/tokens.idx", part.dtype, part.lengths, before, total[0], rank);
  check_sys(::close(fd) == 0, "cannot close ", data_target);
  SMOE_CHECK_INPUT(total[0] > 0, o.corpus, ": the corpus holds no records");
  ctx.commit_outputs();
  log_info(str("tokenize: ", total[0], " records, ", total[2], " tokens -> ", o.out,
               megatron ? " (tokens.bin, tokens.idx)" : ""));
}

}  // namespace smoe
