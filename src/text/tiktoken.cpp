// A tiktoken rank file read as Kimi-K2's tokenizer (tokenization_kimi.py) reads
// it: base64 token and rank per line; Kimi's split pattern; 258 special ids
// after the ranks, named by tokenizer_config.json's added_tokens_decoder or
// <|reserved_token_ID|>; text cut into runs of at most 25,000 code points of
// whitespace or non-whitespace (Python's isspace) within 400,000-code-point
// chunks; no BOS or EOS added. Pieces merge by tiktoken's byte-pair rule: the
// adjacent pair whose joined bytes have the lowest rank, leftmost first.
#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/io/json.h"
#include "smoe/text/regex.h"
#include "smoe/text/tokenizer.h"
#include "smoe/text/unicode.h"

namespace smoe {

namespace {

constexpr const char* kKimiPattern =
    R"([\p{Han}]+)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3})"
    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*)"
    R"(|\s*[\r\n]+)"
    R"(|\s+(?!\S))"
    R"(|\s+)";
constexpr int kReservedSpecials = 256 + 2;
constexpr size_t kMaxEncodeChars = 400000;
constexpr size_t kMaxRunChars = 25000;

class Tiktoken : public Tokenizer {
 public:
  explicit Tiktoken(const std::string& path);
  std::vector<int64_t> encode(const std::string& text, bool) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  std::string name() const override { return "tiktoken:" + path_; }

 private:
  void encode_chunk(std::string_view text, std::vector<int64_t>& out) const;
  void encode_ordinary(std::string_view text, std::vector<int64_t>& out) const;
  void byte_pair_encode(std::string_view piece, std::vector<int64_t>& out) const;
  int64_t rank(std::string_view bytes) const {
    auto it = ranks_.find(bytes);
    return it == ranks_.end() ? -1 : it->second;
  }

