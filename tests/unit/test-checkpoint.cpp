// Checkpoint folders: single file and sharded, dtype conversion, and the faults a
// real folder can hold (missing shard, lying index, wrong shapes, bad config).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "smoe/core/error.h"
#include "smoe/io/fp8.h"
#include "smoe/model/checkpoint.h"
#include "smoe/model/decoder.h"
#include "tiny-model.h"

namespace smoe {
namespace {

using testing_util::tiny_mixtral_config;
using testing_util::tiny_mixtral_tensors;
using testing_util::write_tiny_mixtral;

std::string temp_dir(const std::string& name) {
  std::string d = testing::TempDir() + "smoe-ck-" + std::to_string(::getpid()) + "-" + name;
  std::filesystem::remove_all(d);
  return d;
}

std::string error_of(const std::string& dir) {
  try {
    Checkpoint ck(dir);
    Decoder dec(ck, {at::kFloat, at::kCPU, {}});
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// The FP8 decoder a GPU runs (tensor operations on the codes' device) against
// io/fp8.h's scalar one: every code, scales in partial blocks at both edges,
// the same float32 bits.
TEST(Fp8, TensorDecodeEqualsTheScalarDecoder) {
  const int64_t rows = 300, cols = 270, br = 128, bc = 128;
  at::Tensor codes = at::arange(rows * cols, at::kLong).remainder(256).to(at::kByte).view({rows, cols});
  codes = codes.index_select(1, at::randperm(cols, at::kLong));
  const at::Tensor scales = at::rand({3, 3}, at::kFloat) * 4 + 0.01;
  at::Tensor want = at::empty({rows, cols}, at::kFloat);
  dequantize_fp8_blocks(codes.data_ptr<uint8_t>(), rows, cols, scales.data_ptr<float>(), br, bc, want.data_ptr<float>());
  const at::Tensor got = dequantize_fp8(codes, scales, br, bc);
  EXPECT_TRUE(at::equal(got.view(at::kInt), want.view(at::kInt)));
}

// Splits the tiny model over two shards with an index.
void write_sharded(const std::string& dir, nlohmann::json* index_out = nullptr) {
  ::mkdir(dir.c_str(), 0755);
  write_json_file(dir + "/config.json", tiny_mixtral_config());
  auto tensors = tiny_mixtral_tensors(0);
  std::vector<std::pair<std::string, at::Tensor>> a, b;
  nlohmann::json map;
  for (size_t i = 0; i < tensors.size(); ++i) {
    bool first = i < tensors.size() / 2;
    (first ? a : b).push_back(tensors[i]);
    map[tensors[i].first] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  save_safetensors(dir + "/model-00001-of-00002.safetensors", a);
  save_safetensors(dir + "/model-00002-of-00002.safetensors", b);
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", map}};
  write_json_file(dir + "/model.safetensors.index.json", index);
  if (index_out) *index_out = index;
}

TEST(Checkpoint, SingleAndShardedGiveTheSameTensors) {
  std::string single = temp_dir("single"), sharded = temp_dir("sharded");
  write_tiny_mixtral(single);
  write_sharded(sharded);
  Checkpoint a(single), b(sharded);
  EXPECT_EQ(a.tensor_names(), b.tensor_names());
  for (const auto& name : a.tensor_names())
    EXPECT_TRUE(at::equal(a.load(name, at::kFloat), b.load(name, at::kFloat))) << name;
  EXPECT_EQ(a.total_bytes(), b.total_bytes());
}

TEST(Checkpoint, LoadsAsBf16AndChecksShapes) {
  std::string dir = temp_dir("dtype");
  write_tiny_mixtral(dir);
  Checkpoint ck(dir);
  at::Tensor f = ck.load("model.norm.weight", at::kFloat);
  at::Tensor h = ck.load("model.norm.weight", at::kBFloat16, {32});
  EXPECT_EQ(h.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(h, f.to(at::kBFloat16)));
  // F16 on disk converts to either compute dtype.
  const std::string f16 = dir + "/f16.safetensors";
  at::Tensor x = at::randn({3, 5});
  save_safetensors(f16, {{"x", x.to(at::kHalf)}});
  auto file = std::make_shared<const SafetensorsFile>(f16);
  at::Tensor back = tensor_from_file(file, file->info("x"), at::kFloat);
  EXPECT_TRUE(at::equal(back, x.to(at::kHalf).to(at::kFloat)));
  EXPECT_TRUE(at::allclose(back, x, 1e-3, 1e-3));
  try {
    ck.load("model.norm.weight", at::kFloat, {64});
    FAIL();
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("model.safetensors: tensor 'model.norm.weight' has shape [32]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("implies [64]"), std::string::npos) << msg;
  }
}

TEST(CheckpointMalformed, MissingTensor) {
  std::string dir = temp_dir("missing");
  ::mkdir(dir.c_str(), 0755);
  write_json_file(dir + "/config.json", tiny_mixtral_config());
  auto t = tiny_mixtral_tensors(0);
  t.erase(std::remove_if(t.begin(), t.end(), [](auto& p) { return p.first.find("experts.3.w2") != std::string::npos; }),
          t.end());
  save_safetensors(dir + "/model.safetensors", t);
  std::string msg = error_of(dir);
  EXPECT_NE(msg.find("no tensor 'model.layers.0.block_sparse_moe.experts.3.w2.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir), std::string::npos) << msg;
}

TEST(CheckpointMalformed, WrongShapeForConfig) {
  std::string dir = temp_dir("shape");
  write_tiny_mixtral(dir);
  nlohmann::json c = tiny_mixtral_config();
  c["intermediate_size"] = 64;  // the experts on disk have 48
  write_json_file(dir + "/config.json", c);
  std::string msg = error_of(dir);
  EXPECT_NE(msg.find("w1.weight' has shape [48, 32]"), std::string::npos) << msg;
}

TEST(CheckpointMalformed, IndexNamesMissingShard) {
  std::string dir = temp_dir("noshard");
  write_sharded(dir);
  std::remove((dir + "/model-00002-of-00002.safetensors").c_str());
  std::string msg = error_of(dir);
  EXPECT_NE(msg.find("model.safetensors.index.json: shard 'model-00002-of-00002.safetensors'"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("is missing"), std::string::npos) << msg;
}

TEST(CheckpointMalformed, IndexLiesAboutWhereATensorIs) {
  std::string dir = temp_dir("lying");
  nlohmann::json index;
  write_sharded(dir, &index);
  index["weight_map"]["lm_head.weight"] = "model-00002-of-00002.safetensors";
  index["weight_map"]["model.embed_tokens.weight"] = "model-00002-of-00002.safetensors";
  write_json_file(dir + "/model.safetensors.index.json", index);
  std::string msg = error_of(dir);
  EXPECT_NE(msg.find("is listed in shard 'model-00002-of-00002.safetensors', which does not hold it"),
            std::string::npos)
      << msg;
}

TEST(CheckpointMalformed, BadIndexJson) {
  std::string dir = temp_dir("badindex");
  write_sharded(dir);
  std::ofstream(dir + "/model.safetensors.index.json") << "{\"weight_map\": {";
  std::string msg = error_of(dir);
  EXPECT_NE(msg.find("model.safetensors.index.json: not valid JSON"), std::string::npos) << msg;
}

TEST(CheckpointMalformed, CorruptShard) {
  std::string dir = temp_dir("corrupt");
  write_tiny_mixtral(dir);
  ::truncate((dir + "/model.safetensors").c_str(), 5000);
  std::string msg = error_of(dir);
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(CheckpointMalformed, BadConfigJson) {
  std::string dir = temp_dir("badconfig");
  write_tiny_mixtral(dir);
  std::ofstream(dir + "/config.json") << "{\"model_type\": \"mixtral\", \"vocab_size\": }";
  std::string msg = error_of(dir);
  EXPECT_NE(msg.find("config.json: not valid JSON"), std::string::npos) << msg;
  nlohmann::json c = tiny_mixtral_config();
  c.erase("num_local_experts");
  write_json_file(dir + "/config.json", c);
  msg = error_of(dir);
  EXPECT_NE(msg.find("config.json: missing required key 'num_local_experts'"), std::string::npos) << msg;
}

TEST(CheckpointMalformed, NoWeights) {
  std::string dir = temp_dir("noweights");
  ::mkdir(dir.c_str(), 0755);
  write_json_file(dir + "/config.json", tiny_mixtral_config());
  std::string msg = error_of(dir);
  EXPECT_NE(msg.find("holds neither model.safetensors nor model.safetensors.index.json"), std::string::npos) << msg;
  EXPECT_NE(error_of(dir + "/nothing-here").find("not a checkpoint folder"), std::string::npos);
}

}  // namespace
}  // namespace smoe
