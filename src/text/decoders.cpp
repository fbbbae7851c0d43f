// Decoders of tokenizer.json: ByteLevel, Metaspace, ByteFallback, Fuse, Strip,
// Replace, Sequence. Each rewrites the list of token strings as `tokenizers`'
// decode_chain does; the result is their concatenation.
#include <nlohmann/json.hpp>

#include <unordered_map>

#include "components.h"
#include "smoe/core/error.h"
#include "smoe/io/json.h"
#include "smoe/text/unicode.h"

namespace smoe {

namespace {

class ByteLevelDecoder : public Decoder {
 public:
  ByteLevelDecoder() {
    const auto& table = byte_level_chars();
    for (int b = 0; b < 256; ++b) {
      size_t len = 0;
      byte_of_[utf8_at(table[b], 0, &len)] = static_cast<unsigned char>(b);
    }
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      std::string mapped;
      bool all = true;
      for (size_t i = 0, len = 0; i < t.size() && all; i += len) {
        auto it = byte_of_.find(utf8_at(t, i, &len));
        if (it == byte_of_.end())
          all = false;
        else
          mapped += static_cast<char>(it->second);
      }
      bytes += all ? mapped : t;
    }
    tokens.assign(1, utf8_lossy(bytes));
  }

 private:
  std::unordered_map<char32_t, unsigned char> byte_of_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first) : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (size_t k = 0; k < t.size();) {
        if (t.compare(k, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && strip_first_)) out += ' ';  // every replacement of the first token goes, as in `tokenizers`
          k += replacement_.size();
        } else {
          out += t[k++];
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

bool byte_token(const std::string& t, unsigned char* b) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return false;
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  if (!hex(t[3]) || !hex(t[4])) return false;
  *b = static_cast<unsigned char>(std::stoi(t.substr(3, 2), nullptr, 16));
  return true;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (utf8_invalid_at(pending) == std::string::npos)
        out.push_back(pending);
      else
        for (size_t i = 0; i < pending.size(); ++i) out.push_back("\xEF\xBF\xBD");
      pending.clear();
    };
    for (auto& t : tokens) {
      unsigned char b = 0;
      if (byte_token(t, &b)) {
        pending += static_cast<char>(b);
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, all);
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, char)
      for (size_t i = 0, len = 0; i < t.size(); i += len) chars.emplace_back(i, utf8_at(t, i, &len));
      size_t begin = 0, end = chars.size();
      for (size_t i = 0; i < start_ && i < chars.size() && chars[i].second == content_; ++i) begin = i + 1;
      for (size_t i = 0; i < stop_ && i < chars.size(); ++i) {
        const size_t k = chars.size() - i - 1;
        if (chars[k].second != content_) break;
        end = k;
      }
      if (begin >= end) {
        t.clear();
        continue;
      }
      const size_t b = chars[begin].first, e = end < chars.size() ? chars[end].first : t.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(const nlohmann::json& j, const std::string& where)
      : pattern_(j.at("pattern"), where), content_(json_string(j, "content", where)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = pattern_.replace_all(t, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class DecoderSequence : public Decoder {
 public:
  explicit DecoderSequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

char32_t one_char(const std::string& s, const std::string& where, const char* what) {
  size_t len = 0;
  SMOE_CHECK_INPUT(!s.empty() && utf8_invalid_at(s) == std::string::npos && (utf8_at(s, 0, &len), len == s.size()),
                   where, ": ", what, " must be one character");
  return utf8_at(s, 0, &len);
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where) {
  SMOE_CHECK_INPUT(j.is_object() && j.contains("type") && j["type"].is_string(), where, ": a decoder needs a \"type\"");
  const std::string type = j["type"].get<std::string>();
  const std::string at = where + ": decoder " + type;
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    const std::string r = json_string(j, "replacement", at);
    one_char(r, at, "the replacement");
    bool strip_first = true;
    if (j.contains("prepend_scheme")) strip_first = json_string(j, "prepend_scheme", at) != "never";
    else SMOE_CHECK_INPUT(json_bool(j, "add_prefix_space", true, at), at,
                          ": add_prefix_space false without prepend_scheme \"never\" (the tokenizers library refuses it too)");
    return std::make_unique<MetaspaceDecoder>(r, strip_first);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    SMOE_CHECK_INPUT(json_int(j, "start", 0, at) >= 0 && json_int(j, "stop", 0, at) >= 0, at,
                     ": start and stop must not be negative");
    return std::make_unique<StripDecoder>(one_char(json_string(j, "content", at), at, "the content"),
                                          static_cast<size_t>(json_int(j, "start", 0, at)),
                                          static_cast<size_t>(json_int(j, "stop", 0, at)));
  }
  if (type == "Replace") {
    SMOE_CHECK_INPUT(j.contains("pattern"), at, ": no \"pattern\"");
    return std::make_unique<ReplaceDecoder>(j, at);
  }
  if (type == "Sequence") {
    SMOE_CHECK_INPUT(j.contains("decoders") && j["decoders"].is_array(), at, ": no \"decoders\" list");
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& p : j["decoders"]) parts.push_back(make_decoder(p, where));
    return std::make_unique<DecoderSequence>(std::move(parts));
  }
  throw InputError(str(where, ": decoder ", type, " is not supported (smoe supports ByteLevel, Metaspace, "
                              "ByteFallback, Fuse, Strip, Replace, Sequence)"));
}

}  // namespace smoe
