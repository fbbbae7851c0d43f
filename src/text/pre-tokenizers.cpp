// Pre-tokenizers of tokenizer.json: Split, ByteLevel, Metaspace, Digits,
// Punctuation, Whitespace, WhitespaceSplit, Sequence.
#include <unicode/uchar.h>

#include <nlohmann/json.hpp>

#include "components.h"
#include "smoe/core/error.h"
#include "smoe/io/json.h"
#include "smoe/text/regex.h"
#include "smoe/text/unicode.h"

namespace smoe {

void split_pieces(std::vector<Piece>& pieces, SplitBehavior behavior, bool invert, const Matcher& find_all) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (auto& piece : pieces) {
    if (piece.token >= 0) {
      out.push_back(std::move(piece));
      continue;
    }
    const std::string& s = piece.text;
    // The text cut into stretches, each a match or not (as `tokenizers`' find_matches).
    std::vector<std::pair<std::pair<size_t, size_t>, bool>> parts;
    size_t prev = 0;
    if (s.empty()) {
      parts.push_back({{0, 0}, false});
    } else {
      for (auto [b, e] : find_all(s)) {
        if (prev != b) parts.push_back({{prev, b}, false});
        parts.push_back({{b, e}, true});
        prev = e;
      }
      if (prev != s.size()) parts.push_back({{prev, s.size()}, false});
    }
    if (invert)
      for (auto& p : parts) p.second = !p.second;
    // (offsets, remove)
    std::vector<std::pair<std::pair<size_t, size_t>, bool>> cut;
    bool previous_match = false;
    switch (behavior) {
      case SplitBehavior::Removed:
        cut = parts;
        break;
      case SplitBehavior::Isolated:
        for (auto& p : parts) cut.push_back({p.first, false});
        break;
      case SplitBehavior::Contiguous:
        for (auto& p : parts) {
          if (p.second == previous_match && !cut.empty())
            cut.back().first.second = p.first.second;
          else
            cut.push_back({p.first, false});
          previous_match = p.second;
        }
        break;
      case SplitBehavior::MergedWithPrevious:
        for (auto& p : parts) {
          if (p.second && !previous_match && !cut.empty())
            cut.back().first.second = p.first.second;
          else
            cut.push_back({p.first, false});
          previous_match = p.second;
        }
        break;
      case SplitBehavior::MergedWithNext:
        for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
          if (it->second && !previous_match && !cut.empty())
            cut.back().first.first = it->first.first;
          else
            cut.push_back({it->first, false});
          previous_match = it->second;
        }
        std::reverse(cut.begin(), cut.end());
        break;
    }
    for (auto& [range, remove] : cut) {
      if (remove || range.first == range.second) continue;
      out.push_back(Piece{s.substr(range.first, range.second - range.first), piece.at_start && range.first == 0, -1});
    }
  }
  pieces = std::move(out);
}

const std::vector<std::string>& byte_level_chars() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      append_utf8(t[b], printable ? static_cast<char32_t>(b) : next++);
    }
    return t;
  }();
  return table;
}

