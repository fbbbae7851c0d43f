// config.json parsing: each family's semantics, and bad configs rejected with the
// file and key named.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/model/config.h"
#include "smoe/model/tensor-names.h"

namespace smoe {
namespace {

nlohmann::json mixtral() {
  return {{"model_type", "mixtral"}, {"vocab_size", 300},       {"hidden_size", 64},
          {"num_hidden_layers", 2},  {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"intermediate_size", 96}, {"num_local_experts", 8},   {"num_experts_per_tok", 2},
          {"rms_norm_eps", 1e-5},    {"rope_theta", 1e6},        {"sliding_window", nullptr}};
}

// j with `key` set to `value`, or removed where value is null.
nlohmann::json with_key(nlohmann::json j, const char* key, const nlohmann::json& value) {
  if (value.is_null())
    j.erase(key);
  else
    j[key] = value;
  return j;
}

std::string error_of(const nlohmann::json& j) {
  try {
    parse_model_config(j, "/models/x/config.json");
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("/models/x/config.json"), std::string::npos) << msg;
    return msg;
  }
  return "";
}

TEST(Config, Mixtral) {
  ModelConfig c = parse_model_config(mixtral(), "config.json");
  EXPECT_EQ(c.family, Family::Mixtral);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.moe_intermediate_size, 96);
  EXPECT_TRUE(c.router.norm_topk_prob);
  EXPECT_EQ(c.layer_experts, (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(TensorNames(c.family).moe(1), "model.layers.1.block_sparse_moe.");
}

TEST(Config, Qwen2MoeDenseLayersAndSharedExpert) {
  nlohmann::json j = {{"model_type", "qwen2_moe"},
                      {"vocab_size", 300},
                      {"hidden_size", 64},
                      {"num_hidden_layers", 4},
                      {"num_attention_heads", 4},
                      {"num_experts", 6},
                      {"num_experts_per_tok", 2},
                      {"moe_intermediate_size", 32},
                      {"intermediate_size", 128},
                      {"shared_expert_intermediate_size", 48},
                      {"decoder_sparse_step", 2},
                      {"mlp_only_layers", {3}}};
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.layer_experts, (std::vector<int64_t>{0, 6, 0, 0}));
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.shared_expert_gate);
  EXPECT_FALSE(c.router.norm_topk_prob);
  EXPECT_EQ(c.num_moe_layers(), 1);
}

TEST(Config, Qwen3AndOlmoeNorms) {
  nlohmann::json q = {{"model_type", "qwen3_moe"}, {"vocab_size", 300},         {"hidden_size", 64},
                      {"num_hidden_layers", 2},    {"num_attention_heads", 4},   {"head_dim", 32},
                      {"num_experts", 8},          {"num_experts_per_tok", 2},   {"moe_intermediate_size", 32},
                      {"norm_topk_prob", true}};
  ModelConfig c = parse_model_config(q, "config.json");
  EXPECT_EQ(c.qk_norm, QkNorm::PerHead);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_TRUE(c.router.norm_topk_prob);
  nlohmann::json o = mixtral();
  o["model_type"] = "olmoe";
  o.erase("num_local_experts");
  o["num_experts"] = 8;
  o["clip_qkv"] = 4.0;
  ModelConfig oc = parse_model_config(o, "config.json");
  EXPECT_EQ(oc.qk_norm, QkNorm::Projection);
  EXPECT_FALSE(oc.router.norm_topk_prob);
  EXPECT_DOUBLE_EQ(oc.clip_qkv, 4.0);
}

TEST(Config, PerLayerExpertCountsOfPrunedModels) {
  nlohmann::json j = mixtral();
  j["smoe_layer_experts"] = {4, 2};
  EXPECT_EQ(parse_model_config(j, "c.json").layer_experts, (std::vector<int64_t>{4, 2}));
  j["smoe_layer_experts"] = {4};
  EXPECT_NE(error_of(j).find("has 1 entries for 2 layers"), std::string::npos);
  j["smoe_layer_experts"] = {4, 9};
  EXPECT_NE(error_of(j).find("more than the 8"), std::string::npos);
}

