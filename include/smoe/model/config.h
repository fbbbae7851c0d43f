// Model configuration, read from a Hugging Face config.json.
//
// One ModelConfig describes every supported family; the family decides the
// tensor names on disk (FamilyLayout) and a few semantics (q/k norm, shared
// expert, router normalisation). Torch-free, so it can be fuzzed with the
// safetensors parser.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace smoe {

enum class Family { Mixtral, Olmoe, Qwen2Moe, Qwen3Moe };

// Where attention normalises q and k before RoPE.
enum class QkNorm {
  None,
  Projection,  // OLMoE: RMSNorm over the whole q (k) projection
  PerHead,     // Qwen3: RMSNorm over each head's head_dim
};

enum class RouterScore { Softmax, Sigmoid };

struct RouterConfig {
  int64_t top_k = 0;
  RouterScore score = RouterScore::Softmax;
  bool norm_topk_prob = false;  // renormalise the k chosen weights to sum to one
  // Group-limited routing: experts fall into n_group groups; tokens choose among
  // the topk_group best groups only. 1/1 switches it off.
  int64_t n_group = 1;
  int64_t topk_group = 1;
  double routed_scaling_factor = 1.0;
  bool score_correction_bias = false;  // a per-expert bias added for selection only
};

// Tensor names of a family's decoder layer, relative to "model.layers.N.".
struct FamilyLayout {
  const char* moe;        // the MoE block: "block_sparse_moe." or "mlp."
  const char* gate_proj;  // an expert's projections
  const char* up_proj;
  const char* down_proj;
};

struct ModelConfig {
  std::string path;  // the config.json this came from
  std::string model_type;
  Family family = Family::Mixtral;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;       // dense MLP layers
  int64_t moe_intermediate_size = 0;   // each routed expert
  int64_t shared_expert_intermediate_size = 0;  // 0: no shared expert
  bool shared_expert_gate = false;     // Qwen2-MoE: sigmoid(shared_expert_gate(x)) scales it

  bool attention_bias = false;  // q/k/v projections carry a bias
  QkNorm qk_norm = QkNorm::None;
  double clip_qkv = 0.0;        // 0: no clipping (OLMoE option)
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t sliding_window = 0;   // 0: full causal attention
  bool tie_word_embeddings = false;

  RouterConfig router;
  // Routed experts per layer; 0 for a dense layer. Pruned checkpoints may keep
  // different counts per layer (config key "smoe_layer_experts").
  std::vector<int64_t> layer_experts;

  bool is_moe(int64_t layer) const { return layer_experts.at(static_cast<size_t>(layer)) > 0; }
  int64_t num_moe_layers() const;
  int64_t max_experts() const;
  FamilyLayout layout() const;
};

const char* family_name(Family family);

// Parses and validates a parsed config.json; InputError naming `path` and the key.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& path);
// Reads DIR/config.json or a config.json path.
ModelConfig read_model_config(const std::string& path);

}  // namespace smoe
