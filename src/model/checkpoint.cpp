#include "smoe/model/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "smoe/core/error.h"
#include "smoe/io/fp8.h"
#include "smoe/io/mxfp4.h"
#include "smoe/io/tensor-io.h"

namespace smoe {

namespace {
bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}
}  // namespace

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  struct stat st {};
  SMOE_CHECK_INPUT(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), dir, ": not a checkpoint folder");
  config_ = read_model_config(dir + "/config.json");

  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";
  if (file_exists(index_path)) {
    std::map<std::string, std::string> index = read_safetensors_index(index_path);
    std::map<std::string, std::shared_ptr<const SafetensorsFile>> opened;
    for (const auto& [name, shard] : index) {
      auto it = opened.find(shard);
      if (it == opened.end()) {
        const std::string shard_path = dir + "/" + shard;
        SMOE_CHECK_INPUT(file_exists(shard_path), index_path, ": shard '", shard, "' (holding '", name,
                         "') is missing from ", dir);
        auto file = std::make_shared<const SafetensorsFile>(shard_path);
        shards_.push_back(file);
        it = opened.emplace(shard, file).first;
      }
      const TensorInfo* info = it->second->header().find(name);
      SMOE_CHECK_INPUT(info != nullptr, index_path, ": tensor '", name, "' is listed in shard '", shard,
                       "', which does not hold it");
      where_[name] = {it->second, info};
    }
  } else {
    SMOE_CHECK_INPUT(file_exists(single_path), dir, ": holds neither model.safetensors nor model.safetensors.index.json");
    auto file = std::make_shared<const SafetensorsFile>(single_path);
    shards_.push_back(file);
    for (const auto& t : file->header().tensors) where_[t.name] = {file, &t};
  }
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& kv : where_) names.push_back(kv.first);
  return names;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  SMOE_CHECK_INPUT(it != where_.end(), dir_, ": checkpoint has no tensor '", name, "' (needed by a ",
                   config_.model_type, " model)");
  return *it->second.info;
}

const uint8_t* Checkpoint::bytes(const std::string& name) const {
  const TensorInfo& i = info(name);
  return where_.at(name).file->bytes(i);
}

at::Tensor dequantize_fp8(const at::Tensor& codes, const at::Tensor& scales, int64_t block_rows, int64_t block_cols) {
  static const at::Tensor table = [] {
    at::Tensor t = at::empty({256}, at::kFloat);
    for (int b = 0; b < 256; ++b) t[b] = fp8_e4m3_to_float(static_cast<uint8_t>(b));
    return t;
  }();
  const int64_t rows = codes.size(0), cols = codes.size(1);
  const at::Tensor values =
      table.to(codes.device()).index_select(0, codes.reshape({-1}).to(at::kInt)).view({rows, cols});
  const at::Tensor s = scales.repeat_interleave(block_rows, 0).narrow(0, 0, rows).repeat_interleave(block_cols, 1);
  return values * s.narrow(1, 0, cols);
}

at::Tensor Checkpoint::load(const std::string& name, at::ScalarType dtype, const std::vector<int64_t>& shape,
                            c10::Device device) const {
  const TensorInfo& i = info(name);
  const Location& loc = where_.at(name);
  if (!shape.empty())
    SMOE_CHECK_INPUT(i.shape == shape, loc.file->path(), ": tensor '", name, "' has shape ", shape_text(i.shape),
                     ", the config (", config_.path, ") implies ", shape_text(shape));
  if (i.dtype == Dtype::F8_E4M3) return load_fp8(name, dtype, device);
  return tensor_from_file(loc.file, i, dtype);
}