TEST(ConfigMalformed, EachFaultNamed) {
  struct Case {
    const char* key;
    nlohmann::json value;  // null: remove the key
    const char* fault;
  } cases[] = {
      {"model_type", "gpt2", "model_type 'gpt2' is not supported"},
      {"model_type", nullptr, "missing required key 'model_type'"},
      {"hidden_size", nullptr, "missing required key 'hidden_size'"},
      {"hidden_size", "64", "'hidden_size' must be an integer"},
      {"vocab_size", 0, "'vocab_size' must be positive"},
      // Found by fuzz-config: 22 billion layers made the parser size its tables by them.
      {"num_hidden_layers", int64_t{22222222261}, "num_hidden_layers (22222222261) is more than 65536"},
      {"num_key_value_heads", 3, "must be a multiple of num_key_value_heads"},
      {"num_experts_per_tok", 9, "exceeds the 8 experts of layer 0"},
      {"num_local_experts", -2, "'num_local_experts' must be positive"},
      {"rms_norm_eps", "tiny", "'rms_norm_eps' must be a number"},
      {"hidden_size", 66, "not a multiple of num_attention_heads"},
      {"rope_scaling", nlohmann::json{{"type", "yarn"}, {"factor", 4}}, "missing required key 'original_max_position_embeddings'"},
      {"rope_scaling", nlohmann::json{{"type", "dynamic"}, {"factor", 4}}, "rope_scaling type 'dynamic' is not supported"},
  };
  for (const auto& c : cases) {
    nlohmann::json j = with_key(mixtral(), c.key, c.value);
    std::string msg = error_of(j);
    EXPECT_NE(msg.find(c.fault), std::string::npos) << c.key << ": " << msg;
  }
  EXPECT_NE(error_of(nlohmann::json::array()).find("must be a JSON object"), std::string::npos);
}

// DeepSeek-V3's published config.json (values from the hub file).
nlohmann::json deepseek_v3() {
  return {{"model_type", "deepseek_v3"}, {"vocab_size", 129280}, {"hidden_size", 7168},
          {"intermediate_size", 18432}, {"moe_intermediate_size", 2048}, {"num_hidden_layers", 61},
          {"num_attention_heads", 128}, {"num_key_value_heads", 128}, {"n_routed_experts", 256},
          {"n_shared_experts", 1}, {"num_experts_per_tok", 8}, {"n_group", 8}, {"topk_group", 4},
          {"topk_method", "noaux_tc"}, {"scoring_func", "sigmoid"}, {"routed_scaling_factor", 2.5},
          {"norm_topk_prob", true}, {"first_k_dense_replace", 3}, {"moe_layer_freq", 1}, {"q_lora_rank", 1536},
          {"kv_lora_rank", 512}, {"qk_nope_head_dim", 128}, {"qk_rope_head_dim", 64}, {"v_head_dim", 128},
          {"rope_theta", 10000}, {"rms_norm_eps", 1e-6}, {"num_nextn_predict_layers", 1},
          {"rope_scaling", {{"type", "yarn"}, {"factor", 40}, {"original_max_position_embeddings", 4096},
                            {"beta_fast", 32}, {"beta_slow", 1}, {"mscale", 1.0}, {"mscale_all_dim", 1.0}}},
          {"quantization_config", {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
                                   {"weight_block_size", {128, 128}}}}};
}

