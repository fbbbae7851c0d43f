#include "smoe/io/tokenizer.h"

#include <dlfcn.h>

#include "smoe/core/error.h"

namespace smoe {

namespace {

class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  int64_t vocab_size() const override { return 256; }
  std::string name() const override { return "byte"; }
};

// libsentencepiece through the shim library (see src/io/sentencepiece-shim.cpp
// for why it is loaded with RTLD_DEEPBIND).
struct SentencePieceApi {
  void* (*load)(const char*, char*, int);
  void (*free)(void*);
  int (*vocab_size)(void*);
  long (*encode)(void*, const char*, long, int*, long, char*, int);
};

const SentencePieceApi& sentencepiece_api() {
  static SentencePieceApi api = [] {
    void* lib = nullptr;
    std::string tried;
    for (const char* path : {SMOE_SPM_SHIM_BUILD_PATH, SMOE_SPM_SHIM_INSTALL_PATH}) {
      lib = ::dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (lib) break;
      tried += std::string(" ") + ::dlerror();
    }
    if (!lib) throw RuntimeError(str("cannot load the SentencePiece library:", tried));
    SentencePieceApi a{};
    a.load = reinterpret_cast<decltype(a.load)>(::dlsym(lib, "smoe_spm_load"));
    a.free = reinterpret_cast<decltype(a.free)>(::dlsym(lib, "smoe_spm_free"));
    a.vocab_size = reinterpret_cast<decltype(a.vocab_size)>(::dlsym(lib, "smoe_spm_vocab_size"));
    a.encode = reinterpret_cast<decltype(a.encode)>(::dlsym(lib, "smoe_spm_encode"));
    SMOE_ASSERT(a.load && a.free && a.vocab_size && a.encode, "SentencePiece shim lacks a symbol");
    return a;
  }();
  return api;
}

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path), api_(sentencepiece_api()) {
    char error[512] = {0};
    sp_ = api_.load(path.c_str(), error, sizeof error);
    SMOE_CHECK_INPUT(sp_ != nullptr, path, ": not a SentencePiece model: ", error);
  }
  ~SentencePieceTokenizer() override { api_.free(sp_); }

  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int> ids(text.size() + 16);
    char error[512] = {0};
    long n = api_.encode(sp_, text.data(), static_cast<long>(text.size()), ids.data(), static_cast<long>(ids.size()),
                         error, sizeof error);
    if (n > static_cast<long>(ids.size())) {
      ids.resize(static_cast<size_t>(n));
      n = api_.encode(sp_, text.data(), static_cast<long>(text.size()), ids.data(), n, error, sizeof error);
    }
    SMOE_CHECK_INPUT(n >= 0, path_, ": SentencePiece failed to encode: ", error);
    return std::vector<int64_t>(ids.begin(), ids.begin() + n);
  }
  int64_t vocab_size() const override { return api_.vocab_size(sp_); }
  std::string name() const override { return "sentencepiece:" + path_; }

 private:
  std::string path_;
  const SentencePieceApi& api_;
  void* sp_ = nullptr;
};

}  // namespace

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  return std::make_unique<SentencePieceTokenizer>(spec);
}

}  // namespace smoe