at::Tensor Checkpoint::load_fp8(const std::string& name, at::ScalarType dtype, c10::Device device) const {
  const TensorInfo& i = info(name);
  const std::string& path = where_.at(name).file->path();
  SMOE_CHECK_INPUT(i.shape.size() == 2, path, ": FP8 tensor '", name, "' must be 2-D to carry block scales, found shape ",
                   shape_text(i.shape));
  const std::string scale_name = name + "_scale_inv";
  SMOE_CHECK_INPUT(has(scale_name), path, ": FP8 tensor '", name, "' has no block scales '", scale_name,
                   "' in the checkpoint ", dir_);
  const TensorInfo& si = info(scale_name);
  const std::string& scale_path = where_.at(scale_name).file->path();
  const int64_t rows = i.shape[0], cols = i.shape[1];
  const int64_t br = config_.fp8_block_rows, bc = config_.fp8_block_cols;
  const std::vector<int64_t> scale_shape = {(rows + br - 1) / br, (cols + bc - 1) / bc};
  SMOE_CHECK_INPUT(si.dtype == Dtype::F32, scale_path, ": block scales '", scale_name, "' must be F32, found ",
                   dtype_name(si.dtype));
  SMOE_CHECK_INPUT(si.shape == scale_shape, scale_path, ": block scales '", scale_name, "' have shape ",
                   shape_text(si.shape), "; ", shape_text(i.shape), " in blocks of ", br, "x", bc, " needs ",
                   shape_text(scale_shape));
  at::Tensor scale = at::empty(scale_shape, at::kFloat);
  std::memcpy(scale.data_ptr<float>(), bytes(scale_name), si.nbytes());  // the mapped bytes may be unaligned
  at::Tensor out;
  int64_t nan = -1;
  if (device.is_cpu()) {
    out = at::empty({rows, cols}, at::kFloat);
    nan = dequantize_fp8_blocks(bytes(name), rows, cols, scale.data_ptr<float>(), br, bc, out.data_ptr<float>());
  } else {
    const at::Tensor codes =
        at::from_blob(const_cast<uint8_t*>(bytes(name)), {rows, cols}, at::kByte).to(device);
    out = dequantize_fp8(codes, scale.to(device), br, bc);
    const at::Tensor nans = codes.bitwise_and(0x7F).eq(0x7F).reshape({-1}).nonzero();
    if (nans.size(0) > 0) nan = nans[0][0].item<int64_t>();
  }
  SMOE_CHECK_INPUT(nan < 0, path, ": FP8 tensor '", name, "' holds a NaN at [", nan / std::max<int64_t>(cols, 1), ", ",
                   nan % std::max<int64_t>(cols, 1), "]");
  // The decoded copy is all that is used from here on: hand the FP8 pages back now
  // rather than when the layer is released (they are read again if ever needed).
  where_.at(name).file->release_pages(i);
  return dtype == at::kFloat ? out : out.to(dtype);
}

at::Tensor Checkpoint::load_mxfp4(const std::string& prefix, int64_t count, int64_t index, int64_t rows,
                                  int64_t cols) const {
  const int64_t groups = cols / kMxfp4Group;
  SMOE_ASSERT(cols % kMxfp4Group == 0 && index >= 0 && index < count, "load_mxfp4: bad request for ", prefix);
  const std::string blocks = prefix + "_blocks", scales = prefix + "_scales";
  for (const auto& [name, shape] : {std::pair{blocks, std::vector<int64_t>{count, rows, groups, 16}},
                                    std::pair{scales, std::vector<int64_t>{count, rows, groups}}}) {
    const TensorInfo& i = info(name);
    const std::string& path = where_.at(name).file->path();
    SMOE_CHECK_INPUT(i.dtype == Dtype::U8, path, ": MXFP4 tensor '", name, "' must be U8, found ", dtype_name(i.dtype));
    SMOE_CHECK_INPUT(i.shape == shape, path, ": MXFP4 tensor '", name, "' has shape ", shape_text(i.shape),
                     ", the config (", config_.path, ") implies ", shape_text(shape));
  }
  at::Tensor out = at::empty({rows, cols}, at::kFloat);
  const uint8_t* b = bytes(blocks) + index * rows * groups * 16;
  const uint8_t* s = bytes(scales) + index * rows * groups;
  // E8M0 has no infinity; 0xFF is its NaN.
  const uint8_t* nan = std::find(s, s + rows * groups, uint8_t{0xFF});
  SMOE_CHECK_INPUT(nan == s + rows * groups, where_.at(scales).file->path(), ": MXFP4 scales '", scales,
                   "' hold the NaN byte 0xFF at [", index, ", ", (nan - s) / groups, ", ", (nan - s) % groups, "]");
  float* o = out.data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, 4096 / groups), [&](int64_t r0, int64_t r1) {
    dequantize_mxfp4(b + r0 * groups * 16, s + r0 * groups, r1 - r0, groups, o + r0 * cols);
  });
  return out;
}

void Checkpoint::populate_pages(const std::string& name) const { where_.at(name).file->populate_pages(info(name)); }

void Checkpoint::release_pages(const std::string& prefix) const {
  for (auto it = where_.lower_bound(prefix); it != where_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
       ++it)
    it->second.file->release_pages(*it->second.info);
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& f : shards_)
    for (const auto& t : f->header().tensors) n += t.nbytes();
  return n;
}

}  // namespace smoe