TEST(Config, DeepseekV3) {
  ModelConfig c = parse_model_config(deepseek_v3(), "c.json");
  EXPECT_EQ(c.family, Family::DeepseekV3);
  EXPECT_STREQ(c.experts_key(), "n_routed_experts");
  EXPECT_EQ(TensorNames(c.family).shared_expert(3), "model.layers.3.mlp.shared_experts.");
  EXPECT_EQ(c.num_moe_layers(), 58);  // layers 0-2 dense
  EXPECT_FALSE(c.is_moe(2));
  EXPECT_TRUE(c.is_moe(3));
  EXPECT_EQ(c.shared_expert_intermediate_size, 2048);
  EXPECT_FALSE(c.shared_expert_gate);
  EXPECT_EQ(c.router.score, RouterScore::Sigmoid);
  EXPECT_EQ(c.router.group_score, GroupScore::TopTwoSum);
  EXPECT_TRUE(c.router.score_correction_bias);
  EXPECT_EQ(c.router.n_group, 8);
  EXPECT_EQ(c.router.topk_group, 4);
  EXPECT_DOUBLE_EQ(c.router.routed_scaling_factor, 2.5);
  EXPECT_FALSE(c.router.scale_only_unnormalised);
  EXPECT_TRUE(c.mla.enabled());
  EXPECT_EQ(c.mla.qk_head_dim(), 192);
  EXPECT_EQ(c.head_dim, 64);
  // 192^-1/2 * (0.1 ln 40 + 1)^2, as the research notes compute it.
  EXPECT_NEAR(c.attention_scale, 0.1352338, 1e-7);
  EXPECT_TRUE(c.yarn.enabled);
  EXPECT_DOUBLE_EQ(c.yarn.attention_factor, 1.0);
  EXPECT_TRUE(c.fp8);
  EXPECT_EQ(c.fp8_block_rows, 128);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);

  nlohmann::json k2 = deepseek_v3();  // Kimi-K2-Instruct's differences
  k2["model_type"] = "kimi_k2";
  k2["n_routed_experts"] = 384;
  k2["num_attention_heads"] = 64;
  k2["num_key_value_heads"] = 64;
  k2["n_group"] = 1;
  k2["topk_group"] = 1;
  k2["first_k_dense_replace"] = 1;
  k2["rope_scaling"]["factor"] = 32.0;
  ModelConfig kimi = parse_model_config(k2, "c.json");
  EXPECT_EQ(kimi.family, Family::DeepseekV3);
  EXPECT_EQ(kimi.num_moe_layers(), 60);
  EXPECT_NEAR(kimi.attention_scale, 0.1308608, 1e-7);
}

TEST(Config, DeepseekV2Lite) {
  nlohmann::json j = deepseek_v3();
  j["model_type"] = "deepseek_v2";
  j["q_lora_rank"] = nullptr;
  j["topk_method"] = "greedy";
  j["scoring_func"] = "softmax";
  j["norm_topk_prob"] = false;
  j["routed_scaling_factor"] = 1.0;
  j["rope_scaling"]["mscale"] = 0.707;
  j["rope_scaling"]["mscale_all_dim"] = 0.707;
  j.erase("quantization_config");
  ModelConfig c = parse_model_config(j, "c.json");
  EXPECT_EQ(c.family, Family::DeepseekV2);
  EXPECT_EQ(c.mla.q_lora_rank, 0);
  EXPECT_EQ(c.router.score, RouterScore::Softmax);
  EXPECT_EQ(c.router.n_group, 1);  // greedy ignores the groups
  EXPECT_FALSE(c.router.score_correction_bias);
  EXPECT_TRUE(c.router.scale_only_unnormalised);
  EXPECT_NEAR(c.attention_scale, 0.1147214, 1e-7);
  EXPECT_FALSE(c.fp8);
}

TEST(ConfigMalformed, DeepseekFaultsNamed) {
  struct Case {
    const char* key;
    nlohmann::json value;
    const char* fault;
  } cases[] = {
      {"n_group", 7, "n_routed_experts (256) must be a positive multiple of n_group (7)"},
      {"topk_group", 9, "'topk_group' (9) must lie in 1..n_group (8)"},
      {"num_experts_per_tok", 130, "exceeds the experts of topk_group (4) groups"},
      {"scoring_func", "tanh", "scoring_func 'tanh' is not supported"},
      {"topk_method", "random", "topk_method 'random' is not supported"},
      {"kv_lora_rank", nullptr, "missing required key 'kv_lora_rank'"},
      {"qk_rope_head_dim", 63, "'qk_rope_head_dim' must be even"},
      {"quantization_config", nlohmann::json{{"quant_method", "awq"}}, "quant_method 'awq' is not supported"},
      {"quantization_config", nlohmann::json{{"quant_method", "fp8"}, {"weight_block_size", {128}}},
       "'weight_block_size' must be two positive integers"},
      {"quantization_config", nlohmann::json{{"quant_method", "fp8"}, {"fmt", "e5m2"}}, "fmt 'e5m2' is not supported"},
      {"smoe_layer_experts", std::vector<int64_t>(61, 128), "group-limited routing (n_group 8) needs all 256"},
      {"routed_scaling_factor", -1, "'routed_scaling_factor' must be positive"},
  };
  for (const auto& c : cases) {
    nlohmann::json j = with_key(deepseek_v3(), c.key, c.value);
    if (std::string(c.key) == "smoe_layer_experts")
      for (int l = 0; l < 3; ++l) j[c.key][l] = 0;
    std::string msg = error_of(j);
    EXPECT_NE(msg.find(c.fault), std::string::npos) << c.key << ": " << msg;
  }
}

