// Model configuration, read from a Hugging Face config.json.
//
// One ModelConfig describes every supported family; the family decides the
// tensor names on disk (model/tensor-names.h) and a few semantics (q/k norm, shared
// expert, router normalisation, multi-head latent attention). Torch-free, so it
// can be fuzzed with the safetensors parser.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace smoe {

// DeepseekV3 also covers Kimi-K2 (model_type kimi_k2), which uses its layout.
enum class Family { Mixtral, Olmoe, Qwen2Moe, Qwen3Moe, DeepseekV2, DeepseekV3, Glm4Moe, MinimaxM2, Ernie45Moe, GptOss };

// Where attention normalises q and k before RoPE.
enum class QkNorm {
  None,
  Projection,  // OLMoE: RMSNorm over the whole q (k) projection
  PerHead,     // Qwen3, GLM-4.5: RMSNorm over each head's head_dim
};

// How the two halves of a rotary pair are laid out in a head.
enum class RopeLayout {
  Halves,       // NeoX: element i pairs with i + rotary_dim / 2
  Interleaved,  // GPT-J (DeepSeek's MLA, ERNIE-4.5): elements 2i and 2i + 1 pair
};

// How the k chosen weights are renormalised to sum to one (norm_topk_prob).
enum class Renormalise {
  Plain,       // w / sum (Mixtral, Qwen, OLMoE, MiniMax-M2)
  PlusTiny,    // w / (sum + 1e-20) (DeepSeek, GLM-4.5)
  ClampMin,    // w / max(sum, norm_min) (ERNIE-4.5)
};

enum class RouterScore {
  Softmax,        // softmax over all experts, then top-k
  Sigmoid,        // sigmoid of each logit, then top-k
  SoftmaxOfTopK,  // gpt-oss: top-k of the logits, then a softmax over those k
};
// How group-limited routing scores a group: DeepSeek-V2 takes the group's best
// expert, DeepSeek-V3 (noaux_tc) the sum of its best two.
enum class GroupScore { Max, TopTwoSum };

struct RouterConfig {
  int64_t top_k = 0;
  RouterScore score = RouterScore::Softmax;
  bool norm_topk_prob = false;  // renormalise the k chosen weights to sum to one
  Renormalise renormalise = Renormalise::Plain;
  double norm_min = 1e-12;  // ClampMin's floor (ERNIE's moe_norm_min)
  // Group-limited routing: experts fall into n_group groups; tokens choose among
  // the topk_group best groups only. 1/1 switches it off.
  int64_t n_group = 1;
  int64_t topk_group = 1;
  GroupScore group_score = GroupScore::Max;
  double routed_scaling_factor = 1.0;
  // DeepSeek-V2: routed_scaling_factor applies only where the weights are not
  // renormalised; V3 renormalises, then scales.
  bool scale_only_unnormalised = false;
  bool score_correction_bias = false;  // a per-expert bias added for selection only
  bool logit_bias = false;             // the router is a linear layer with a bias (gpt-oss)
  // Logits from float32 operands whatever the compute dtype (DeepSeek, GLM, ERNIE).
  bool float32_logits = false;
  // Combine weights kept in float32, so that the routed sum accumulates in float32
  // (DeepSeek, GLM); otherwise they are cast to the compute dtype.
  bool float32_weights = false;
};

