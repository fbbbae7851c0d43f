// A Hugging Face tokenizer.json, encoded as `tokenizers` does: added tokens
// found first (those not normalized in the raw text, then the normalized ones
// in each normalized piece), pre-tokenization, the BPE model, then the
// post-processor's special tokens; decoded through the decoder chain.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include "components.h"
#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/io/json.h"
#include "smoe/text/tokenizer.h"
#include "smoe/text/unicode.h"

namespace smoe {

namespace {

struct AddedToken {
  std::string content;
  std::string decoded;  // what decode shows: the normalized content of a normalized token
  int64_t id = 0;
  bool special = false, normalized = false, lstrip = false, rstrip = false, single_word = false;
};

// Leftmost-longest matching of a set of strings, over a byte trie.
class TokenTrie {
 public:
  void add(const std::string& s, int index) {
    int node = 0;
    for (unsigned char c : s) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | c;
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        it = edges_.emplace(key, static_cast<int>(terminal_.size())).first;
        terminal_.push_back(-1);
      }
      node = it->second;
    }
    terminal_[static_cast<size_t>(node)] = index;
  }
  bool empty() const { return terminal_.size() == 1; }
  // The longest string starting at `at`: (index, length), or (-1, 0).
  std::pair<int, size_t> longest(std::string_view s, size_t at) const {
    int node = 0, best = -1;
    size_t best_len = 0;
    for (size_t i = at; i < s.size(); ++i) {
      auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(s[i]));
      if (it == edges_.end()) break;
      node = it->second;
      if (terminal_[static_cast<size_t>(node)] >= 0) {
        best = terminal_[static_cast<size_t>(node)];
        best_len = i + 1 - at;
      }
    }
    return {best, best_len};
  }

 private:
  std::unordered_map<uint64_t, int> edges_;
  std::vector<int> terminal_{-1};
};

char32_t last_char(std::string_view s) {
  size_t len = 0;
  return utf8_at(s, utf8_char_start(s, s.size()), &len);
}

class HfTokenizer : public Tokenizer {
 public:
  explicit HfTokenizer(const std::string& path);
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override;
  std::vector<int64_t> prefix_ids() const override { return prefix_; }
  int64_t vocab_size() const override { return vocab_size_; }
  std::string name() const override { return "tokenizer.json:" + path_; }

 private:
  void split_added(std::vector<Piece>& pieces, const TokenTrie& trie, const std::vector<int>& members) const;
  void read_post_processor(const nlohmann::json& j);
  void read_tokenizer_config();

  std::string path_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<AddedToken> added_;
  std::unordered_map<int64_t, size_t> added_by_id_;
  TokenTrie raw_trie_, normalized_trie_;
  std::vector<int> raw_members_, normalized_members_;  // trie index -> added_ index
  std::vector<int64_t> prefix_, suffix_;
  int64_t vocab_size_ = 0;
};

HfTokenizer::HfTokenizer(const std::string& path) : path_(path) {
  const nlohmann::json j = read_json_file(path);
  SMOE_CHECK_INPUT(j.is_object(), path, ": a tokenizer.json must be a JSON object");
  SMOE_CHECK_INPUT(j.contains("model") && j["model"].is_object(), path, ": no \"model\" object");
  model_ = std::make_unique<BpeModel>(j["model"], path + ": model");
  vocab_size_ = model_->size();
  if (j.contains("normalizer") && !j["normalizer"].is_null()) normalizer_ = make_normalizer(j["normalizer"], path);
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null())
    pre_tokenizer_ = make_pre_tokenizer(j["pre_tokenizer"], path);
  if (j.contains("decoder") && !j["decoder"].is_null()) decoder_ = make_decoder(j["decoder"], path);
  if (j.contains("added_tokens")) {
    SMOE_CHECK_INPUT(j["added_tokens"].is_array(), path, ": \"added_tokens\" is not a list");
    int64_t next_id = model_->entries();
    for (const auto& t : j["added_tokens"]) {
      const std::string at = path + ": added token " + json_quote(t);
      SMOE_CHECK_INPUT(t.is_object(), at, ": not an object");
      AddedToken a;
      a.content = json_string(t, "content", at);
      a.decoded = a.content;
      a.id = json_int(t, "id", at);
      SMOE_CHECK_INPUT(!a.content.empty() && a.id >= 0 && a.id < (int64_t{1} << 31), at, ": empty, or an id out of range");
      a.special = json_bool(t, "special", false, at);
      a.normalized = json_bool(t, "normalized", !a.special, at);
      a.lstrip = json_bool(t, "lstrip", false, at);
      a.rstrip = json_bool(t, "rstrip", false, at);
      a.single_word = json_bool(t, "single_word", false, at);
      // As `tokenizers` loads them: the model's id where the vocabulary has the
      // content, else the next free id in file order (the file's id is only checked).
      const int64_t model_id = model_->token_to_id(a.content);
      a.id = model_id >= 0 ? model_id : next_id++;
      vocab_size_ = std::max(vocab_size_, a.id + 1);
      added_by_id_[a.id] = added_.size();
      added_.push_back(a);
    }
  }
  for (size_t i = 0; i < added_.size(); ++i) {
    const AddedToken& a = added_[i];
    if (a.normalized) {
      std::string content = a.content;
      if (normalizer_) normalizer_->normalize(content);
      if (content.empty()) continue;
      added_[i].decoded = content;
      normalized_trie_.add(content, static_cast<int>(normalized_members_.size()));
      normalized_members_.push_back(static_cast<int>(i));
    } else {
      raw_trie_.add(a.content, static_cast<int>(raw_members_.size()));
      raw_members_.push_back(static_cast<int>(i));
    }
  }
  if (j.contains("post_processor") && !j["post_processor"].is_null()) read_post_processor(j["post_processor"]);
  read_tokenizer_config();
}

