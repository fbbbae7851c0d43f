// libFuzzer target: the safetensors header parser on arbitrary bytes, read as a
// whole file. Bad input must end in InputError; anything else (another exception,
// a crash, a sanitizer report) is a bug. A header that parses must describe
// tensors whose byte ranges lie inside the file, match dtype x shape, and (where
// not empty) do not overlap: the guarantees the mmap readers rely on.
#include <cstdint>
#include <cstdlib>

#include "smoe/core/error.h"
#include "smoe/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  smoe::SafetensorsHeader h;
  try {
    h = smoe::parse_safetensors_header(data, size, "fuzz.safetensors");
  } catch (const smoe::InputError&) {
    return 0;
  }
  uint64_t previous_end = 0;  // of the non-empty tensors, in data order
  for (const auto& t : h.tensors) {
    if (t.end < t.begin || h.data_start + t.end > size) std::abort();
    if (t.nbytes() != static_cast<uint64_t>(t.numel()) * smoe::dtype_size(t.dtype)) std::abort();
    if (h.find(t.name) != &t) std::abort();
    if (t.nbytes() == 0) continue;
    if (t.begin < previous_end) std::abort();
    previous_end = t.end;
  }
  return 0;
}