// Multi-head latent attention (DeepSeek-V2/V3): q through an optional low-rank
// projection, k and v from one compressed latent, and a rotary part of each head
// apart from the rest (shared by all heads for k).
struct MlaConfig {
  int64_t q_lora_rank = 0;   // 0: one full q_proj
  int64_t kv_lora_rank = 0;  // 0: not MLA
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  bool enabled() const { return kv_lora_rank > 0; }
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

// rope_scaling of type "yarn": frequencies blended between extrapolation and
// interpolation by a linear ramp over the correction range.
struct YarnScaling {
  bool enabled = false;
  double factor = 1.0;
  double original_max_position = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double attention_factor = 1.0;  // scales cos and sin
  bool truncate = true;           // round the correction range to whole dimensions (gpt-oss: false)
};

// The most decoder layers a config may declare (published models have ~100).
inline constexpr int64_t kMaxLayers = 65536;

struct ModelConfig {
  std::string path;  // the config.json this came from
  std::string model_type;
  Family family = Family::Mixtral;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;                // for MLA qk_rope_head_dim (the rotary width), as HF sets it
  // The rotated part of each head: its first rotary_dim elements (GLM-4.5's
  // partial_rotary_factor, MiniMax-M2's rotary_dim); 0: the whole head.
  int64_t rotary_dim = 0;
  RopeLayout rope_layout = RopeLayout::Halves;
  bool rope_float32 = false;  // q and k rotate in float32 with float32 tables (ERNIE-4.5)
  int64_t intermediate_size = 0;       // dense MLP layers
  int64_t moe_intermediate_size = 0;   // each routed expert
  int64_t shared_expert_intermediate_size = 0;  // 0: no shared expert
  bool shared_expert_gate = false;     // Qwen2-MoE: sigmoid(shared_expert_gate(x)) scales it

  bool attention_bias = false;  // q/k/v projections carry a bias
  bool attention_out_bias = false;  // o_proj carries a bias (gpt-oss)
  bool attention_sinks = false;     // a learned logit per head joins each softmax row, then is dropped (gpt-oss)
  bool norm_weight_float32 = false; // RMSNorm multiplies by its weight in float32, then casts (gpt-oss)
  // Experts' activation: 0 for silu(gate) * up; otherwise gpt-oss's clamped SwiGLU,
  // (clamp(up, -l, l) + 1) * g * sigmoid(1.702 g) with g = min(gate, l).
  double swiglu_limit = 0;
  bool mxfp4 = false;  // experts stacked per layer in MXFP4 (quantization_config mxfp4)
  QkNorm qk_norm = QkNorm::None;
  double clip_qkv = 0.0;        // 0: no clipping (OLMoE option)
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  YarnScaling yarn;
  MlaConfig mla;
  double attention_scale = 0;   // softmax scale of q.k (head_dim^-1/2, with YaRN's mscale^2 for MLA)
  // FP8 checkpoints (quantization_config fp8/e4m3): rows and columns of a
  // weight_scale_inv block. 128 x 128 unless the config says otherwise.
  int64_t fp8_block_rows = 128;
  int64_t fp8_block_cols = 128;
  bool fp8 = false;                     // quantization_config names fp8
  int64_t num_nextn_predict_layers = 0; // DeepSeek-V3's multi-token-prediction layers, stored after the others; skipped
  int64_t sliding_window = 0;   // 0: full causal attention
  // Per layer, whether it attends within sliding_window (gpt-oss's layer_types);
  // empty: every layer does where sliding_window > 0.
  std::vector<bool> sliding_layers;
  bool tie_word_embeddings = false;

  RouterConfig router;
  // Routed experts per layer; 0 for a dense layer. Pruned checkpoints may keep
  // different counts per layer (config key "smoe_layer_experts").
  std::vector<int64_t> layer_experts;

  bool is_moe(int64_t layer) const { return layer_experts.at(static_cast<size_t>(layer)) > 0; }
  int64_t num_moe_layers() const;
  int64_t max_experts() const;
  const char* experts_key() const;  // the config.json key of the routed-expert count
  const char* top_k_key() const;    // the config.json key of k
  int64_t rope_dim() const { return rotary_dim > 0 ? rotary_dim : head_dim; }
  // The attention window of a layer; 0: full causal attention.
  int64_t window(int64_t layer) const {
    return sliding_layers.empty() || sliding_layers.at(static_cast<size_t>(layer)) ? sliding_window : 0;
  }
};

const char* family_name(Family family);

// Parses and validates a parsed config.json; InputError naming `path` and the key.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& path);
// Reads DIR/config.json or a config.json path.
ModelConfig read_model_config(const std::string& path);

}  // namespace smoe
