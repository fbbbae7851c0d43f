#include "smoe/model/config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/io/json.h"

namespace smoe {

const char* family_name(Family family) {
  switch (family) {
    case Family::Mixtral: return "mixtral";
    case Family::Olmoe: return "olmoe";
    case Family::Qwen2Moe: return "qwen2_moe";
    case Family::Qwen3Moe: return "qwen3_moe";
    case Family::DeepseekV2: return "deepseek_v2";
    case Family::DeepseekV3: return "deepseek_v3";
    case Family::Glm4Moe: return "glm4_moe";
    case Family::MinimaxM2: return "minimax_m2";
    case Family::Ernie45Moe: return "ernie4_5_moe";
    case Family::GptOss: return "gpt_oss";
  }
  return "?";
}

const char* ModelConfig::experts_key() const {
  switch (family) {
    case Family::Mixtral:
    case Family::MinimaxM2:
    case Family::GptOss: return "num_local_experts";
    case Family::DeepseekV2:
    case Family::DeepseekV3:
    case Family::Glm4Moe: return "n_routed_experts";
    case Family::Ernie45Moe: return "moe_num_experts";
    default: return "num_experts";
  }
}

const char* ModelConfig::top_k_key() const { return family == Family::Ernie45Moe ? "moe_k" : "num_experts_per_tok"; }

int64_t ModelConfig::num_moe_layers() const {
  return std::count_if(layer_experts.begin(), layer_experts.end(), [](int64_t e) { return e > 0; });
}

int64_t ModelConfig::max_experts() const {
  return layer_experts.empty() ? 0 : *std::max_element(layer_experts.begin(), layer_experts.end());
}

namespace {

std::vector<int64_t> int_list(const nlohmann::json& j, const std::string& key, const std::string& path) {
  std::vector<int64_t> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  SMOE_CHECK_INPUT(it->is_array(), path, ": '", key, "' must be a list of integers, found ", json_quote(*it));
  for (const auto& v : *it) out.push_back(json_to_int(v, path, "'" + key + "' entry"));
  return out;
}

void check_positive(int64_t v, const char* key, const std::string& path) {
  SMOE_CHECK_INPUT(v > 0, path, ": '", key, "' must be positive, found ", v);
}

// YaRN's attention factor for scale s and coefficient m (HF yarn_get_mscale).
double yarn_mscale(double s, double m) { return s <= 1 ? 1.0 : 0.1 * m * std::log(s) + 1.0; }

// The first rotary_dim elements of each head rotate: HF's int(head_dim * factor).
void parse_partial_rotary(double factor, ModelConfig& c, const std::string& path) {
  SMOE_CHECK_INPUT(factor > 0 && factor <= 1, path, ": 'partial_rotary_factor' must lie in (0, 1], found ", factor);
  c.rotary_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * factor);
}

// rope_scaling (or transformers 5's rope_parameters): "default" or "yarn".
void parse_rope_scaling(const nlohmann::json& j, ModelConfig& c, const std::string& path) {
  const char* key = j.contains("rope_scaling") && !j["rope_scaling"].is_null() ? "rope_scaling" : "rope_parameters";
  if (!j.contains(key) || j[key].is_null()) return;
  const auto& rs = j[key];
  SMOE_CHECK_INPUT(rs.is_object(), path, ": '", key, "' must be an object or null");
  const std::string where = path + " " + key;
  if (rs.contains("rope_theta")) c.rope_theta = json_double(rs, "rope_theta", where);
  if (rs.contains("partial_rotary_factor") && !rs["partial_rotary_factor"].is_null())
    parse_partial_rotary(json_double(rs, "partial_rotary_factor", where), c, where);
  std::string type = "default";
  for (const char* name : {"type", "rope_type"})  // rope_type wins where both are given
    if (rs.contains(name) && !rs[name].is_null()) type = json_string(rs, name, where);
  if (type == "default") return;
  SMOE_CHECK_INPUT(type == "yarn", path, ": ", key, " type '", type, "' is not supported (supported: default, yarn)");
  YarnScaling& y = c.yarn;
  y.enabled = true;
  y.factor = json_double(rs, "factor", where);
  y.original_max_position = json_double(rs, "original_max_position_embeddings", where);
  y.beta_fast = json_double(rs, "beta_fast", 32.0, where);
  y.beta_slow = json_double(rs, "beta_slow", 1.0, where);
  y.truncate = json_bool(rs, "truncate", true, where);
  SMOE_CHECK_INPUT(y.factor >= 1, where, ": 'factor' must be at least 1, found ", y.factor);
  SMOE_CHECK_INPUT(y.original_max_position > 0, where, ": 'original_max_position_embeddings' must be positive");
  SMOE_CHECK_INPUT(y.beta_fast > 0 && y.beta_slow > 0, where, ": 'beta_fast' and 'beta_slow' must be positive");
  const double mscale = json_double(rs, "mscale", 0.0, where);
  const double mscale_all_dim = json_double(rs, "mscale_all_dim", 0.0, where);
  SMOE_CHECK_INPUT(mscale >= 0 && mscale_all_dim >= 0, where, ": 'mscale' and 'mscale_all_dim' must not be negative");
  if (rs.contains("attention_factor") && !rs["attention_factor"].is_null())
    y.attention_factor = json_double(rs, "attention_factor", where);
  else if (mscale != 0 && mscale_all_dim != 0)
    y.attention_factor = yarn_mscale(y.factor, mscale) / yarn_mscale(y.factor, mscale_all_dim);
  else
    y.attention_factor = yarn_mscale(y.factor, 1.0);
  SMOE_CHECK_INPUT(y.attention_factor > 0 && std::isfinite(y.attention_factor), where,
                   ": the attention factor must be a positive number, found ", y.attention_factor);
  // Multi-head latent attention also scales its softmax by mscale(mscale_all_dim)^2.
  if (c.mla.enabled() && mscale_all_dim != 0) {
    const double m = yarn_mscale(y.factor, mscale_all_dim);
    c.attention_scale *= m * m;
    SMOE_CHECK_INPUT(std::isfinite(c.attention_scale), where, ": 'mscale_all_dim' gives an infinite softmax scale");
  }
}

// DeepSeek-V2/V3 and Kimi-K2: MLA, dense first layers, shared experts, group-limited routing.
// DeepSeek-V3's FP8 weights: quantization_config (fp8, e4m3, the block size).
void parse_fp8(const nlohmann::json& j, ModelConfig& c, const std::string& path) {
  if (!j.contains("quantization_config") || j["quantization_config"].is_null()) return;
  const auto& q = j["quantization_config"];
  const std::string where = path + " quantization_config";
  SMOE_CHECK_INPUT(q.is_object(), where, ": must be an object");
  const std::string qm = json_string(q, "quant_method", where);
  SMOE_CHECK_INPUT(qm == "fp8", where, ": quant_method '", qm, "' is not supported (fp8)");
  if (q.contains("fmt")) {
    const std::string fmt = json_string(q, "fmt", where);
    SMOE_CHECK_INPUT(fmt == "e4m3" || fmt == "float8_e4m3fn", where, ": fmt '", fmt,
                     "' is not supported (e4m3, float8_e4m3fn)");
  }
  std::vector<int64_t> block = int_list(q, "weight_block_size", where);
  if (!block.empty()) {
    SMOE_CHECK_INPUT(block.size() == 2 && block[0] > 0 && block[1] > 0, where,
                     ": 'weight_block_size' must be two positive integers");
    c.fp8_block_rows = block[0];
    c.fp8_block_cols = block[1];
  }
  c.fp8 = true;
}

// Multi-head latent attention's widths (DeepSeek-V2/V3, Kimi-K2).
void parse_mla(const nlohmann::json& j, ModelConfig& c, const std::string& path) {
  MlaConfig& m = c.mla;
  m.q_lora_rank = j.contains("q_lora_rank") && !j["q_lora_rank"].is_null() ? json_int(j, "q_lora_rank", path) : 0;
  m.kv_lora_rank = json_int(j, "kv_lora_rank", path);
  m.qk_nope_head_dim = json_int(j, "qk_nope_head_dim", path);
  m.qk_rope_head_dim = json_int(j, "qk_rope_head_dim", path);
  m.v_head_dim = json_int(j, "v_head_dim", path);
  SMOE_CHECK_INPUT(m.q_lora_rank >= 0, path, ": 'q_lora_rank' must be positive or null");
  check_positive(m.kv_lora_rank, "kv_lora_rank", path);
  SMOE_CHECK_INPUT(m.qk_nope_head_dim >= 0, path, ": 'qk_nope_head_dim' must not be negative");
  check_positive(m.qk_rope_head_dim, "qk_rope_head_dim", path);
  check_positive(m.v_head_dim, "v_head_dim", path);
  SMOE_CHECK_INPUT(m.qk_rope_head_dim % 2 == 0, path, ": 'qk_rope_head_dim' must be even, found ", m.qk_rope_head_dim);
  c.head_dim = m.qk_rope_head_dim;
  c.num_kv_heads = c.num_heads;  // k and v are rebuilt per head from the latent
  c.attention_scale = 1.0 / std::sqrt(static_cast<double>(m.qk_head_dim()));
  SMOE_CHECK_INPUT(!c.attention_bias, path, ": attention_bias is not supported for ", c.model_type);
}

// DeepSeek's MoE keys (DeepSeek-V2/V3, Kimi-K2, GLM-4.5): routed and shared
// experts, group-limited routing, multi-token-prediction layers, FP8 weights.
int64_t parse_deepseek_moe(const nlohmann::json& j, ModelConfig& c, const std::string& path) {
  const int64_t num_experts = json_int(j, "n_routed_experts", path);
  RouterConfig& r = c.router;
  r.top_k = json_int(j, "num_experts_per_tok", path);
  r.float32_logits = true;
  r.float32_weights = true;
  r.renormalise = Renormalise::PlusTiny;
  const bool v3 = c.family != Family::DeepseekV2;  // V3, Kimi-K2 and GLM-4.5 route alike
  const std::string scoring = j.contains("scoring_func") ? json_string(j, "scoring_func", path) : (v3 ? "sigmoid" : "softmax");
  SMOE_CHECK_INPUT(scoring == "softmax" || scoring == "sigmoid", path, ": scoring_func '", scoring,
                   "' is not supported (softmax, sigmoid)");
  r.score = scoring == "sigmoid" ? RouterScore::Sigmoid : RouterScore::Softmax;
  const std::string method = j.contains("topk_method") ? json_string(j, "topk_method", path) : (v3 ? "noaux_tc" : "greedy");
  SMOE_CHECK_INPUT(method == "greedy" || method == "group_limited_greedy" || method == "noaux_tc", path,
                   ": topk_method '", method, "' is not supported (greedy, group_limited_greedy, noaux_tc)");
  if (method != "greedy") {
    r.n_group = json_int(j, "n_group", 1, path);
    r.topk_group = json_int(j, "topk_group", 1, path);
  }
  r.group_score = method == "noaux_tc" ? GroupScore::TopTwoSum : GroupScore::Max;
  r.score_correction_bias = method == "noaux_tc";
  r.norm_topk_prob = json_bool(j, "norm_topk_prob", v3, path);
  r.routed_scaling_factor = json_double(j, "routed_scaling_factor", 1.0, path);
  r.scale_only_unnormalised = !v3;
  SMOE_CHECK_INPUT(r.routed_scaling_factor > 0, path, ": 'routed_scaling_factor' must be positive");
  check_positive(r.n_group, "n_group", path);
  SMOE_CHECK_INPUT(r.topk_group >= 1 && r.topk_group <= r.n_group, path, ": 'topk_group' (", r.topk_group,
                   ") must lie in 1..n_group (", r.n_group, ")");
  SMOE_CHECK_INPUT(num_experts > 0 && num_experts % r.n_group == 0, path, ": n_routed_experts (", num_experts,
                   ") must be a positive multiple of n_group (", r.n_group, ")");
  if (r.n_group > 1) {
    SMOE_CHECK_INPUT(r.group_score == GroupScore::Max || num_experts / r.n_group >= 2, path,
                     ": noaux_tc scores a group by its best two experts; groups of ", num_experts / r.n_group,
                     " are too small");
    SMOE_CHECK_INPUT(r.top_k <= r.topk_group * (num_experts / r.n_group), path, ": num_experts_per_tok (", r.top_k,
                     ") exceeds the experts of topk_group (", r.topk_group, ") groups");
  }

  c.moe_intermediate_size = json_int(j, "moe_intermediate_size", path);
  c.intermediate_size = json_int(j, "intermediate_size", 0, path);
  const int64_t shared = j.contains("n_shared_experts") && !j["n_shared_experts"].is_null()
                             ? json_int(j, "n_shared_experts", path) : 0;
  SMOE_CHECK_INPUT(shared >= 0, path, ": 'n_shared_experts' must not be negative");
  c.shared_expert_intermediate_size = shared * c.moe_intermediate_size;
  c.num_nextn_predict_layers = json_int(j, "num_nextn_predict_layers", 0, path);
  SMOE_CHECK_INPUT(c.num_nextn_predict_layers >= 0, path, ": 'num_nextn_predict_layers' must not be negative");

  parse_fp8(j, c, path);
  return num_experts;
}

int64_t parse_deepseek(const nlohmann::json& j, ModelConfig& c, const std::string& path) {
  parse_mla(j, c, path);
  return parse_deepseek_moe(j, c, path);
}

// MiniMax-M2: every layer MoE (block_sparse_moe, experts w1/w3/w2 of width
// intermediate_size), a sigmoid router whose selection-only bias sits on the
// block, weights renormalised without an epsilon and not scaled; RMSNorm over the
// whole q and k projections; the first rotary_dim elements of each head rotate.
int64_t parse_minimax_m2(const nlohmann::json& j, ModelConfig& c, const std::string& path) {
  const int64_t num_experts = json_int(j, "num_local_experts", path);
  RouterConfig& r = c.router;
  r.top_k = json_int(j, "num_experts_per_tok", path);
  r.score = RouterScore::Sigmoid;
  r.norm_topk_prob = true;
  r.score_correction_bias = json_bool(j, "use_routing_bias", true, path);
  if (j.contains("scoring_func")) {
    const std::string scoring = json_string(j, "scoring_func", path);
    SMOE_CHECK_INPUT(scoring == "sigmoid", path, ": scoring_func '", scoring, "' is not supported for minimax_m2 (sigmoid)");
  }
  c.moe_intermediate_size = json_int(j, "intermediate_size", path);
  SMOE_CHECK_INPUT(json_int(j, "shared_intermediate_size", 0, path) == 0, path,
                   ": 'shared_intermediate_size' must be 0: shared experts are not supported for minimax_m2");
  if (json_bool(j, "use_qk_norm", true, path)) {
    const std::string type = j.contains("qk_norm_type") ? json_string(j, "qk_norm_type", path) : "per_layer";
    SMOE_CHECK_INPUT(type == "per_layer", path, ": qk_norm_type '", type, "' is not supported (per_layer)");
    c.qk_norm = QkNorm::Projection;
  }
  c.rotary_dim = json_int(j, "rotary_dim", c.head_dim, path);
  SMOE_CHECK_INPUT(c.rotary_dim > 0 && c.rotary_dim <= c.head_dim, path, ": 'rotary_dim' (", c.rotary_dim,
                   ") must lie in 1..head_dim (", c.head_dim, ")");
  parse_fp8(j, c, path);
  return num_experts;
}

// ERNIE-4.5-MoE: a softmax router from float32 operands choosing by the
// probabilities plus a selection-only bias (moe_statics), weights the unbiased
// probabilities over max(their sum, moe_norm_min); shared experts; MoE layers from
// moe_layer_start_index to moe_layer_end_index, every moe_layer_interval-th; RoPE
// on interleaved pairs.
int64_t parse_ernie4_5_moe(const nlohmann::json& j, ModelConfig& c, const std::string& path) {
  const int64_t num_experts = json_int(j, "moe_num_experts", path);
  RouterConfig& r = c.router;
  r.top_k = json_int(j, "moe_k", path);
  r.float32_logits = true;  // the weights are cast to the compute dtype
  r.norm_topk_prob = true;
  r.renormalise = Renormalise::ClampMin;
  r.norm_min = json_double(j, "moe_norm_min", 1e-12, path);
  SMOE_CHECK_INPUT(r.norm_min > 0, path, ": 'moe_norm_min' must be positive");
  r.score_correction_bias = true;
  c.moe_intermediate_size = json_int(j, "moe_intermediate_size", path);
  c.intermediate_size = json_int(j, "intermediate_size", 0, path);
  const int64_t shared = json_int(j, "moe_num_shared_experts", 0, path);
  SMOE_CHECK_INPUT(shared >= 0, path, ": 'moe_num_shared_experts' must not be negative");
  c.shared_expert_intermediate_size = shared * c.moe_intermediate_size;
  SMOE_CHECK_INPUT(!json_bool(j, "use_bias", false, path), path, ": use_bias is not supported for ernie4_5_moe");
  c.rope_layout = RopeLayout::Interleaved;
  c.rope_float32 = true;
  return num_experts;
}

// gpt-oss: every layer MoE, experts stacked in MXFP4 with biases and a clamped
// SwiGLU; a router with a bias choosing by logits, weights a softmax over the k;
// attention with biases on q, k, v and o and a sink logit per head; sliding and
// full layers from layer_types.
int64_t parse_gpt_oss(const nlohmann::json& j, ModelConfig& c, const std::string& path) {
  const int64_t num_experts = json_int(j, "num_local_experts", path);
  RouterConfig& r = c.router;
  r.top_k = json_int(j, "num_experts_per_tok", path);
  r.score = RouterScore::SoftmaxOfTopK;
  r.logit_bias = true;
  c.moe_intermediate_size = json_int(j, "intermediate_size", path);
  c.attention_bias = c.attention_out_bias = json_bool(j, "attention_bias", true, path);
  c.attention_sinks = true;
  c.norm_weight_float32 = true;
  c.swiglu_limit = json_double(j, "swiglu_limit", 7.0, path);
  SMOE_CHECK_INPUT(c.swiglu_limit > 0, path, ": 'swiglu_limit' must be positive");
  c.sliding_window = json_int(j, "sliding_window", 0, path);
  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    const auto& types = j["layer_types"];
    SMOE_CHECK_INPUT(types.is_array() && static_cast<int64_t>(types.size()) == c.num_layers, path,
                     ": 'layer_types' must list one type for each of the ", c.num_layers, " layers, found ",
                     types.is_array() ? std::to_string(types.size()) + " entries" : json_quote(types));
    for (const auto& t : types) {
      SMOE_CHECK_INPUT(t.is_string() && (t == "sliding_attention" || t == "full_attention"), path,
                       ": 'layer_types' entries must be \"sliding_attention\" or \"full_attention\", found ",
                       json_quote(t));
      c.sliding_layers.push_back(t == "sliding_attention");
    }
  } else {
    for (int64_t l = 0; l < c.num_layers; ++l) c.sliding_layers.push_back(l % 2 == 0);  // transformers' default
  }
  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    const auto& q = j["quantization_config"];
    const std::string where = path + " quantization_config";
    SMOE_CHECK_INPUT(q.is_object(), where, ": must be an object");
    const std::string qm = json_string(q, "quant_method", where);
    SMOE_CHECK_INPUT(qm == "mxfp4", where, ": quant_method '", qm, "' is not supported for gpt_oss (mxfp4)");
    c.mxfp4 = true;
    SMOE_CHECK_INPUT(c.hidden_size % 32 == 0 && c.moe_intermediate_size % 32 == 0, path,
                     ": MXFP4 experts need hidden_size (", c.hidden_size, ") and intermediate_size (",
                     c.moe_intermediate_size, ") to be multiples of 32");
  }
  return num_experts;
}

