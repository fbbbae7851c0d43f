// A Hugging Face checkpoint folder: config.json plus model.safetensors, or shards
// listed in model.safetensors.index.json. Every shard's header is validated when
// the checkpoint is opened, before any tensor data is read.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "smoe/io/safetensors.h"
#include "smoe/model/config.h"

namespace smoe {

// FP8 E4M3 codes [rows, cols] (uint8) times their block scales [ceil(rows / block_rows),
// ceil(cols / block_cols)] (float32), as float32 on the codes' device: the same
// values as io/fp8.h's dequantize_fp8_blocks, bit for bit.
at::Tensor dequantize_fp8(const at::Tensor& codes, const at::Tensor& scales, int64_t block_rows, int64_t block_cols);

class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }

  bool has(const std::string& name) const { return where_.count(name) != 0; }
  std::vector<std::string> tensor_names() const;
  // Header entry of a tensor; InputError naming the checkpoint when absent.
  const TensorInfo& info(const std::string& name) const;

  // The tensor's bytes as stored, inside the mapped shard.
  const uint8_t* bytes(const std::string& name) const;

  // Loads a tensor as `dtype`. With `shape` given, InputError naming the file
  // when the stored shape differs. An F8_E4M3 tensor is dequantised with its
  // `<name>_scale_inv` block scales: on the CPU straight from the mapped file
  // (io/fp8.h); for another `device`, its codes and scales are copied there and
  // decoded there (dequantize_fp8). Other tensors come back on the CPU.
  at::Tensor load(const std::string& name, at::ScalarType dtype, const std::vector<int64_t>& shape = {},
                  c10::Device device = c10::kCPU) const;

  bool is_fp8(const std::string& name) const { return info(name).dtype == Dtype::F8_E4M3; }
  // Item `index` of a stacked MXFP4 tensor (gpt-oss's experts): `<prefix>_blocks`
  // U8 [N, rows, cols / 32, 16] and `<prefix>_scales` U8 [N, rows, cols / 32],
  // decoded (io/mxfp4.h) to [rows, cols] float32. InputError naming the file, the
  // tensor and both shapes where they are not what rows and cols imply.
  at::Tensor load_mxfp4(const std::string& prefix, int64_t count, int64_t index, int64_t rows, int64_t cols) const;

  // Faults the tensor's mapped pages in now (MappedFile::populate), for a tensor
  // used in place that every batch reads whole.
  void populate_pages(const std::string& name) const;

  // Returns the mapped pages of every tensor whose name starts with `prefix` to the
  // OS (their tensors stay valid: pages are read back from the file on access).
  void release_pages(const std::string& prefix) const;

  // The first shard's safetensors metadata (a pruned checkpoint's plan provenance).
  const std::map<std::string, std::string>& metadata() const { return shards_.front()->header().metadata; }

  // Sum of all tensors' bytes on disk.
  uint64_t total_bytes() const;

 private:
  at::Tensor load_fp8(const std::string& name, at::ScalarType dtype, c10::Device device) const;

  struct Location {
    std::shared_ptr<const SafetensorsFile> file;
    const TensorInfo* info;
  };
  std::string dir_;
  ModelConfig config_;
  std::vector<std::shared_ptr<const SafetensorsFile>> shards_;
  std::map<std::string, Location> where_;
};

}  // namespace smoe
