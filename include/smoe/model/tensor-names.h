// Every tensor name of a family's checkpoint (the Hugging Face layout), in one
// place (llama.cpp's tn()): the decoder's loader, the pruner and the trainer
// all ask it. Torch-free.
#pragma once

#include <cstdint>
#include <string>

#include "smoe/model/config.h"

namespace smoe {

// An expert's (or a dense MLP's) projections.
enum class Proj { Gate, Up, Down };

class TensorNames {
 public:
  explicit TensorNames(Family family) : family_(family) {}

  static std::string embed() { return "model.embed_tokens.weight"; }
  static std::string final_norm() { return "model.norm.weight"; }
  static std::string lm_head() { return "lm_head.weight"; }
  // "model.layers.L.": the prefix of every tensor of decoder layer L.
  static std::string layer(int64_t l) { return "model.layers." + std::to_string(l) + "."; }
  // The layer a tensor belongs to ("model.layers.12.x" -> 12), -1 for none;
  // InputError for a layer number that is not one.
  static int64_t layer_of(const std::string& name);
  // A tensor of layer L by its name inside the layer: "input_layernorm.weight".
  static std::string in_layer(int64_t l, const std::string& rest) { return layer(l) + rest; }
  // Attention tensors: "q_proj.weight" -> "model.layers.L.self_attn.q_proj.weight".
  static std::string attention(int64_t l, const std::string& rest) { return layer(l) + "self_attn." + rest; }

  // The MoE block's prefix: "model.layers.L.block_sparse_moe." (Mixtral) or "...mlp.".
  std::string moe(int64_t l) const;
  // "...gate.weight" ("...router.weight" for gpt-oss), and gpt-oss's router bias.
  std::string router(int64_t l) const { return moe(l) + (family_ == Family::GptOss ? "router.weight" : "gate.weight"); }
  std::string router_logit_bias(int64_t l) const { return moe(l) + "router.bias"; }
  // gpt-oss stacks a layer's experts: "...experts.gate_up_proj" (+ "_blocks",
  // "_scales" in MXFP4, "_bias") and "...experts.down_proj".
  std::string stacked(int64_t l, Proj p) const { return experts(l) + (p == Proj::Down ? "down_proj" : "gate_up_proj"); }
  // The selection-only bias: "...gate.e_score_correction_bias" (DeepSeek, GLM),
  // on the block (MiniMax-M2), or "...moe_statics.e_score_correction_bias" (ERNIE, [1, E]).
  std::string router_bias(int64_t l) const;
  // "...experts.": the prefix of every routed expert of layer L.
  std::string experts(int64_t l) const { return moe(l) + "experts."; }
  // "...experts.E.": the prefix of expert E's tensors.
  std::string expert(int64_t l, int64_t e) const { return experts(l) + std::to_string(e) + "."; }
  std::string expert(int64_t l, int64_t e, Proj p) const { return expert(l, e) + weight(p); }
  // The shared expert's prefix inside the MoE block, and its gate.
  std::string shared_expert(int64_t l) const;
  std::string shared_expert_gate(int64_t l) const { return moe(l) + "shared_expert_gate.weight"; }
  // A dense (not MoE) layer's MLP: "model.layers.L.mlp."; its projections are always gate/up/down_proj.
  static std::string dense_mlp(int64_t l) { return layer(l) + "mlp."; }

  // The family's name of a projection's weight inside an expert: "w1.weight" or "gate_proj.weight".
  std::string weight(Proj p) const;
  static std::string dense_weight(Proj p);

 private:
  Family family_;
};

}  // namespace smoe