  std::string path_;
  std::vector<std::string> tokens_;  // by id: the bytes of ranks, then the special names
  std::unordered_map<std::string_view, int64_t> ranks_;
  int64_t base_ = 0;
  std::vector<int64_t> by_first_byte_[256];  // special ids by the first byte of their name, ascending
  std::unique_ptr<Regex> pattern_;
};

Tiktoken::Tiktoken(const std::string& path) : path_(path) {
  check_input_file(path, "tiktoken file");
  const uint64_t bytes = std::filesystem::file_size(path);
  SMOE_CHECK_INPUT(bytes <= kMaxJsonBytes, path, ": a tiktoken file of ", bytes, " bytes, beyond the limit of ",
                   kMaxJsonBytes);
  std::ifstream in(path, std::ios::binary);
  SMOE_CHECK_INPUT(in.good(), path, ": cannot open the tiktoken file");
  std::string line;
  int64_t line_no = 0;
  std::vector<std::pair<int64_t, std::string>> entries;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    SMOE_CHECK_INPUT(space != std::string::npos && space > 0, path, ":", line_no, ": expected \"<base64> <rank>\"");
    const std::string b64 = line.substr(0, space), rank_text = line.substr(space + 1);
    SMOE_CHECK_INPUT(b64.size() % 4 == 0 && !rank_text.empty() && rank_text.size() < 10 &&
                         rank_text.find_first_not_of("0123456789") == std::string::npos,
                     path, ":", line_no, ": expected \"<base64> <rank>\"");
    std::string bytes(b64.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(bytes.data()),
                                  reinterpret_cast<const unsigned char*>(b64.data()), static_cast<int>(b64.size()));
    SMOE_CHECK_INPUT(n >= 0, path, ":", line_no, ": the token is not base64");
    size_t pad = 0;
    while (pad < 2 && pad < b64.size() && b64[b64.size() - 1 - pad] == '=') ++pad;
    bytes.resize(static_cast<size_t>(n) - pad);
    SMOE_CHECK_INPUT(!bytes.empty(), path, ":", line_no, ": an empty token");
    entries.emplace_back(std::stoll(rank_text), std::move(bytes));
  }
  SMOE_CHECK_INPUT(!entries.empty(), path, ": the tiktoken file holds no ranks");
  base_ = static_cast<int64_t>(entries.size());
  tokens_.reserve(static_cast<size_t>(base_ + kReservedSpecials));  // ranks_ views the strings: no reallocation
  tokens_.resize(static_cast<size_t>(base_));
  for (auto& [r, bytes] : entries) {
    SMOE_CHECK_INPUT(r >= 0 && r < base_, path, ": rank ", r, " is outside [0, ", base_, "): the ranks must be 0..N-1");
    SMOE_CHECK_INPUT(tokens_[static_cast<size_t>(r)].empty(), path, ": rank ", r, " appears twice");
    tokens_[static_cast<size_t>(r)] = std::move(bytes);
  }
  ranks_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const bool fresh = ranks_.emplace(tokens_[i], static_cast<int64_t>(i)).second;
    SMOE_CHECK_INPUT(fresh, path, ": the token of rank ", i, " appears twice");
  }
  for (int b = 0; b < 256; ++b)
    SMOE_CHECK_INPUT(rank(std::string(1, static_cast<char>(b))) >= 0, path, ": byte ", b,
                     " has no rank (every single byte must have one)");
  // Special tokens: named by tokenizer_config.json's added_tokens_decoder where it names them.
  std::unordered_map<int64_t, std::string> names;
  const std::string config = (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
  if (std::filesystem::exists(config)) {
    const nlohmann::json c = read_json_file(config);
    if (c.is_object() && c.contains("added_tokens_decoder")) {
      SMOE_CHECK_INPUT(c["added_tokens_decoder"].is_object(), config, ": added_tokens_decoder is not an object");
      for (const auto& [key, t] : c["added_tokens_decoder"].items()) {
        SMOE_CHECK_INPUT(!key.empty() && key.size() < 12 && key.find_first_not_of("0123456789") == std::string::npos,
                         config, ": added_tokens_decoder key ", json_quote(key), " is not an id");
        SMOE_CHECK_INPUT(t.is_object(), config, ": added_tokens_decoder[", key, "] is not an object");
        names[std::stoll(key)] = json_string(t, "content", config);
      }
    }
  }
  for (int64_t id = base_; id < base_ + kReservedSpecials; ++id) {
    auto it = names.find(id);
    std::string name = it != names.end() ? it->second : "<|reserved_token_" + std::to_string(id) + "|>";
    SMOE_CHECK_INPUT(!name.empty(), config, ": special token ", id, " has an empty name");
    by_first_byte_[static_cast<unsigned char>(name[0])].push_back(id);
    tokens_.push_back(name);
  }
  pattern_ = std::make_unique<Regex>(kKimiPattern, path + ": Kimi-K2's split pattern");
}