void HfTokenizer::read_post_processor(const nlohmann::json& j) {
  SMOE_CHECK_INPUT(j.is_object() && j.contains("type") && j["type"].is_string(), path_,
                   ": a post-processor needs a \"type\"");
  const std::string type = j["type"].get<std::string>();
  const std::string at = path_ + ": post-processor " + type;
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    SMOE_CHECK_INPUT(j.contains("processors") && j["processors"].is_array(), at, ": no \"processors\" list");
    for (const auto& p : j["processors"]) read_post_processor(p);
    return;
  }
  SMOE_CHECK_INPUT(type == "TemplateProcessing", path_, ": post-processor ", type,
                   " is not supported (smoe supports TemplateProcessing, ByteLevel, Sequence)");
  SMOE_CHECK_INPUT(j.contains("single") && j["single"].is_array(), at, ": no \"single\" template");
  const nlohmann::json specials = j.contains("special_tokens") ? j["special_tokens"] : nlohmann::json::object();
  std::vector<int64_t> before, after;
  bool seen_sequence = false;
  for (const auto& item : j["single"]) {
    if (item.is_object() && item.contains("Sequence")) {
      SMOE_CHECK_INPUT(!seen_sequence, at, ": the single template holds two sequences");
      seen_sequence = true;
      continue;
    }
    SMOE_CHECK_INPUT(item.is_object() && item.contains("SpecialToken") && item["SpecialToken"].is_object(), at,
                     ": a template item is neither Sequence nor SpecialToken: ", json_quote(item));
    const std::string name = json_string(item["SpecialToken"], "id", at);
    SMOE_CHECK_INPUT(specials.is_object() && specials.contains(name) && specials[name].is_object() &&
                         specials[name].contains("ids") && specials[name]["ids"].is_array(),
                     at, ": the special token ", json_quote(name), " has no ids in \"special_tokens\"");
    for (const auto& id : specials[name]["ids"]) {
      const int64_t v = json_to_int(id, at, "a special token id");
      SMOE_CHECK_INPUT(v >= 0 && v < vocab_size_, at, ": special token id ", v, " is outside the vocabulary [0, ",
                       vocab_size_, ")");
      (seen_sequence ? after : before).push_back(v);
    }
  }
  SMOE_CHECK_INPUT(seen_sequence, at, ": the single template has no Sequence");
  prefix_.insert(prefix_.begin(), before.begin(), before.end());
  suffix_.insert(suffix_.end(), after.begin(), after.end());
}

// transformers' Llama/Gemma-style tokenizers add BOS/EOS by tokenizer_config.json.
void HfTokenizer::read_tokenizer_config() {
  const std::string path = (std::filesystem::path(path_).parent_path() / "tokenizer_config.json").string();
  if (!std::filesystem::exists(path)) return;
  const nlohmann::json c = read_json_file(path);
  SMOE_CHECK_INPUT(c.is_object(), path, ": not a JSON object");
  auto token_id = [&](const char* key) -> int64_t {
    SMOE_CHECK_INPUT(c.contains(key), path, ": \"add_", std::string(key).substr(0, 3), "_token\" is true but \"", key,
                     "\" is missing");
    const nlohmann::json& t = c[key];
    const std::string content = t.is_object() ? json_string(t, "content", path) : t.is_string() ? t.get<std::string>() : "";
    SMOE_CHECK_INPUT(!content.empty(), path, ": \"", key, "\" is neither a string nor {\"content\": ...}");
    for (const auto& a : added_)
      if (a.content == content) return a.id;
    const int64_t id = model_->token_to_id(content);
    SMOE_CHECK_INPUT(id >= 0, path, ": ", key, " ", json_quote(content), " is not in ", path_);
    return id;
  };
  if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean() && c["add_bos_token"].get<bool>()) {
    const int64_t bos = token_id("bos_token");
    if (std::find(prefix_.begin(), prefix_.end(), bos) == prefix_.end()) prefix_.insert(prefix_.begin(), bos);
  }
  if (c.contains("add_eos_token") && c["add_eos_token"].is_boolean() && c["add_eos_token"].get<bool>()) {
    const int64_t eos = token_id("eos_token");
    if (std::find(suffix_.begin(), suffix_.end(), eos) == suffix_.end()) suffix_.push_back(eos);
  }
}

