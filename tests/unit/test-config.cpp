// config.json parsing: each family's semantics, and bad configs rejected with the
// file and key named.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/model/config.h"

namespace smoe {
namespace {

nlohmann::json mixtral() {
  return {{"model_type", "mixtral"}, {"vocab_size", 300},       {"hidden_size", 64},
          {"num_hidden_layers", 2},  {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"intermediate_size", 96}, {"num_local_experts", 8},   {"num_experts_per_tok", 2},
          {"rms_norm_eps", 1e-5},    {"rope_theta", 1e6},        {"sliding_window", nullptr}};
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
  EXPECT_STREQ(c.layout().moe, "block_sparse_moe.");
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
      {"num_key_value_heads", 3, "must be a multiple of num_key_value_heads"},
      {"num_experts_per_tok", 9, "exceeds the 8 experts of layer 0"},
      {"num_local_experts", -2, "'num_local_experts' must be positive"},
      {"rms_norm_eps", "tiny", "'rms_norm_eps' must be a number"},
      {"hidden_size", 66, "not a multiple of num_attention_heads"},
      {"rope_scaling", nlohmann::json{{"type", "yarn"}, {"factor", 4}}, "rope_scaling type 'yarn' is not supported"},
  };
  for (const auto& c : cases) {
    nlohmann::json j = mixtral();
    if (c.value.is_null())
      j.erase(c.key);
    else
      j[c.key] = c.value;
    std::string msg = error_of(j);
    EXPECT_NE(msg.find(c.fault), std::string::npos) << c.key << ": " << msg;
  }
  EXPECT_NE(error_of(nlohmann::json::array()).find("must be a JSON object"), std::string::npos);
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
}  // namespace smoe
