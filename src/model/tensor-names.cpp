#include "smoe/model/tensor-names.h"

#include "smoe/core/error.h"
#include "smoe/core/numbers.h"

namespace smoe {

int64_t TensorNames::layer_of(const std::string& name) {
  const std::string p = "model.layers.";
  if (name.compare(0, p.size(), p) != 0) return -1;
  const std::string rest = name.substr(p.size());
  return parse_int(rest.substr(0, rest.find('.')), "tensor '" + name + "': layer number");
}

std::string TensorNames::moe(int64_t l) const {
  return layer(l) + (family_ == Family::Mixtral ? "block_sparse_moe." : "mlp.");
}

std::string TensorNames::shared_expert(int64_t l) const {
  const bool deepseek = family_ == Family::DeepseekV2 || family_ == Family::DeepseekV3;
  return moe(l) + (deepseek ? "shared_experts." : "shared_expert.");
}

std::string TensorNames::weight(Proj p) const {
  if (family_ == Family::Mixtral) return p == Proj::Gate ? "w1.weight" : p == Proj::Up ? "w3.weight" : "w2.weight";
  return dense_weight(p);
}

std::string TensorNames::dense_weight(Proj p) {
  return p == Proj::Gate ? "gate_proj.weight" : p == Proj::Up ? "up_proj.weight" : "down_proj.weight";
}

}  // namespace smoe