// GLM-4.5/4.6: grouped-query attention (q/k/v biases, optional per-head q/k norm,
// partial rotary in the NeoX layout) and DeepSeek-V3's MoE.
int64_t parse_glm4_moe(const nlohmann::json& j, ModelConfig& c, const std::string& path) {
  if (json_bool(j, "use_qk_norm", false, path)) c.qk_norm = QkNorm::PerHead;
  parse_partial_rotary(json_double(j, "partial_rotary_factor", 0.5, path), c, path);
  return parse_deepseek_moe(j, c, path);
}

// The family of a config's model_type.
Family family_of(const std::string& model_type, const std::string& path) {
  if (model_type == "mixtral") return Family::Mixtral;
  if (model_type == "olmoe") return Family::Olmoe;
  if (model_type == "qwen2_moe") return Family::Qwen2Moe;
  if (model_type == "qwen3_moe") return Family::Qwen3Moe;
  if (model_type == "deepseek_v2") return Family::DeepseekV2;
  if (model_type == "deepseek_v3" || model_type == "kimi_k2") return Family::DeepseekV3;
  if (model_type == "glm4_moe") return Family::Glm4Moe;
  if (model_type == "minimax_m2") return Family::MinimaxM2;
  if (model_type == "ernie4_5_moe") return Family::Ernie45Moe;
  if (model_type == "gpt_oss") return Family::GptOss;
  throw InputError(str(path, ": model_type '", model_type,
                       "' is not supported (supported: mixtral, olmoe, qwen2_moe, qwen3_moe, deepseek_v2, "
                       "deepseek_v3, kimi_k2, glm4_moe, minimax_m2, ernie4_5_moe, gpt_oss)"));
}

