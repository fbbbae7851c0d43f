// Tokenizers for text corpora: the built-in byte-level one (each UTF-8 byte is a
// token id 0..255) or a SentencePiece model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace smoe {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  // Ids it can produce lie in [0, vocab_size()).
  virtual int64_t vocab_size() const = 0;
  virtual std::string name() const = 0;
};

// "byte" for the byte-level tokenizer, otherwise the path of a SentencePiece
// .model file; InputError naming the file when it does not load.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec);

}  // namespace smoe
