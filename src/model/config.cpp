#include "smoe/model/config.h"

#include <algorithm>
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
  }
  return "?";
}

FamilyLayout ModelConfig::layout() const {
  if (family == Family::Mixtral) return {"block_sparse_moe.", "w1", "w3", "w2"};
  return {"mlp.", "gate_proj", "up_proj", "down_proj"};
}

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
  SMOE_CHECK_INPUT(it->is_array(), path, ": '", key, "' must be a list of integers, found ", it->dump());
  for (const auto& v : *it) {
    SMOE_CHECK_INPUT(v.is_number_integer(), path, ": '", key, "' must be a list of integers, found ", it->dump());
    out.push_back(v.get<int64_t>());
  }
  return out;
}

void check_positive(int64_t v, const char* key, const std::string& path) {
  SMOE_CHECK_INPUT(v > 0, path, ": '", key, "' must be positive, found ", v);
}

}  // namespace

ModelConfig parse_model_config(const nlohmann::json& j, const std::string& path) {
  SMOE_CHECK_INPUT(j.is_object(), path, ": config must be a JSON object");
  ModelConfig c;
  c.path = path;
  c.model_type = json_string(j, "model_type", path);
  if (c.model_type == "mixtral") {
    c.family = Family::Mixtral;
  } else if (c.model_type == "olmoe") {
    c.family = Family::Olmoe;
  } else if (c.model_type == "qwen2_moe") {
    c.family = Family::Qwen2Moe;
  } else if (c.model_type == "qwen3_moe") {
    c.family = Family::Qwen3Moe;
  } else {
    throw InputError(str(path, ": model_type '", c.model_type,
                         "' is not supported (supported: mixtral, olmoe, qwen2_moe, qwen3_moe)"));
  }

  c.vocab_size = json_int(j, "vocab_size", path);
  c.hidden_size = json_int(j, "hidden_size", path);
  c.num_layers = json_int(j, "num_hidden_layers", path);
  c.num_heads = json_int(j, "num_attention_heads", path);
  check_positive(c.vocab_size, "vocab_size", path);
  check_positive(c.hidden_size, "hidden_size", path);
  check_positive(c.num_layers, "num_hidden_layers", path);
  check_positive(c.num_heads, "num_attention_heads", path);
  c.num_kv_heads = json_int(j, "num_key_value_heads", c.num_heads, path);
  check_positive(c.num_kv_heads, "num_key_value_heads", path);
  SMOE_CHECK_INPUT(c.num_heads % c.num_kv_heads == 0, path, ": num_attention_heads (", c.num_heads,
                   ") must be a multiple of num_key_value_heads (", c.num_kv_heads, ")");
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = json_int(j, "head_dim", path);
  } else {
    SMOE_CHECK_INPUT(c.hidden_size % c.num_heads == 0, path, ": hidden_size (", c.hidden_size,
                     ") is not a multiple of num_attention_heads (", c.num_heads, ") and no head_dim is given");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  check_positive(c.head_dim, "head_dim", path);
  SMOE_CHECK_INPUT(c.head_dim % 2 == 0, path, ": head_dim must be even for rotary embeddings, found ", c.head_dim);

  c.rms_norm_eps = json_double(j, "rms_norm_eps", 1e-6, path);
  SMOE_CHECK_INPUT(c.rms_norm_eps > 0, path, ": 'rms_norm_eps' must be positive");
  c.rope_theta = json_double(j, "rope_theta", 10000.0, path);
  SMOE_CHECK_INPUT(c.rope_theta > 0, path, ": 'rope_theta' must be positive");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const auto& rs = j["rope_scaling"];
    SMOE_CHECK_INPUT(rs.is_object(), path, ": 'rope_scaling' must be an object or null");
    std::string type = rs.value("rope_type", rs.value("type", std::string("default")));
    SMOE_CHECK_INPUT(type == "default", path, ": rope_scaling type '", type, "' is not supported for ", c.model_type);
  }
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
  }
  check_positive(num_experts, c.family == Family::Mixtral ? "num_local_experts" : "num_experts", path);
  check_positive(c.router.top_k, "num_experts_per_tok", path);
  check_positive(c.moe_intermediate_size, c.family == Family::Qwen2Moe || c.family == Family::Qwen3Moe
                                              ? "moe_intermediate_size"
                                              : "intermediate_size",
                 path);
  SMOE_CHECK_INPUT(c.sliding_window >= 0, path, ": 'sliding_window' must not be negative");

  c.layer_experts.assign(static_cast<size_t>(c.num_layers), num_experts);
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
      SMOE_CHECK_INPUT(c.router.top_k <= c.layer_experts[l], path, ": num_experts_per_tok (", c.router.top_k,
                       ") exceeds the ", c.layer_experts[l], " experts of layer ", l);
  }
  return c;
}

ModelConfig read_model_config(const std::string& path) {
  std::string file = path;
  if (file.size() < 5 || file.compare(file.size() - 5, 5, ".json") != 0) file += "/config.json";
  return parse_model_config(read_json_file(file), file);
}

}  // namespace smoe
