// A C interface to libsentencepiece, built as its own shared library.
//
// Why: LibTorch 1.13 (Debian) exports protobuf symbols of its own; loaded in the
// same symbol scope, libsentencepiece binds to them and crashes while registering
// its descriptors. io/tokenizer.cpp therefore loads this library with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND), which makes it bind to its own protobuf.
#include <sentencepiece_processor.h>

#include <cstdio>
#include <cstring>

extern "C" {

// Returns a processor, or nullptr with the reason written to `error`.
void* smoe_spm_load(const char* path, char* error, int error_size) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  auto status = sp->Load(path);
  if (!status.ok()) {
    std::snprintf(error, static_cast<size_t>(error_size), "%s", status.ToString().c_str());
    delete sp;
    return nullptr;
  }
  return sp;
}

void smoe_spm_free(void* sp) { delete static_cast<sentencepiece::SentencePieceProcessor*>(sp); }

int smoe_spm_vocab_size(void* sp) { return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->GetPieceSize(); }

// Encodes `text` into at most `capacity` ids; returns the number of ids (which
// may exceed capacity: call again with more room), or -1 with `error` set.
long smoe_spm_encode(void* sp, const char* text, long text_size, int* ids, long capacity, char* error,
                     int error_size) {
  std::vector<int> out;
  auto status =
      static_cast<sentencepiece::SentencePieceProcessor*>(sp)->Encode(std::string(text, static_cast<size_t>(text_size)), &out);
  if (!status.ok()) {
    std::snprintf(error, static_cast<size_t>(error_size), "%s", status.ToString().c_str());
    return -1;
  }
  if (static_cast<long>(out.size()) <= capacity) std::memcpy(ids, out.data(), out.size() * sizeof(int));
  return static_cast<long>(out.size());
}

// Decodes `count` ids into at most `capacity` bytes of `text`; returns the
// number of bytes (which may exceed capacity: call again with more room), or -1.
long smoe_spm_decode(void* sp, const int* ids, long count, char* text, long capacity, char* error, int error_size) {
  std::string out;
  auto status = static_cast<sentencepiece::SentencePieceProcessor*>(sp)->Decode(
      std::vector<int>(ids, ids + count), &out);
  if (!status.ok()) {
    std::snprintf(error, static_cast<size_t>(error_size), "%s", status.ToString().c_str());
    return -1;
  }
  if (static_cast<long>(out.size()) <= capacity) std::memcpy(text, out.data(), out.size());
  return static_cast<long>(out.size());
}

}  // extern "C"
