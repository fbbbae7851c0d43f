#include "smoe/io/indexed-dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "smoe/core/error.h"
#include "smoe/core/file.h"

namespace smoe {

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};

template <class T>
T load_le(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // x86-64 and aarch64 are little-endian
  return v;
}

const unsigned char* map_file(const std::string& path, size_t* bytes) {
  check_input_file(path, "indexed dataset");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SMOE_CHECK_INPUT(fd >= 0, path, ": cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw InputError(str(path, ": cannot stat: ", errno_text()));
  }
  *bytes = static_cast<size_t>(st.st_size);
  if (*bytes == 0) {
    ::close(fd);
    return nullptr;
  }
  void* p = ::mmap(nullptr, *bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  SMOE_CHECK_INPUT(p != MAP_FAILED, path, ": cannot map: ", errno_text());
  return static_cast<const unsigned char*>(p);
}

}  // namespace

IndexedDtype indexed_dtype_for(int64_t vocab_size) {
  return vocab_size < 65500 ? IndexedDtype::UInt16 : IndexedDtype::Int32;
}

size_t indexed_dtype_bytes(IndexedDtype d) { return d == IndexedDtype::UInt16 ? 2 : 4; }

std::string indexed_header(IndexedDtype dtype, uint64_t sequences) {
  std::string h(kMagic, 9);
  auto put = [&h](const void* p, size_t n) { h.append(static_cast<const char*>(p), n); };
  const uint64_t version = 1, documents = sequences + 1;
  const auto code = static_cast<uint8_t>(dtype);
  put(&version, 8);
  put(&code, 1);
  put(&sequences, 8);
  put(&documents, 8);
  return h;
}

uint64_t indexed_length_at(uint64_t, uint64_t i) { return kIndexedHeaderBytes + 4 * i; }
uint64_t indexed_pointer_at(uint64_t n, uint64_t i) { return kIndexedHeaderBytes + 4 * n + 8 * i; }
uint64_t indexed_document_at(uint64_t n, uint64_t i) { return kIndexedHeaderBytes + 12 * n + 8 * i; }
uint64_t indexed_idx_bytes(uint64_t n) { return kIndexedHeaderBytes + 12 * n + 8 * (n + 1); }

std::string indexed_dataset_prefix(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string inside = path + "/tokens";
    return fs::exists(inside + ".bin", ec) && fs::exists(inside + ".idx", ec) ? inside : "";
  }
  std::string prefix = path;
  for (const char* ext : {".bin", ".idx"})
    if (prefix.size() > 4 && prefix.compare(prefix.size() - 4, 4, ext) == 0) prefix.resize(prefix.size() - 4);
  return fs::exists(prefix + ".bin", ec) && fs::exists(prefix + ".idx", ec) ? prefix : "";
}

IndexedDataset::IndexedDataset(const std::string& prefix) : prefix_(prefix) {
  try {
    open();
  } catch (...) {
    unmap();
    throw;
  }
}

void IndexedDataset::unmap() {
  if (idx_) ::munmap(const_cast<unsigned char*>(idx_), idx_bytes_);
  if (bin_) ::munmap(const_cast<unsigned char*>(bin_), bin_bytes_);
  idx_ = bin_ = nullptr;
}

void IndexedDataset::open() {
  const std::string idx = prefix_ + ".idx", bin = prefix_ + ".bin";
  idx_ = map_file(idx, &idx_bytes_);
  bin_ = map_file(bin, &bin_bytes_);
  SMOE_CHECK_INPUT(idx_bytes_ >= kIndexedHeaderBytes && std::memcmp(idx_, kMagic, 9) == 0, idx,
                   ": not a Megatron indexed dataset index (no MMIDIDX header)");
  SMOE_CHECK_INPUT(load_le<uint64_t>(idx_ + 9) == 1, idx, ": index version ", load_le<uint64_t>(idx_ + 9),
                   " is not 1");
  const uint8_t code = idx_[17];
  SMOE_CHECK_INPUT(code == 8 || code == 4, idx, ": token dtype code ", int(code),
                   " is neither uint16 (8) nor int32 (4)");
  dtype_ = static_cast<IndexedDtype>(code);
  count_ = load_le<uint64_t>(idx_ + 18);
  const uint64_t documents = load_le<uint64_t>(idx_ + 26);
  SMOE_CHECK_INPUT(count_ < (uint64_t{1} << 40) && documents < (uint64_t{1} << 40) &&
                       idx_bytes_ >= kIndexedHeaderBytes + 12 * count_ + 8 * documents,
                   idx, ": ", count_, " sequences and ", documents, " documents do not fit in ", idx_bytes_, " bytes");
  const size_t width = indexed_dtype_bytes(dtype_);
  for (uint64_t i = 0; i < count_; ++i) {
    const auto length = load_le<int32_t>(idx_ + indexed_length_at(count_, i));
    const auto pointer = load_le<int64_t>(idx_ + indexed_pointer_at(count_, i));
    SMOE_CHECK_INPUT(length >= 0 && pointer >= 0 &&
                         static_cast<uint64_t>(pointer) + static_cast<uint64_t>(length) * width <= bin_bytes_,
                     idx, ": sequence ", i, " (", length, " tokens at byte ", pointer, ") lies beyond ", bin, " (",
                     bin_bytes_, " bytes)");
  }
}

IndexedDataset::~IndexedDataset() { unmap(); }

uint64_t IndexedDataset::length(uint64_t i) const {
  SMOE_ASSERT(i < count_, "sequence ", i, " of ", count_);
  return static_cast<uint64_t>(load_le<int32_t>(idx_ + indexed_length_at(count_, i)));
}

std::vector<int64_t> IndexedDataset::sequence(uint64_t i) const {
  SMOE_ASSERT(i < count_, "sequence ", i, " of ", count_);
  const auto length = static_cast<size_t>(load_le<int32_t>(idx_ + indexed_length_at(count_, i)));
  const auto pointer = static_cast<size_t>(load_le<int64_t>(idx_ + indexed_pointer_at(count_, i)));
  std::vector<int64_t> ids(length);
  for (size_t k = 0; k < length; ++k)
    ids[k] = dtype_ == IndexedDtype::UInt16 ? load_le<uint16_t>(bin_ + pointer + 2 * k)
                                            : load_le<int32_t>(bin_ + pointer + 4 * k);
  return ids;
}

}  // namespace smoe