bool is_deepseek(Family f) { return f == Family::DeepseekV2 || f == Family::DeepseekV3; }

// Sizes, heads and head width (MLA's widths: parse_deepseek).
void parse_shape(const nlohmann::json& j, ModelConfig& c, const std::string& path) {
  const bool deepseek = is_deepseek(c.family);
  c.vocab_size = json_int(j, "vocab_size", path);
  c.hidden_size = json_int(j, "hidden_size", path);
  c.num_layers = json_int(j, "num_hidden_layers", path);
  c.num_heads = json_int(j, "num_attention_heads", path);
  check_positive(c.vocab_size, "vocab_size", path);
  check_positive(c.hidden_size, "hidden_size", path);
  check_positive(c.num_layers, "num_hidden_layers", path);
  // Per-layer tables are sized by it: refuse counts no model comes near.
  SMOE_CHECK_INPUT(c.num_layers <= kMaxLayers, path, ": num_hidden_layers (", c.num_layers, ") is more than ",
                   kMaxLayers);
  check_positive(c.num_heads, "num_attention_heads", path);
  c.num_kv_heads = json_int(j, "num_key_value_heads", c.num_heads, path);
  check_positive(c.num_kv_heads, "num_key_value_heads", path);
  SMOE_CHECK_INPUT(c.num_heads % c.num_kv_heads == 0, path, ": num_attention_heads (", c.num_heads,
                   ") must be a multiple of num_key_value_heads (", c.num_kv_heads, ")");
  if (deepseek) {
    // MLA: head widths come from qk_nope/qk_rope/v_head_dim (parse_deepseek).
  } else if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = json_int(j, "head_dim", path);
  } else {
    SMOE_CHECK_INPUT(c.hidden_size % c.num_heads == 0, path, ": hidden_size (", c.hidden_size,
                     ") is not a multiple of num_attention_heads (", c.num_heads, ") and no head_dim is given");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (!deepseek) {
    check_positive(c.head_dim, "head_dim", path);
    SMOE_CHECK_INPUT(c.head_dim % 2 == 0, path, ": head_dim must be even for rotary embeddings, found ", c.head_dim);
    c.attention_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  }

}