// GLM-4.6's config.json (docs/scale/glm-4.6-config.json), the keys smoe reads.
nlohmann::json glm4_6() {
  return {{"model_type", "glm4_moe"}, {"vocab_size", 151552}, {"hidden_size", 5120}, {"num_hidden_layers", 92},
          {"num_attention_heads", 96}, {"num_key_value_heads", 8}, {"head_dim", 128}, {"partial_rotary_factor", 0.5},
          {"attention_bias", true}, {"use_qk_norm", true}, {"intermediate_size", 12288},
          {"moe_intermediate_size", 1536}, {"n_routed_experts", 160}, {"n_shared_experts", 1},
          {"num_experts_per_tok", 8}, {"first_k_dense_replace", 3}, {"n_group", 1}, {"topk_group", 1},
          {"routed_scaling_factor", 2.5}, {"norm_topk_prob", true}, {"num_nextn_predict_layers", 1},
          {"rms_norm_eps", 1e-5}, {"rope_theta", 1000000}, {"rope_scaling", nullptr}, {"tie_word_embeddings", false}};
}

// MiniMax-M2's config.json (docs/scale/minimax-m2-config.json), the keys smoe reads.
nlohmann::json minimax_m2() {
  return {{"model_type", "minimax_m2"}, {"vocab_size", 200064}, {"hidden_size", 3072}, {"num_hidden_layers", 62},
          {"num_attention_heads", 48}, {"num_key_value_heads", 8}, {"head_dim", 128}, {"rotary_dim", 64},
          {"intermediate_size", 1536}, {"num_local_experts", 256}, {"num_experts_per_tok", 8},
          {"shared_intermediate_size", 0}, {"scoring_func", "sigmoid"}, {"use_routing_bias", true},
          {"use_qk_norm", true}, {"qk_norm_type", "per_layer"}, {"rms_norm_eps", 1e-6}, {"rope_theta", 5000000},
          {"quantization_config", {{"quant_method", "fp8"}, {"fmt", "float8_e4m3fn"},
                                   {"weight_block_size", {128, 128}}, {"activation_scheme", "dynamic"}}}};
}

// ERNIE-4.5-21B-A3B's config.json (docs/scale/ernie-4.5-21b-a3b-config.json).
nlohmann::json ernie4_5() {
  return {{"model_type", "ernie4_5_moe"}, {"vocab_size", 103424}, {"hidden_size", 2560}, {"num_hidden_layers", 28},
          {"num_attention_heads", 20}, {"num_key_value_heads", 4}, {"head_dim", 128}, {"intermediate_size", 12288},
          {"moe_intermediate_size", 1536}, {"moe_num_experts", 64}, {"moe_k", 6}, {"moe_num_shared_experts", 2},
          {"moe_layer_start_index", 1}, {"moe_layer_end_index", 27}, {"moe_layer_interval", 1}, {"use_bias", false},
          {"tie_word_embeddings", true}, {"rms_norm_eps", 1e-5}, {"rope_theta", 500000.0}};
}

// gpt-oss-20b's config.json (docs/scale/gpt-oss-20b-config.json), the keys smoe reads.
nlohmann::json gpt_oss_20b() {
  nlohmann::json types = nlohmann::json::array();
  for (int l = 0; l < 24; ++l) types.push_back(l % 2 == 0 ? "sliding_attention" : "full_attention");
  return {{"model_type", "gpt_oss"}, {"vocab_size", 201088}, {"hidden_size", 2880}, {"num_hidden_layers", 24},
          {"num_attention_heads", 64}, {"num_key_value_heads", 8}, {"head_dim", 64}, {"intermediate_size", 2880},
          {"num_local_experts", 32}, {"num_experts_per_tok", 4}, {"sliding_window", 128}, {"layer_types", types},
          {"attention_bias", true}, {"swiglu_limit", 7.0}, {"rms_norm_eps", 1e-5}, {"rope_theta", 150000},
          {"rope_scaling", {{"rope_type", "yarn"}, {"factor", 32.0}, {"beta_fast", 32.0}, {"beta_slow", 1.0},
                            {"original_max_position_embeddings", 4096}, {"truncate", false}}},
          {"quantization_config", {{"quant_method", "mxfp4"}}}};
}