namespace {

// Each character for which `pred` holds is a match of its own.
Matcher char_matcher(bool (*pred)(char32_t)) {
  return [pred](std::string_view s) {
    std::vector<std::pair<size_t, size_t>> m;
    for (size_t i = 0, len = 0; i < s.size(); i += len)
      if (pred(utf8_at(s, i, &len))) m.emplace_back(i, i + len);
    return m;
  };
}

SplitBehavior parse_behavior(const nlohmann::json& j, const std::string& where, const char* fallback) {
  const std::string b = j.contains("behavior") ? json_string(j, "behavior", where) : fallback;
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  throw InputError(str(where, ": split behavior ", json_quote(b), " is not one of Removed, Isolated, "
                              "MergedWithPrevious, MergedWithNext, Contiguous"));
}

class Split : public PreTokenizer {
 public:
  Split(const nlohmann::json& j, const std::string& where)
      : pattern_(j.at("pattern"), where),
        behavior_(parse_behavior(j, where, "Isolated")),
        invert_(json_bool(j, "invert", false, where)) {}
  void split(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, behavior_, invert_, [this](std::string_view s) { return pattern_.find_all(s); });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex)
      regex_ = std::make_unique<Regex>(
          R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", where);
  }
  void split(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_)
      for (auto& p : pieces)
        if (p.token < 0 && !p.text.empty() && p.text[0] != ' ') p.text.insert(0, " ");
    if (regex_)
      split_pieces(pieces, SplitBehavior::Isolated, false, [this](std::string_view s) { return regex_->find_all(s); });
    const auto& table = byte_level_chars();
    for (auto& p : pieces) {
      if (p.token >= 0) continue;
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (unsigned char c : p.text) mapped += table[c];
      p.text = std::move(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Metaspace : public PreTokenizer {
 public:
  enum Scheme { Always, First, Never };
  Metaspace(std::string replacement, Scheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void split(std::vector<Piece>& pieces) const override {
    for (auto& p : pieces) {
      if (p.token >= 0) continue;
      std::string r;
      for (char c : p.text) {
        if (c == ' ')
          r += replacement_;
        else
          r += c;
      }
      const bool starts = r.compare(0, replacement_.size(), replacement_) == 0;
      if (!r.empty() && !starts && (scheme_ == Always || (scheme_ == First && p.at_start))) r.insert(0, replacement_);
      p.text = std::move(r);
    }
    if (split_)
      split_pieces(pieces, SplitBehavior::MergedWithNext, false, [this](std::string_view s) {
        std::vector<std::pair<size_t, size_t>> m;
        for (size_t at = s.find(replacement_); at != std::string_view::npos; at = s.find(replacement_, at + replacement_.size()))
          m.emplace_back(at, at + replacement_.size());
        return m;
      });
  }

 private:
  std::string replacement_;
  Scheme scheme_;
  bool split_;
};

// Whitespace: runs of word characters and runs of other non-space characters
// (`tokenizers`' \w+|[^\w\s]+ ); whitespace is dropped.
class Whitespace : public PreTokenizer {
 public:
  void split(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, SplitBehavior::Removed, true, [](std::string_view s) {
      std::vector<std::pair<size_t, size_t>> m;
      size_t i = 0, len = 0;
      while (i < s.size()) {
        const char32_t c = utf8_at(s, i, &len);
        if (is_whitespace(c)) {
          i += len;
          continue;
        }
        const bool word = is_word(c);
        const size_t b = i;
        i += len;
        while (i < s.size()) {
          const char32_t d = utf8_at(s, i, &len);
          if (is_whitespace(d) || is_word(d) != word) break;
          i += len;
        }
        m.emplace_back(b, i);
      }
      return m;
    });
  }
};

class CharSplit : public PreTokenizer {
 public:
  CharSplit(bool (*pred)(char32_t), SplitBehavior behavior) : pred_(pred), behavior_(behavior) {}
  void split(std::vector<Piece>& pieces) const override { split_pieces(pieces, behavior_, false, char_matcher(pred_)); }

 private:
  bool (*pred_)(char32_t);
  SplitBehavior behavior_;
};

class PreTokenizerSequence : public PreTokenizer {
 public:
  explicit PreTokenizerSequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void split(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->split(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

Metaspace::Scheme prepend_scheme(const nlohmann::json& j, const std::string& where) {
  if (j.contains("prepend_scheme")) {
    const std::string s = json_string(j, "prepend_scheme", where);
    SMOE_CHECK_INPUT(s == "never" || json_bool(j, "add_prefix_space", true, where), where,
                     ": add_prefix_space false but prepend_scheme ", s);
    if (s == "always") return Metaspace::Always;
    if (s == "first") return Metaspace::First;
    if (s == "never") return Metaspace::Never;
    throw InputError(str(where, ": prepend_scheme ", json_quote(s), " is not always, first or never"));
  }
  // Legacy files: add_prefix_space false must come with prepend_scheme never (as `tokenizers` loads them).
  SMOE_CHECK_INPUT(json_bool(j, "add_prefix_space", true, where), where,
                   ": add_prefix_space false without prepend_scheme \"never\" (the tokenizers library refuses it too)");
  return Metaspace::Always;
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where) {
  SMOE_CHECK_INPUT(j.is_object() && j.contains("type") && j["type"].is_string(), where,
                   ": a pre-tokenizer needs a \"type\"");
  const std::string type = j["type"].get<std::string>();
  const std::string at = where + ": pre-tokenizer " + type;
  if (type == "Split") {
    SMOE_CHECK_INPUT(j.contains("pattern"), at, ": no \"pattern\"");
    return std::make_unique<Split>(j, at);
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevel>(json_bool(j, "add_prefix_space", true, at), json_bool(j, "use_regex", true, at),
                                       at);
  if (type == "Metaspace") {
    std::string replacement = json_string(j, "replacement", at);
    size_t len = 0;
    SMOE_CHECK_INPUT(!replacement.empty() && utf8_invalid_at(replacement) == std::string::npos &&
                         (utf8_at(replacement, 0, &len), len == replacement.size()),
                     at, ": the replacement must be one character");
    return std::make_unique<Metaspace>(replacement, prepend_scheme(j, at), json_bool(j, "split", true, at));
  }
  if (type == "Digits")
    return std::make_unique<CharSplit>(&is_numeric, json_bool(j, "individual_digits", false, at)
                                                        ? SplitBehavior::Isolated
                                                        : SplitBehavior::Contiguous);
  if (type == "Punctuation") return std::make_unique<CharSplit>(&is_punctuation, parse_behavior(j, at, "Isolated"));
  if (type == "Whitespace") return std::make_unique<Whitespace>();
  if (type == "WhitespaceSplit") return std::make_unique<CharSplit>(&is_whitespace, SplitBehavior::Removed);
  if (type == "Sequence") {
    SMOE_CHECK_INPUT(j.contains("pretokenizers") && j["pretokenizers"].is_array(), at, ": no \"pretokenizers\" list");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : j["pretokenizers"]) parts.push_back(make_pre_tokenizer(p, where));
    return std::make_unique<PreTokenizerSequence>(std::move(parts));
  }
  throw InputError(str(where, ": pre-tokenizer ", type, " is not supported (smoe supports Split, ByteLevel, "
                              "Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit, Sequence)"));
}

}  // namespace smoe
