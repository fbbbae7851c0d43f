#include "smoe/io/tensor-io.h"

#include <ATen/ATen.h>

#include <cstdint>

#include "smoe/core/error.h"

namespace smoe {

at::ScalarType to_scalar_type(Dtype dtype, const std::string& where) {
  switch (dtype) {
    case Dtype::F64: return at::kDouble;
    case Dtype::F32: return at::kFloat;
    case Dtype::F16: return at::kHalf;
    case Dtype::BF16: return at::kBFloat16;
    case Dtype::I64: return at::kLong;
    case Dtype::I32: return at::kInt;
    case Dtype::I16: return at::kShort;
    case Dtype::I8: return at::kChar;
    case Dtype::U8: return at::kByte;
    case Dtype::BOOL: return at::kBool;
    case Dtype::F8_E4M3:
    case Dtype::F8_E5M2: break;
  }
  throw InputError(str(where, ": dtype ", dtype_name(dtype), " cannot be loaded as a plain tensor"));
}

Dtype to_dtype(at::ScalarType type) {
  switch (type) {
    case at::kDouble: return Dtype::F64;
    case at::kFloat: return Dtype::F32;
    case at::kHalf: return Dtype::F16;
    case at::kBFloat16: return Dtype::BF16;
    case at::kLong: return Dtype::I64;
    case at::kInt: return Dtype::I32;
    case at::kShort: return Dtype::I16;
    case at::kChar: return Dtype::I8;
    case at::kByte: return Dtype::U8;
    case at::kBool: return Dtype::BOOL;
    default: break;
  }
  SMOE_ASSERT(false, "no safetensors dtype for ", c10::toString(type));
}

at::Tensor tensor_from_file(const std::shared_ptr<const SafetensorsFile>& file, const TensorInfo& info,
                            at::ScalarType dtype) {
  const at::ScalarType stored = to_scalar_type(info.dtype, str(file->path(), ": tensor '", info.name, "'"));
  void* bytes = const_cast<uint8_t*>(file->bytes(info));
  if (info.numel() == 0) return at::empty(info.shape, at::TensorOptions().dtype(dtype));
  const size_t elem = dtype_size(info.dtype);
  const bool aligned = reinterpret_cast<uintptr_t>(bytes) % elem == 0;
  if (aligned) {
    // Keep the mapping alive as long as the tensor lives.
    auto keep = file;
    at::Tensor view = at::from_blob(bytes, info.shape, [keep](void*) {}, at::TensorOptions().dtype(stored));
    return stored == dtype ? view : view.to(dtype);
  }
  at::Tensor copy = at::empty(info.shape, at::TensorOptions().dtype(stored));
  std::memcpy(copy.data_ptr(), bytes, info.nbytes());
  return stored == dtype ? copy : copy.to(dtype);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  std::vector<at::Tensor> contiguous;
  for (const auto& [name, t] : tensors) {
    SMOE_ASSERT(t.device().is_cpu(), "tensor '", name, "' must be on the CPU to be saved");
    contiguous.push_back(t.contiguous());
    specs.push_back({name, to_dtype(t.scalar_type()), t.sizes().vec()});
  }
  SafetensorsWriter writer(path, specs, metadata);
  for (size_t i = 0; i < specs.size(); ++i)
    writer.write(specs[i].name, contiguous[i].data_ptr(), contiguous[i].nbytes());
  writer.finish();
}

}  // namespace smoe