// Where the MoE layers are: per-layer expert counts (0: dense), from the family's
// layout keys, and smoe prune's per-layer counts of a pruned checkpoint.
void place_experts(const nlohmann::json& j, ModelConfig& c, int64_t num_experts, int64_t sparse_step,
                   const std::vector<int64_t>& mlp_only, const std::string& path) {
  c.layer_experts.assign(static_cast<size_t>(c.num_layers), num_experts);
  if (is_deepseek(c.family) || c.family == Family::Glm4Moe) {
    // Layers before first_k_dense_replace, and (DeepSeek) all but every moe_layer_freq-th, are dense.
    const int64_t first_moe = json_int(j, "first_k_dense_replace", c.family == Family::Glm4Moe ? 1 : 0, path);
    const int64_t freq = is_deepseek(c.family) ? json_int(j, "moe_layer_freq", 1, path) : 1;
    SMOE_CHECK_INPUT(first_moe >= 0, path, ": 'first_k_dense_replace' must not be negative");
    check_positive(freq, "moe_layer_freq", path);
    for (int64_t l = 0; l < c.num_layers; ++l)
      if (l < first_moe || l % freq != 0) c.layer_experts[static_cast<size_t>(l)] = 0;
  }
  if (c.family == Family::Ernie45Moe) {
    // MoE from moe_layer_start_index to moe_layer_end_index (-1: the last layer), every interval-th.
    const int64_t start = json_int(j, "moe_layer_start_index", 0, path);
    int64_t end = json_int(j, "moe_layer_end_index", -1, path);
    const int64_t interval = json_int(j, "moe_layer_interval", 1, path);
    if (end == -1) end = c.num_layers - 1;
    SMOE_CHECK_INPUT(start >= 0 && end >= 0, path, ": 'moe_layer_start_index' and 'moe_layer_end_index' must not be "
                     "negative (-1: the last layer)");
    check_positive(interval, "moe_layer_interval", path);
    for (int64_t l = 0; l < c.num_layers; ++l)
      if ((l + 1) % interval != 0 || l < start || l > end) c.layer_experts[static_cast<size_t>(l)] = 0;
    SMOE_CHECK_INPUT(c.num_moe_layers() > 0, path, ": moe_layer_start_index/end_index/interval leave no MoE layer");
  }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    bool dense = (l + 1) % sparse_step != 0 || std::find(mlp_only.begin(), mlp_only.end(), l) != mlp_only.end();
    if (dense) c.layer_experts[static_cast<size_t>(l)] = 0;
  }
  for (int64_t l : mlp_only)
    SMOE_CHECK_INPUT(l >= 0 && l < c.num_layers, path, ": mlp_only_layers names layer ", l, " of ", c.num_layers);
  if (c.num_moe_layers() < c.num_layers)
    SMOE_CHECK_INPUT(c.intermediate_size > 0, path,
                     ": dense layers present but 'intermediate_size' is missing or not positive");

  // Pruned checkpoints written by `smoe prune` keep their per-layer expert counts here.
  std::vector<int64_t> per_layer = int_list(j, "smoe_layer_experts", path);
  if (!per_layer.empty()) {
    SMOE_CHECK_INPUT(static_cast<int64_t>(per_layer.size()) == c.num_layers, path, ": 'smoe_layer_experts' has ",
                     per_layer.size(), " entries for ", c.num_layers, " layers");
    for (size_t l = 0; l < per_layer.size(); ++l) {
      SMOE_CHECK_INPUT((per_layer[l] > 0) == (c.layer_experts[l] > 0), path, ": 'smoe_layer_experts' gives ",
                       per_layer[l], " experts to layer ", l, ", which is ", c.layer_experts[l] > 0 ? "an MoE" : "a dense",
                       " layer");
      SMOE_CHECK_INPUT(per_layer[l] <= num_experts, path, ": 'smoe_layer_experts' gives layer ", l, " ",
                       per_layer[l], " experts, more than the ", num_experts, " of the config");
    }
    c.layer_experts = per_layer;
  }
  for (size_t l = 0; l < c.layer_experts.size(); ++l) {
    if (c.layer_experts[l] > 0)
      SMOE_CHECK_INPUT(c.router.top_k <= c.layer_experts[l], path, ": ", c.top_k_key(), " (", c.router.top_k,
                       ") exceeds the ", c.layer_experts[l], " experts of layer ", l);
    if (c.layer_experts[l] > 0 && c.router.n_group > 1)
      SMOE_CHECK_INPUT(c.layer_experts[l] == num_experts, path, ": layer ", l, " keeps ", c.layer_experts[l],
                       " experts; group-limited routing (n_group ", c.router.n_group, ") needs all ", num_experts);
  }
}

}  // namespace

