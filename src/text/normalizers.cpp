// Normalizers of tokenizer.json: NFC, NFD, NFKC, NFKD, Lowercase, Strip,
// Prepend, Replace, Sequence.
#include <nlohmann/json.hpp>

#include "components.h"
#include "smoe/core/error.h"
#include "smoe/io/json.h"
#include "smoe/text/regex.h"
#include "smoe/text/unicode.h"

namespace smoe {

Pattern::Pattern(const nlohmann::json& j, const std::string& where) {
  SMOE_CHECK_INPUT(j.is_object() && j.size() == 1 && (j.contains("String") || j.contains("Regex")), where,
                   ": a pattern must be {\"String\": ...} or {\"Regex\": ...}, not ", json_quote(j));
  if (j.contains("String")) {
    SMOE_CHECK_INPUT(j["String"].is_string(), where, ": the pattern's String is not a string");
    literal_ = j["String"].get<std::string>();
    SMOE_CHECK_INPUT(!literal_.empty(), where, ": an empty String pattern");
  } else {
    SMOE_CHECK_INPUT(j["Regex"].is_string(), where, ": the pattern's Regex is not a string");
    regex_ = std::make_unique<Regex>(j["Regex"].get<std::string>(), where);
  }
}

Pattern::~Pattern() = default;

std::vector<std::pair<size_t, size_t>> Pattern::find_all(std::string_view text) const {
  if (regex_) return regex_->find_all(text);
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t at = text.find(literal_); at != std::string_view::npos; at = text.find(literal_, at + literal_.size()))
    out.emplace_back(at, at + literal_.size());
  return out;
}

std::string Pattern::replace_all(const std::string& text, const std::string& content) const {
  std::string out;
  size_t prev = 0;
  for (auto [b, e] : find_all(text)) {
    out.append(text, prev, b - prev);
    out += content;
    prev = e;
  }
  out.append(text, prev, std::string::npos);
  return out;
}

namespace {

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm f) : form_(f) {}
  void normalize(std::string& s) const override { s = normalize_unicode(s, form_); }

 private:
  NormalForm form_;
};

class Lowercase : public Normalizer {
 public:
  void normalize(std::string& s) const override { s = to_lower(s); }
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size(), len = 0;
    if (left_)
      while (b < e && is_whitespace(utf8_at(s, b, &len))) b += len;
    if (right_)
      while (e > b) {
        const size_t k = utf8_char_start(s, e);
        if (!is_whitespace(utf8_at(s, k, &len))) break;
        e = k;
      }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

class Replace : public Normalizer {
 public:
  Replace(const nlohmann::json& j, const std::string& where)
      : pattern_(j.at("pattern"), where), content_(json_string(j, "content", where)) {}
  void normalize(std::string& s) const override { s = pattern_.replace_all(s, content_); }

 private:
  Pattern pattern_;
  std::string content_;
};

class NormalizerSequence : public Normalizer {
 public:
  explicit NormalizerSequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where) {
  SMOE_CHECK_INPUT(j.is_object() && j.contains("type") && j["type"].is_string(), where,
                   ": a normalizer needs a \"type\"");
  const std::string type = j["type"].get<std::string>();
  const std::string at = where + ": normalizer " + type;
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalForm::NFC);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalForm::NFD);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormalForm::NFKC);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormalForm::NFKD);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Strip")
    return std::make_unique<Strip>(json_bool(j, "strip_left", true, at), json_bool(j, "strip_right", true, at));
  if (type == "Prepend") return std::make_unique<Prepend>(json_string(j, "prepend", at));
  if (type == "Replace") {
    SMOE_CHECK_INPUT(j.contains("pattern"), at, ": no \"pattern\"");
    return std::make_unique<Replace>(j, at);
  }
  if (type == "Sequence") {
    SMOE_CHECK_INPUT(j.contains("normalizers") && j["normalizers"].is_array(), at, ": no \"normalizers\" list");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& p : j["normalizers"]) parts.push_back(make_normalizer(p, where));
    return std::make_unique<NormalizerSequence>(std::move(parts));
  }
  throw InputError(str(where, ": normalizer ", type, " is not supported (smoe supports NFC, NFD, NFKC, NFKD, "
                              "Lowercase, Strip, Prepend, Replace, Sequence)"));
}

}  // namespace smoe