TEST(Config, GptOss) {
  ModelConfig c = parse_model_config(gpt_oss_20b(), "c.json");
  EXPECT_EQ(c.family, Family::GptOss);
  EXPECT_STREQ(c.experts_key(), "num_local_experts");
  EXPECT_EQ(c.num_moe_layers(), 24);
  EXPECT_EQ(c.moe_intermediate_size, 2880);
  EXPECT_EQ(c.router.score, RouterScore::SoftmaxOfTopK);
  EXPECT_TRUE(c.router.logit_bias);
  EXPECT_FALSE(c.router.score_correction_bias);
  EXPECT_TRUE(c.attention_bias && c.attention_out_bias && c.attention_sinks);
  EXPECT_TRUE(c.norm_weight_float32);
  EXPECT_DOUBLE_EQ(c.swiglu_limit, 7.0);
  EXPECT_TRUE(c.mxfp4);
  EXPECT_FALSE(c.fp8);
  EXPECT_EQ(c.window(0), 128);
  EXPECT_EQ(c.window(1), 0);
  EXPECT_EQ(c.window(22), 128);
  EXPECT_TRUE(c.yarn.enabled);
  EXPECT_FALSE(c.yarn.truncate);
  EXPECT_NEAR(c.yarn.attention_factor, 0.1 * std::log(32.0) + 1, 1e-12);
  EXPECT_DOUBLE_EQ(c.attention_scale, 0.125);
  const TensorNames names(c.family);
  EXPECT_EQ(names.router(3), "model.layers.3.mlp.router.weight");
  EXPECT_EQ(names.router_logit_bias(3), "model.layers.3.mlp.router.bias");
  EXPECT_EQ(names.stacked(3, Proj::Up), "model.layers.3.mlp.experts.gate_up_proj");
  EXPECT_EQ(names.stacked(3, Proj::Down), "model.layers.3.mlp.experts.down_proj");

  nlohmann::json j = gpt_oss_20b();  // without layer_types: transformers' alternation, sliding first
  j.erase("layer_types");
  ModelConfig d = parse_model_config(j, "c.json");
  EXPECT_EQ(d.window(0), 128);
  EXPECT_EQ(d.window(1), 0);
}

