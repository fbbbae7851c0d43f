// Writes a tiny random Mixtral-layout checkpoint for unit tests.
#pragma once

#include <ATen/ATen.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "smoe/io/json.h"
#include "smoe/io/tensor-io.h"

namespace smoe::testing_util {

inline nlohmann::json tiny_mixtral_config() {
  return {{"model_type", "mixtral"},    {"vocab_size", 300},        {"hidden_size", 32},
          {"num_hidden_layers", 2},     {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"intermediate_size", 48},    {"num_local_experts", 4},   {"num_experts_per_tok", 2},
          {"rms_norm_eps", 1e-5},       {"rope_theta", 10000.0},    {"tie_word_embeddings", false}};
}

inline std::vector<std::pair<std::string, at::Tensor>> tiny_mixtral_tensors(int64_t seed) {
  at::manual_seed(seed);
  const int64_t d = 32, V = 300, ff = 48, E = 4, H = 4, Hkv = 2, D = 8;
  std::vector<std::pair<std::string, at::Tensor>> t;
  auto w = [](int64_t o, int64_t i) { return at::randn({o, i}) / std::sqrt(static_cast<double>(i)); };
  t.emplace_back("model.embed_tokens.weight", at::randn({V, d}));
  t.emplace_back("model.norm.weight", 1.0 + 0.1 * at::randn({d}));
  t.emplace_back("lm_head.weight", w(V, d));
  for (int l = 0; l < 2; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    t.emplace_back(p + "input_layernorm.weight", 1.0 + 0.1 * at::randn({d}));
    t.emplace_back(p + "post_attention_layernorm.weight", 1.0 + 0.1 * at::randn({d}));
    t.emplace_back(p + "self_attn.q_proj.weight", w(H * D, d));
    t.emplace_back(p + "self_attn.k_proj.weight", w(Hkv * D, d));
    t.emplace_back(p + "self_attn.v_proj.weight", w(Hkv * D, d));
    t.emplace_back(p + "self_attn.o_proj.weight", w(d, H * D));
    t.emplace_back(p + "block_sparse_moe.gate.weight", w(E, d));
    for (int e = 0; e < E; ++e) {
      std::string ep = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
      t.emplace_back(ep + "w1.weight", w(ff, d));
      t.emplace_back(ep + "w3.weight", w(ff, d));
      t.emplace_back(ep + "w2.weight", w(d, ff));
    }
  }
  return t;
}

// Writes config.json and model.safetensors into `dir` (created).
inline void write_tiny_mixtral(const std::string& dir, int64_t seed = 0) {
  ::mkdir(dir.c_str(), 0755);
  write_json_file(dir + "/config.json", tiny_mixtral_config());
  save_safetensors(dir + "/model.safetensors", tiny_mixtral_tensors(seed));
}

}  // namespace smoe::testing_util
