#include "smoe/text/tokenizer.h"

#include <dlfcn.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/core/file.h"
#include "smoe/io/json.h"
#include "smoe/text/unicode.h"

namespace smoe {

namespace {

class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int64_t> encode(const std::string& text, bool) const override {
    const size_t bad = utf8_invalid_at(text);
    SMOE_CHECK_INPUT(bad == std::string::npos, "the text is not valid UTF-8 at byte ", bad);
    std::vector<int64_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  // The bytes as they are (a byte model's text may be any bytes); ids that are
  // no byte are left out, as `tokenizers` leaves out unknown ids.
  std::string decode(const std::vector<int64_t>& ids, bool) const override {
    std::string s;
    for (int64_t id : ids)
      if (id >= 0 && id < 256) s += static_cast<char>(id);
    return s;
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
  long (*decode)(void*, const int*, long, char*, long, char*, int);
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
    a.decode = reinterpret_cast<decltype(a.decode)>(::dlsym(lib, "smoe_spm_decode"));
    SMOE_ASSERT(a.load && a.free && a.vocab_size && a.encode && a.decode, "SentencePiece shim lacks a symbol");
    return a;
  }();
  return api;
}

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path), api_(sentencepiece_api()) {
    const uint64_t bytes = std::filesystem::file_size(path);
    SMOE_CHECK_INPUT(bytes <= kMaxJsonBytes, path, ": a SentencePiece model of ", bytes, " bytes, beyond the limit of ",
                     kMaxJsonBytes);
    char error[512] = {0};
    sp_ = api_.load(path.c_str(), error, sizeof error);
    SMOE_CHECK_INPUT(sp_ != nullptr, path, ": not a SentencePiece model: ", error);
  }
  ~SentencePieceTokenizer() override { api_.free(sp_); }

  // As spm_encode: no BOS or EOS, with or without add_special_tokens.
  std::vector<int64_t> encode(const std::string& text, bool) const override {
    const size_t bad = utf8_invalid_at(text);
    SMOE_CHECK_INPUT(bad == std::string::npos, "the text is not valid UTF-8 at byte ", bad);
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
  std::string decode(const std::vector<int64_t>& ids, bool) const override {
    std::vector<int> in;  // ids beyond the vocabulary left out, as `tokenizers` does
    for (int64_t id : ids)
      if (id >= 0 && id < vocab_size()) in.push_back(static_cast<int>(id));
    std::string text(ids.size() * 8 + 16, '\0');
    char error[512] = {0};
    long n = api_.decode(sp_, in.data(), static_cast<long>(in.size()), text.data(), static_cast<long>(text.size()),
                         error, sizeof error);
    if (n > static_cast<long>(text.size())) {
      text.resize(static_cast<size_t>(n));
      n = api_.decode(sp_, in.data(), static_cast<long>(in.size()), text.data(), n, error, sizeof error);
    }
    SMOE_CHECK_INPUT(n >= 0, path_, ": SentencePiece failed to decode: ", error);
    text.resize(static_cast<size_t>(n));
    return text;
  }
  int64_t vocab_size() const override { return api_.vocab_size(sp_); }
  std::string name() const override { return "sentencepiece:" + path_; }

 private:
  std::string path_;
  const SentencePieceApi& api_;
  void* sp_ = nullptr;
};


// A tiktoken rank file is text: "<base64> <rank>" per line; a SentencePiece
// model is a protobuf.
bool is_tiktoken_file(const std::string& path) {
  if (std::filesystem::path(path).filename() == "tiktoken.model") return true;
  std::ifstream in(path, std::ios::binary);
  std::string line(256, '\0');  // the first line, or 256 bytes of it: a rank line is shorter
  in.read(line.data(), static_cast<std::streamsize>(line.size()));
  line.resize(static_cast<size_t>(in.gcount()));
  const size_t newline = line.find('\n');
  if (newline == std::string::npos) return false;
  line.resize(newline);
  const size_t space = line.find(' ');
  if (space == std::string::npos || space == 0 || space + 1 == line.size()) return false;
  for (size_t i = 0; i < line.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(line[i]);
    const bool ok = i < space ? (std::isalnum(c) || c == '+' || c == '/' || c == '=') : i == space || std::isdigit(c);
    if (!ok) return false;
  }
  return true;
}

bool smoe_trained(const std::string& model_dir) {
  const std::string config = model_dir + "/config.json";
  if (!std::filesystem::exists(config)) return false;
  const nlohmann::json c = read_json_file(config);
  return c.is_object() && c.contains("smoe_tokenizer") && c["smoe_tokenizer"] == "byte";
}

}  // namespace

std::string tokenizer_source(const std::string& spec, const std::string& model_dir) {
  if (!spec.empty()) return spec;
  SMOE_CHECK_INPUT(!model_dir.empty(), "no --tokenizer given and no model folder to take one from");
  for (const char* name : {"tokenizer.json", "tiktoken.model", "tokenizer.model"}) {
    const std::string path = model_dir + "/" + name;
    if (std::filesystem::exists(path)) return path;
  }
  if (smoe_trained(model_dir)) return "byte";
  throw InputError(str(model_dir, ": the model folder has no tokenizer.json, tiktoken.model or tokenizer.model; ",
                       "give --tokenizer (a tokenizer.json, a tiktoken.model, a SentencePiece .model, or byte)"));
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec, const std::string& model_dir) {
  const std::string source = tokenizer_source(spec, model_dir);
  if (source == "byte") return std::make_unique<ByteTokenizer>();
  check_input_file(source, "tokenizer");
  if (source.size() >= 5 && source.compare(source.size() - 5, 5, ".json") == 0) return load_hf_tokenizer(source);
  if (is_tiktoken_file(source)) return load_tiktoken(source);
  return std::make_unique<SentencePieceTokenizer>(source);
}

}  // namespace smoe