// Splits pieces at the added tokens of `trie`, with their lstrip, rstrip and
// single_word rules, as `tokenizers`' AddedVocabulary::find_matches.
void HfTokenizer::split_added(std::vector<Piece>& pieces, const TokenTrie& trie, const std::vector<int>& members) const {
  if (trie.empty()) return;
  std::vector<Piece> out;
  for (auto& piece : pieces) {
    if (piece.token >= 0) {
      out.push_back(std::move(piece));
      continue;
    }
    const std::string& s = piece.text;
    size_t start_offset = 0;
    auto emit = [&](size_t b, size_t e, int64_t token) {
      if (b < e) out.push_back(Piece{s.substr(b, e - b), piece.at_start && b == 0, token});
    };
    for (size_t i = 0; i < s.size();) {
      auto [index, len] = trie.longest(s, i);
      if (index < 0) {
        ++i;
        continue;
      }
      const AddedToken& a = added_[static_cast<size_t>(members[static_cast<size_t>(index)])];
      size_t start = i, stop = i + len;
      i = stop;
      if (a.single_word) {
        const bool start_space = start == 0 || !is_word(last_char(std::string_view(s).substr(0, start)));
        size_t l = 0;
        const bool stop_space = stop == s.size() || !is_word(utf8_at(s, stop, &l));
        if (!start_space || !stop_space) continue;
      }
      if (a.lstrip) {
        size_t b = start;
        while (b > 0) {
          const size_t k = utf8_char_start(s, b);
          size_t l = 0;
          if (!is_whitespace(utf8_at(s, k, &l))) break;
          b = k;
        }
        start = std::max(b, start_offset);
      }
      if (a.rstrip) {
        size_t l = 0;
        while (stop < s.size() && is_whitespace(utf8_at(s, stop, &l))) stop += l;
      }
      emit(start_offset, start, -1);
      out.push_back(Piece{s.substr(start, stop - start), piece.at_start && start == 0, a.id});
      start_offset = stop;
    }
    emit(start_offset, s.size(), -1);
  }
  pieces = std::move(out);
}

std::vector<int64_t> HfTokenizer::encode(const std::string& text, bool add_special_tokens) const {
  const size_t bad = utf8_invalid_at(text);
  SMOE_CHECK_INPUT(bad == std::string::npos, "the text is not valid UTF-8 at byte ", bad);
  std::vector<Piece> pieces{Piece{text, true, -1}};
  split_added(pieces, raw_trie_, raw_members_);
  if (normalizer_)
    for (auto& p : pieces)
      if (p.token < 0) normalizer_->normalize(p.text);
  split_added(pieces, normalized_trie_, normalized_members_);
  // Pieces that normalization emptied are gone, as `tokenizers` drops empty splits.
  pieces.erase(std::remove_if(pieces.begin(), pieces.end(), [](const Piece& p) { return p.token < 0 && p.text.empty(); }),
               pieces.end());
  if (pre_tokenizer_) pre_tokenizer_->split(pieces);
  std::vector<int64_t> ids;
  if (add_special_tokens) ids = prefix_;
  for (const auto& p : pieces) {
    if (p.token >= 0)
      ids.push_back(p.token);
    else
      model_->tokenize(p.text, ids);
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

std::string HfTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  for (int64_t id : ids) {
    // Unknown ids are left out, as `tokenizers` does.
    auto a = added_by_id_.find(id);
    if (a != added_by_id_.end()) {
      if (!(skip_special_tokens && added_[a->second].special)) tokens.push_back(added_[a->second].decoded);
      continue;
    }
    if (const std::string* t = model_->id_to_token(id)) tokens.push_back(*t);
  }
  if (!decoder_) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  decoder_->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path) {
  check_input_file(path, "tokenizer");
  return std::make_unique<HfTokenizer>(path);
}

}  // namespace smoe
