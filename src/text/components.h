// The parts of a Hugging Face tokenizer.json pipeline (private to src/text/):
// normalizers, pre-tokenizers, the BPE model and decoders, each built from its
// JSON object by one factory that names the file and the component it refuses.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace smoe {

class Regex;

// A stretch of text on its way to tokens. `token` >= 0: already a token (an
// added token found in the text), left alone by every later stage.
struct Piece {
  std::string text;
  bool at_start = false;  // begins at the start of the original text
  int64_t token = -1;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may rewrite) every piece that is not yet a token; drops empty pieces.
  virtual void split(std::vector<Piece>& pieces) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// A pattern of tokenizer.json: {"String": s} (literal) or {"Regex": r} (Oniguruma).
class Pattern {
 public:
  Pattern(const nlohmann::json& j, const std::string& where);
  ~Pattern();
  // Non-overlapping matches, left to right, as [begin, end) byte offsets.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  // `text` with every match replaced by `content`.
  std::string replace_all(const std::string& text, const std::string& content) const;

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
};

// `where` names the file; the component's path inside it is added to messages.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where);

// Splits every piece that is not a token at the matches, by the `tokenizers`
// SplitDelimiterBehavior (Removed, Isolated, MergedWithPrevious,
// MergedWithNext, Contiguous); `invert` swaps matches and the text between.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
using Matcher = std::function<std::vector<std::pair<size_t, size_t>>(std::string_view)>;
void split_pieces(std::vector<Piece>& pieces, SplitBehavior behavior, bool invert, const Matcher& find_all);

// The GPT-2 byte-to-character table of the ByteLevel components.
const std::vector<std::string>& byte_level_chars();

// Byte-pair encoding over a vocabulary and ranked merges, as `tokenizers`' BPE
// model does it (byte fallback, unk fusing, ignore_merges).
class BpeModel {
 public:
  BpeModel(const nlohmann::json& model, const std::string& where);
  void tokenize(const std::string& word, std::vector<int64_t>& out) const;
  // -1 when unknown.
  int64_t token_to_id(const std::string& token) const;
  const std::string* id_to_token(int64_t id) const;
  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }  // largest id + 1
  int64_t entries() const { return static_cast<int64_t>(vocab_.size()); }

 private:
  void merge(std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> tokens_;  // by id ("" for ids the vocabulary skips)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, merged id)
  int32_t unk_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string prefix_, suffix_;
  int32_t byte_ids_[256];
  uint64_t serial_ = 0;  // unique per model: keys the per-thread word cache
};

}  // namespace smoe