void Tiktoken::byte_pair_encode(std::string_view piece, std::vector<int64_t>& out) const {
  const int64_t whole = rank(piece);
  if (whole >= 0) {
    out.push_back(whole);
    return;
  }
  // Parts as start offsets; merge the pair of lowest rank, leftmost first.
  const int n = static_cast<int>(piece.size());
  std::vector<int> next(static_cast<size_t>(n)), prev(static_cast<size_t>(n));
  std::vector<char> alive(static_cast<size_t>(n), 1);
  for (int i = 0; i < n; ++i) {
    next[static_cast<size_t>(i)] = i + 1;
    prev[static_cast<size_t>(i)] = i - 1;
  }
  using Entry = std::pair<int64_t, int>;  // (rank of the pair starting at part, part)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  auto pair_rank = [&](int i) -> int64_t {
    const int j = next[static_cast<size_t>(i)];
    if (j >= n) return -1;
    const int end = next[static_cast<size_t>(j)];
    return rank(piece.substr(static_cast<size_t>(i), static_cast<size_t>(end - i)));
  };
  std::vector<int64_t> current(static_cast<size_t>(n), -1);
  auto push = [&](int i) {
    current[static_cast<size_t>(i)] = pair_rank(i);
    if (current[static_cast<size_t>(i)] >= 0) queue.push({current[static_cast<size_t>(i)], i});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    auto [r, i] = queue.top();
    queue.pop();
    if (!alive[static_cast<size_t>(i)] || current[static_cast<size_t>(i)] != r) continue;
    const int j = next[static_cast<size_t>(i)];
    alive[static_cast<size_t>(j)] = 0;
    next[static_cast<size_t>(i)] = next[static_cast<size_t>(j)];
    if (next[static_cast<size_t>(i)] < n) prev[static_cast<size_t>(next[static_cast<size_t>(i)])] = i;
    push(i);
    if (prev[static_cast<size_t>(i)] >= 0) push(prev[static_cast<size_t>(i)]);
  }
  for (int i = 0; i < n; i = next[static_cast<size_t>(i)]) {
    const int64_t id = rank(piece.substr(static_cast<size_t>(i), static_cast<size_t>(next[static_cast<size_t>(i)] - i)));
    SMOE_ASSERT(id >= 0, "tiktoken: a merged part has no rank");
    out.push_back(id);
  }
}

void Tiktoken::encode_ordinary(std::string_view text, std::vector<int64_t>& out) const {
  for (auto [b, e] : pattern_->find_all(text)) byte_pair_encode(text.substr(b, e - b), out);
}

// Special tokens (leftmost; the lowest id first among those at one place, as
// tiktoken's alternation in id order), and the text between them.
void Tiktoken::encode_chunk(std::string_view text, std::vector<int64_t>& out) const {
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto& candidates = by_first_byte_[static_cast<unsigned char>(text[i])];
    for (int64_t id : candidates) {
      const std::string& name = tokens_[static_cast<size_t>(id)];
      if (text.compare(i, name.size(), name) != 0) continue;
      encode_ordinary(text.substr(start, i - start), out);
      out.push_back(id);
      start = i + name.size();
      i = start - 1;
      break;
    }
  }
  encode_ordinary(text.substr(start), out);
}

std::vector<int64_t> Tiktoken::encode(const std::string& text, bool) const {
  const size_t bad = utf8_invalid_at(text);
  SMOE_CHECK_INPUT(bad == std::string::npos, "the text is not valid UTF-8 at byte ", bad);
  std::vector<int64_t> out;
  // Cut as tokenization_kimi.py does: 400,000-character chunks, then runs of one
  // class (space or not) of at most 25,000 characters.
  size_t chars_in_chunk = 0, slice_start = 0, run = 0;
  bool run_space = false;
  for (size_t i = 0, len = 0; i < text.size(); i += len) {
    const bool space = is_python_space(utf8_at(text, i, &len));
    if (chars_in_chunk == kMaxEncodeChars) {
      encode_chunk(std::string_view(text).substr(slice_start, i - slice_start), out);
      slice_start = i;
      chars_in_chunk = 0;
    }
    if (chars_in_chunk == 0) {
      run_space = space;
      run = 0;
    }
    ++chars_in_chunk;
    if (space != run_space) {
      run = 1;
      run_space = space;
    } else if (++run > kMaxRunChars) {
      encode_chunk(std::string_view(text).substr(slice_start, i - slice_start), out);
      slice_start = i;
      run = 1;
    }
  }
  encode_chunk(std::string_view(text).substr(slice_start), out);
  return out;
}

std::string Tiktoken::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (id >= base_ && skip_special_tokens) continue;
    bytes += tokens_[static_cast<size_t>(id)];
  }
  return utf8_lossy(bytes);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tiktoken(const std::string& path) { return std::make_unique<Tiktoken>(path); }

}  // namespace smoe