TEST(Config, Glm4Moe) {
  ModelConfig c = parse_model_config(glm4_6(), "c.json");
  EXPECT_EQ(c.family, Family::Glm4Moe);
  EXPECT_STREQ(c.experts_key(), "n_routed_experts");
  EXPECT_EQ(c.head_dim, 128);  // 5120 / 96 is not a whole number
  EXPECT_EQ(c.rope_dim(), 64);
  EXPECT_EQ(c.rope_layout, RopeLayout::Halves);
  EXPECT_EQ(c.qk_norm, QkNorm::PerHead);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_EQ(c.num_moe_layers(), 89);  // layers 0-2 dense
  EXPECT_FALSE(c.is_moe(2));
  EXPECT_EQ(c.shared_expert_intermediate_size, 1536);
  EXPECT_EQ(c.router.score, RouterScore::Sigmoid);
  EXPECT_EQ(c.router.group_score, GroupScore::TopTwoSum);
  EXPECT_TRUE(c.router.score_correction_bias);
  EXPECT_EQ(c.router.renormalise, Renormalise::PlusTiny);
  EXPECT_TRUE(c.router.float32_logits && c.router.float32_weights);
  EXPECT_DOUBLE_EQ(c.router.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_FALSE(c.mla.enabled());

  nlohmann::json air = glm4_6();  // GLM-4.5-Air: no q/k norm, one dense layer; no factor given: 0.5
  air["use_qk_norm"] = false;
  air["first_k_dense_replace"] = 1;
  air.erase("partial_rotary_factor");
  ModelConfig a = parse_model_config(air, "c.json");
  EXPECT_EQ(a.qk_norm, QkNorm::None);
  EXPECT_EQ(a.rope_dim(), 64);
  EXPECT_EQ(a.num_moe_layers(), 91);

  nlohmann::json v5 = glm4_6();  // transformers 5 moves the factor into rope_parameters
  v5.erase("partial_rotary_factor");
  v5["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000}, {"partial_rotary_factor", 0.25}};
  EXPECT_EQ(parse_model_config(v5, "c.json").rope_dim(), 32);
}

TEST(Config, MinimaxM2) {
  ModelConfig c = parse_model_config(minimax_m2(), "c.json");
  EXPECT_EQ(c.family, Family::MinimaxM2);
  EXPECT_STREQ(c.experts_key(), "num_local_experts");
  EXPECT_EQ(c.num_moe_layers(), 62);
  EXPECT_EQ(c.moe_intermediate_size, 1536);
  EXPECT_EQ(c.shared_expert_intermediate_size, 0);
  EXPECT_EQ(c.rope_dim(), 64);
  EXPECT_EQ(c.qk_norm, QkNorm::Projection);
  EXPECT_EQ(c.router.score, RouterScore::Sigmoid);
  EXPECT_TRUE(c.router.score_correction_bias);
  EXPECT_TRUE(c.router.norm_topk_prob);
  EXPECT_EQ(c.router.renormalise, Renormalise::Plain);
  EXPECT_FALSE(c.router.float32_logits || c.router.float32_weights);
  EXPECT_EQ(c.router.n_group, 1);
  EXPECT_DOUBLE_EQ(c.router.routed_scaling_factor, 1.0);
  EXPECT_TRUE(c.fp8);
  const TensorNames names(c.family);
  EXPECT_EQ(names.router(4), "model.layers.4.block_sparse_moe.gate.weight");
  EXPECT_EQ(names.router_bias(4), "model.layers.4.block_sparse_moe.e_score_correction_bias");
  EXPECT_EQ(names.expert(4, 9, Proj::Up), "model.layers.4.block_sparse_moe.experts.9.w3.weight");
}

TEST(Config, Ernie45Moe) {
  ModelConfig c = parse_model_config(ernie4_5(), "c.json");
  EXPECT_EQ(c.family, Family::Ernie45Moe);
  EXPECT_STREQ(c.experts_key(), "moe_num_experts");
  EXPECT_STREQ(c.top_k_key(), "moe_k");
  EXPECT_EQ(c.router.top_k, 6);
  EXPECT_EQ(c.num_moe_layers(), 27);
  EXPECT_FALSE(c.is_moe(0));
  EXPECT_EQ(c.shared_expert_intermediate_size, 3072);
  EXPECT_EQ(c.rope_layout, RopeLayout::Interleaved);
  EXPECT_TRUE(c.rope_float32);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.router.score, RouterScore::Softmax);
  EXPECT_TRUE(c.router.score_correction_bias);
  EXPECT_EQ(c.router.renormalise, Renormalise::ClampMin);
  EXPECT_DOUBLE_EQ(c.router.norm_min, 1e-12);
  EXPECT_TRUE(c.router.float32_logits);
  EXPECT_FALSE(c.router.float32_weights);
  const TensorNames names(c.family);
  EXPECT_EQ(names.router_bias(1), "model.layers.1.mlp.moe_statics.e_score_correction_bias");
  EXPECT_EQ(names.shared_expert(1), "model.layers.1.mlp.shared_experts.");

  nlohmann::json j = ernie4_5();  // every other layer from 3, end -1: the last layer
  j["moe_layer_start_index"] = 3;
  j["moe_layer_end_index"] = -1;
  j["moe_layer_interval"] = 2;
  ModelConfig odd = parse_model_config(j, "c.json");
  EXPECT_FALSE(odd.is_moe(2));
  EXPECT_TRUE(odd.is_moe(3));
  EXPECT_FALSE(odd.is_moe(4));
  EXPECT_TRUE(odd.is_moe(27));
  EXPECT_EQ(odd.num_moe_layers(), 13);
}

TEST(ConfigMalformed, NewFamiliesFaultsNamed) {
  struct Case {
    nlohmann::json (*config)();
    const char* key;
    nlohmann::json value;
    const char* fault;
  } cases[] = {
      {glm4_6, "n_group", 3, "n_routed_experts (160) must be a positive multiple of n_group (3)"},
      {glm4_6, "partial_rotary_factor", 0, "'partial_rotary_factor' must lie in (0, 1]"},
      {glm4_6, "partial_rotary_factor", 0.01, "the rotary part of a head (1) must be even"},
      {glm4_6, "first_k_dense_replace", -1, "'first_k_dense_replace' must not be negative"},
      {minimax_m2, "rotary_dim", 256, "'rotary_dim' (256) must lie in 1..head_dim (128)"},
      {minimax_m2, "rotary_dim", 63, "the rotary part of a head (63) must be even"},
      {minimax_m2, "qk_norm_type", "per_head", "qk_norm_type 'per_head' is not supported"},
      {minimax_m2, "scoring_func", "softmax", "scoring_func 'softmax' is not supported for minimax_m2"},
      {minimax_m2, "shared_intermediate_size", 512, "'shared_intermediate_size' must be 0"},
      {minimax_m2, "num_local_experts", nullptr, "missing required key 'num_local_experts'"},
      {ernie4_5, "moe_layer_interval", 0, "'moe_layer_interval' must be positive"},
      {ernie4_5, "moe_layer_start_index", 40, "leave no MoE layer"},
      {ernie4_5, "moe_norm_min", 0, "'moe_norm_min' must be positive"},
      {ernie4_5, "use_bias", true, "use_bias is not supported for ernie4_5_moe"},
      {ernie4_5, "moe_k", 65, "moe_k (65) exceeds the 64 experts of layer 1"},
      {ernie4_5, "moe_num_shared_experts", -2, "'moe_num_shared_experts' must not be negative"},
      {gpt_oss_20b, "layer_types", nlohmann::json::array({"full_attention"}),
       "'layer_types' must list one type for each of the 24 layers, found 1 entries"},
      {gpt_oss_20b, "layer_types", std::vector<std::string>(24, "local"), "entries must be \"sliding_attention\""},
      {gpt_oss_20b, "quantization_config", nlohmann::json{{"quant_method", "fp8"}},
       "quant_method 'fp8' is not supported for gpt_oss (mxfp4)"},
      {gpt_oss_20b, "intermediate_size", 2881, "to be multiples of 32"},
      {gpt_oss_20b, "swiglu_limit", -1, "'swiglu_limit' must be positive"},
  };
  for (const auto& c : cases) {
    nlohmann::json j = with_key(c.config(), c.key, c.value);
    std::string msg = error_of(j);
    EXPECT_NE(msg.find(c.fault), std::string::npos) << c.key << ": " << msg;
  }
}

TEST(ConfigMalformed, MissingFileAndBadJson) {
  try {
    read_model_config("/nonexistent/model");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model/config.json: cannot open"), std::string::npos);
  }
}

}  // namespace
TEST(TensorNames, EveryFamilyNamesItsTensors) {
  const TensorNames mixtral(Family::Mixtral), qwen(Family::Qwen2Moe), deepseek(Family::DeepseekV3);
  EXPECT_EQ(TensorNames::embed(), "model.embed_tokens.weight");
  EXPECT_EQ(TensorNames::attention(2, "q_proj.weight"), "model.layers.2.self_attn.q_proj.weight");
  EXPECT_EQ(mixtral.router(0), "model.layers.0.block_sparse_moe.gate.weight");
  EXPECT_EQ(mixtral.expert(0, 7, Proj::Gate), "model.layers.0.block_sparse_moe.experts.7.w1.weight");
  EXPECT_EQ(mixtral.expert(0, 7, Proj::Up), "model.layers.0.block_sparse_moe.experts.7.w3.weight");
  EXPECT_EQ(mixtral.expert(0, 7, Proj::Down), "model.layers.0.block_sparse_moe.experts.7.w2.weight");
  EXPECT_EQ(qwen.expert(5, 0, Proj::Up), "model.layers.5.mlp.experts.0.up_proj.weight");
  EXPECT_EQ(qwen.shared_expert(5), "model.layers.5.mlp.shared_expert.");
  EXPECT_EQ(qwen.shared_expert_gate(5), "model.layers.5.mlp.shared_expert_gate.weight");
  EXPECT_EQ(deepseek.router_bias(4), "model.layers.4.mlp.gate.e_score_correction_bias");
  EXPECT_EQ(TensorNames::dense_mlp(1) + TensorNames::dense_weight(Proj::Down), "model.layers.1.mlp.down_proj.weight");
  EXPECT_EQ(TensorNames::layer_of("model.layers.12.mlp.gate.weight"), 12);
  EXPECT_EQ(TensorNames::layer_of("lm_head.weight"), -1);
  EXPECT_THROW(TensorNames::layer_of("model.layers.x.mlp"), InputError);
}

}  // namespace smoe
