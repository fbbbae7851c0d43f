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

namespace {

bool mixtral_layout(Family f) { return f == Family::Mixtral || f == Family::MinimaxM2; }

}  // namespace

std::string TensorNames::moe(int64_t l) const {
  return layer(l) + (mixtral_layout(family_) ? "block_sparse_moe." : "mlp.");
}

std::string TensorNames::router_bias(int64_t l) const {
  switch (family_) {
    case Family::MinimaxM2: return moe(l) + "e_score_correction_bias";
    case Family::Ernie45Moe: return moe(l) + "moe_statics.e_score_correction_bias";
    default: return moe(l) + "gate.e_score_correction_bias";
  }
}

std::string TensorNames::shared_expert(int64_t l) const {
  return moe(l) + (family_ == Family::Qwen2Moe ? "shared_expert." : "shared_experts.");
}

std::string TensorNames::weight(Proj p) const {
  if (mixtral_layout(family_)) return p == Proj::Gate ? "w1.weight" : p == Proj::Up ? "w3.weight" : "w2.weight";
  return dense_weight(p);
}

std::string TensorNames::dense_weight(Proj p) {
  return p == Proj::Gate ? "gate_proj.weight" : p == Proj::Up ? "up_proj.weight" : "down_proj.weight";
}

}  // namespace smoe
