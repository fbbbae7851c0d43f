// Megatron-LM's indexed dataset (MMapIndexedDataset): PREFIX.bin holds every
// sequence's token ids back to back; PREFIX.idx holds
//   "MMIDIDX\0\0", version u64 = 1, dtype code u8 (8 uint16, 4 int32),
//   sequence count N u64, document count N+1 u64,
//   lengths i32[N], byte pointers into .bin i64[N], document indices i64[N+1] (0..N),
// all little-endian; one document per sequence, as Megatron's preprocess_data.py writes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smoe {

// Megatron's choice: uint16 below 65,500 ids, else int32.
enum class IndexedDtype : uint8_t { UInt16 = 8, Int32 = 4 };
IndexedDtype indexed_dtype_for(int64_t vocab_size);
size_t indexed_dtype_bytes(IndexedDtype d);

constexpr size_t kIndexedHeaderBytes = 9 + 8 + 1 + 8 + 8;
// The .idx header for `sequences` sequences.
std::string indexed_header(IndexedDtype dtype, uint64_t sequences);
// Byte offsets in the .idx of sequence i's length, pointer and document index.
uint64_t indexed_length_at(uint64_t sequences, uint64_t i);
uint64_t indexed_pointer_at(uint64_t sequences, uint64_t i);
uint64_t indexed_document_at(uint64_t sequences, uint64_t i);
uint64_t indexed_idx_bytes(uint64_t sequences);

// "PREFIX" for PREFIX, PREFIX.bin or PREFIX.idx when both files exist, and
// "DIR/tokens" for a folder DIR holding tokens.bin and tokens.idx; "" otherwise.
std::string indexed_dataset_prefix(const std::string& path);

// Reads an indexed dataset through mmap; every fault (magic, version, dtype,
// sizes, pointers beyond .bin) is an InputError naming the file.
class IndexedDataset {
 public:
  explicit IndexedDataset(const std::string& prefix);
  ~IndexedDataset();
  IndexedDataset(const IndexedDataset&) = delete;
  IndexedDataset& operator=(const IndexedDataset&) = delete;
  uint64_t size() const { return count_; }
  // Token ids of sequence i, and their count.
  std::vector<int64_t> sequence(uint64_t i) const;
  uint64_t length(uint64_t i) const;
  const std::string& prefix() const { return prefix_; }

 private:
  void open();   // maps both files and checks the index
  void unmap();

  std::string prefix_;
  IndexedDtype dtype_ = IndexedDtype::Int32;
  uint64_t count_ = 0;
  const unsigned char* idx_ = nullptr;
  size_t idx_bytes_ = 0;
  const unsigned char* bin_ = nullptr;
  size_t bin_bytes_ = 0;
};

}  // namespace smoe
