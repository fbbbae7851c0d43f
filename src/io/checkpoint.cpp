#include "smoe/io/checkpoint.h"

#include <ATen/ATen.h>
#include <sys/stat.h>

#include <set>

#include "smoe/core/error.h"
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

at::Tensor Checkpoint::load(const std::string& name, at::ScalarType dtype, const std::vector<int64_t>& shape) const {
  const TensorInfo& i = info(name);
  const Location& loc = where_.at(name);
  if (!shape.empty())
    SMOE_CHECK_INPUT(i.shape == shape, loc.file->path(), ": tensor '", name, "' has shape ", shape_text(i.shape),
                     ", the config (", config_.path, ") implies ", shape_text(shape));
  return tensor_from_file(loc.file, i, dtype);
}

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
