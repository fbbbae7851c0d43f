// The bridge between safetensors bytes and at::Tensor.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "smoe/io/safetensors.h"

namespace smoe {

// The LibTorch dtype of a safetensors dtype; InputError naming `where` for dtypes
// LibTorch 1.13 cannot hold (FP8).
at::ScalarType to_scalar_type(Dtype dtype, const std::string& where);
Dtype to_dtype(at::ScalarType type);

// A tensor over the bytes of `info` inside `file`'s mapping. Zero-copy (the tensor
// keeps the mapping alive and must not be written to) when `dtype` is the stored
// dtype and the bytes are aligned; otherwise a converted copy.
at::Tensor tensor_from_file(const std::shared_ptr<const SafetensorsFile>& file, const TensorInfo& info,
                            at::ScalarType dtype);

// Writes named CPU tensors to a safetensors file (temporary name, then rename).
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace smoe
