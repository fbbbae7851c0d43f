// Tokenizers for text: the byte-level one (each UTF-8 byte is a token id 0..255),
// a Hugging Face tokenizer.json, a tiktoken rank file (Kimi-K2) or a
// SentencePiece model. All are exact: ids equal those of the reference library.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace smoe {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // `text` must be valid UTF-8 (InputError otherwise). With add_special_tokens
  // the ids carry what the tokenizer adds around a text (BOS, EOS), as
  // `tokenizer(text)` in `transformers` does; without, as
  // `encode(text, add_special_tokens=False)`.
  virtual std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const = 0;
  // Text of `ids`, as the reference library's decode (invalid UTF-8 replaced by U+FFFD).
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const = 0;
  // The ids that encode puts before the text when adding special tokens.
  virtual std::vector<int64_t> prefix_ids() const { return {}; }
  // Ids it can produce lie in [0, vocab_size()).
  virtual int64_t vocab_size() const = 0;
  virtual std::string name() const = 0;
};

// `spec`: "byte"; a tokenizer.json; a tiktoken.model (base64 token and rank per
// line); a SentencePiece .model; or "" for the model folder's own tokenizer
// (tokenizer.json, then tiktoken.model, then tokenizer.model; byte for models
// smoe trained, which say so in config.json). InputError naming the file and
// the fault when it does not load.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec, const std::string& model_dir = "");

// The file make_tokenizer would load for (spec, model_dir), or "byte"; for
// provenance and input lists.
std::string tokenizer_source(const std::string& spec, const std::string& model_dir);

// Hugging Face tokenizer.json (with tokenizer_config.json beside it, if any).
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path);
// tiktoken rank file, with Kimi-K2's split pattern and the special tokens of the
// tokenizer_config.json beside it.
std::unique_ptr<Tokenizer> load_tiktoken(const std::string& path);

}  // namespace smoe