ModelConfig parse_model_config(const nlohmann::json& j, const std::string& path) {
  SMOE_CHECK_INPUT(j.is_object(), path, ": config must be a JSON object");
  ModelConfig c;
  c.path = path;
  c.model_type = json_string(j, "model_type", path);
  c.family = family_of(c.model_type, path);
  parse_shape(j, c, path);
  c.rms_norm_eps = json_double(j, "rms_norm_eps", 1e-6, path);
  SMOE_CHECK_INPUT(c.rms_norm_eps > 0, path, ": 'rms_norm_eps' must be positive");
  c.rope_theta = json_double(j, "rope_theta", 10000.0, path);
  SMOE_CHECK_INPUT(c.rope_theta > 0, path, ": 'rope_theta' must be positive");
  c.tie_word_embeddings = json_bool(j, "tie_word_embeddings", false, path);
  c.attention_bias = json_bool(j, "attention_bias", false, path);

  int64_t num_experts = 0;
  int64_t sparse_step = 1;
  std::vector<int64_t> mlp_only;
  switch (c.family) {
    case Family::Mixtral:
      num_experts = json_int(j, "num_local_experts", path);
      c.router.top_k = json_int(j, "num_experts_per_tok", path);
      c.router.norm_topk_prob = true;  // Mixtral always renormalises the top-k weights
      c.moe_intermediate_size = json_int(j, "intermediate_size", path);
      c.sliding_window = json_int(j, "sliding_window", 0, path);
      break;
    case Family::Olmoe:
      num_experts = json_int(j, "num_experts", path);
      c.router.top_k = json_int(j, "num_experts_per_tok", path);
      c.router.norm_topk_prob = json_bool(j, "norm_topk_prob", false, path);
      c.moe_intermediate_size = json_int(j, "intermediate_size", path);
      c.qk_norm = QkNorm::Projection;
      c.clip_qkv = json_double(j, "clip_qkv", 0.0, path);
      SMOE_CHECK_INPUT(c.clip_qkv >= 0, path, ": 'clip_qkv' must be positive or null");
      break;
    case Family::Qwen2Moe:
    case Family::Qwen3Moe:
      num_experts = json_int(j, "num_experts", path);
      c.router.top_k = json_int(j, "num_experts_per_tok", path);
      c.router.norm_topk_prob = json_bool(j, "norm_topk_prob", false, path);
      c.moe_intermediate_size = json_int(j, "moe_intermediate_size", path);
      c.intermediate_size = json_int(j, "intermediate_size", 0, path);
      sparse_step = json_int(j, "decoder_sparse_step", 1, path);
      mlp_only = int_list(j, "mlp_only_layers", path);
      SMOE_CHECK_INPUT(!json_bool(j, "use_sliding_window", false, path), path,
                       ": use_sliding_window is not supported for ", c.model_type);
      if (c.family == Family::Qwen2Moe) {
        c.attention_bias = true;  // Qwen2 projects q, k, v with a bias
        c.shared_expert_intermediate_size = json_int(j, "shared_expert_intermediate_size", 0, path);
        SMOE_CHECK_INPUT(c.shared_expert_intermediate_size >= 0, path,
                         ": 'shared_expert_intermediate_size' must not be negative");
        c.shared_expert_gate = c.shared_expert_intermediate_size > 0;
      } else {
        c.qk_norm = QkNorm::PerHead;
      }
      check_positive(sparse_step, "decoder_sparse_step", path);
      break;
    case Family::DeepseekV2:
    case Family::DeepseekV3:
      num_experts = parse_deepseek(j, c, path);
      break;
    case Family::Glm4Moe:
      num_experts = parse_glm4_moe(j, c, path);
      break;
    case Family::MinimaxM2:
      num_experts = parse_minimax_m2(j, c, path);
      break;
    case Family::Ernie45Moe:
      num_experts = parse_ernie4_5_moe(j, c, path);
      break;
    case Family::GptOss:
      num_experts = parse_gpt_oss(j, c, path);
      break;
  }
  parse_rope_scaling(j, c, path);
  SMOE_CHECK_INPUT(c.rope_theta > 0, path, ": 'rope_theta' must be positive");
  SMOE_CHECK_INPUT(c.rope_dim() > 0 && c.rope_dim() % 2 == 0 && c.rope_dim() <= std::max(c.head_dim, c.mla.qk_rope_head_dim),
                   path, ": the rotary part of a head (", c.rope_dim(), ") must be even and lie in 2..head_dim (",
                   c.head_dim, ")");
  check_positive(num_experts, c.experts_key(), path);
  check_positive(c.router.top_k, c.top_k_key(), path);
  const bool mixtral_like = c.family == Family::Mixtral || c.family == Family::Olmoe || c.family == Family::MinimaxM2 ||
                            c.family == Family::GptOss;
  check_positive(c.moe_intermediate_size, mixtral_like ? "intermediate_size" : "moe_intermediate_size", path);
  SMOE_CHECK_INPUT(c.sliding_window >= 0, path, ": 'sliding_window' must not be negative");

  place_experts(j, c, num_experts, sparse_step, mlp_only, path);
  return c;
}

ModelConfig read_model_config(const std::string& path) {
  std::string file = path;
  if (file.size() < 5 || file.compare(file.size() - 5, 5, ".json") != 0) file += "/config.json";
  return parse_model_config(read_json_file(file), file);
}

}  // namespace smoe
