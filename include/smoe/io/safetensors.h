// safetensors files: header parsing and validation, read-only mapping, and a
// streaming writer. Free of LibTorch so that the parser can be fuzzed alone;
// model/checkpoint.h turns the mapped bytes into tensors.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "value"}}, then the data buffer; offsets are relative
// to the start of the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace smoe {

enum class Dtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2 };

size_t dtype_size(Dtype dtype);
const char* dtype_name(Dtype dtype);
// Returns false for a name safetensors does not define.
bool parse_dtype(const std::string& name, Dtype* dtype);

struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets into the data buffer
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  uint64_t data_start = 0;           // file offset of the data buffer: 8 + header length
  std::vector<TensorInfo> tensors;   // in the order of their data
  std::map<std::string, std::string> metadata;

  // nullptr when absent.
  const TensorInfo* find(const std::string& name) const;
};

// Parses and validates the header of a whole safetensors file held in
// [bytes, bytes + size). Checks the header length, the JSON, every dtype and
// shape, that each tensor's byte range matches its dtype and shape, and that the
// ranges lie inside the file and do not overlap. Throws InputError naming `path`.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& path);

// A file mapped read-only into memory.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the pages of [offset, offset + length) from this process (madvise
  // DONTNEED); a later read faults them back in from the file.
  void release(uint64_t offset, uint64_t length) const;
  // Faults the pages of [offset, offset + length) in now (madvise POPULATE_READ,
  // or a read per page where the kernel lacks it), so that a tensor used in place
  // costs its page faults when it is loaded, not in the first batch that reads it.
  void populate(uint64_t offset, uint64_t length) const;

 private:
  // The whole pages covering [offset, offset + length) inside the mapping; false
  // when there are none.
  bool pages(uint64_t offset, uint64_t length, uint64_t* begin, uint64_t* end) const;

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// A mapped, validated safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const SafetensorsHeader& header() const { return header_; }
  // The tensor's bytes inside the mapping.
  const uint8_t* bytes(const TensorInfo& info) const { return file_.data() + header_.data_start + info.begin; }
  // Throws InputError naming the file when the tensor is absent.
  const TensorInfo& info(const std::string& name) const;
  void release_pages(const TensorInfo& info) const { file_.release(header_.data_start + info.begin, info.nbytes()); }
  void populate_pages(const TensorInfo& info) const { file_.populate(header_.data_start + info.begin, info.nbytes()); }

 private:
  MappedFile file_;
  SafetensorsHeader header_;
};

// model.safetensors.index.json: tensor name -> shard file name (in the same folder).
std::map<std::string, std::string> read_safetensors_index(const std::string& path);

struct TensorSpec {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
};

// Writes a safetensors file tensor by tensor, in the order of `specs`. `path` lies
// in an AtomicOutput's temporary (core/output.h), which makes it final; a writer
// destroyed before finish() removes its partial file.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, std::vector<TensorSpec> specs,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // The next tensor's bytes; `name` and `nbytes` must match its spec.
  void write(const std::string& name, const void* data, size_t nbytes);
  // Checks that every declared tensor was written and closes the file.
  void finish();

 private:
  std::string path_;
  std::vector<TensorSpec> specs_;
  size_t next_ = 0;
  int fd_ = -1;
  bool finished_ = false;
};

}  // namespace smoe
