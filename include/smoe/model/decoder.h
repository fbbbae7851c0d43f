// The decoder-only SMoE transformer, built from a checkpoint. The same code runs
// whether MoE layers execute locally or expert-parallel: the caller passes the
// MoeExecutor, and which experts this process loads.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <string>
#include <optional>
#include <vector>

#include "smoe/core/choices.h"
#include "smoe/model/config.h"
#include "smoe/model/layers.h"
#include "smoe/model/moe.h"

namespace smoe {

class Checkpoint;

// The ATen dtype of a --dtype choice.
inline at::ScalarType scalar_type(ComputeDtype d) { return d == ComputeDtype::F32 ? at::kFloat : at::kBFloat16; }

struct DecoderOptions {
  at::ScalarType dtype;  // compute dtype: float32 or bfloat16
  at::Device device;     // where weights live and the forward pass runs
  // Which routed experts this process loads; all when empty.
  std::function<bool(int64_t layer, int64_t expert)> holds_expert;
  // Load every layer now; false leaves them to load_layer() (the layerwise schedule).
  bool load_layers = true;
  // Load the output head (final norm and lm_head); jobs that need no logits skip it.
  bool load_head = true;
  // Own every weight (no views of the mapped file), so they can be trained in place.
  bool trainable = false;
};

// Expert e of gpt-oss layer l (of E experts), from the stacked tensors: gate_up
// [2F, d] (MXFP4 blocks and scales, or [E, d, 2F] in BF16 checkpoints) with gate
// and up interleaved by row, down [d, F], their biases, as `dtype`.
GatedMlp load_stacked_expert(const Checkpoint& checkpoint, int64_t l, int64_t E, int64_t e, at::ScalarType dtype);

// Every layer's keys and values so far, for generation: a forward pass given a
// cache runs only the tokens after those it has seen, at their positions.
struct DecoderCache {
  std::vector<KvCache> layers;
  int64_t length() const { return layers.empty() ? 0 : layers.front().length(); }
};

class Decoder {
 public:
  // From a checkpoint on disk, which must outlive the decoder.
  Decoder(const Checkpoint& checkpoint, const DecoderOptions& options);
  // From tensors in memory under their checkpoint names (model/tensor-names.h),
  // for example a model about to be trained; every layer is loaded at once
  // (load_layers), and the map is let go. InputError naming a missing tensor or
  // one whose shape differs from what the config implies.
  Decoder(const ModelConfig& config, std::map<std::string, at::Tensor> tensors, const DecoderOptions& options);

  // Loads one layer's weights (this process's experts only); release_layer frees
  // them and returns their mapped pages to the OS. For the layerwise schedule.
  void load_layer(int64_t layer);
  void release_layer(int64_t layer);

  // The forward pass in parts: embed -> apply_layer for each layer -> head.
  at::Tensor embed(const at::Tensor& tokens) const;  // [B, S] -> [B, S, d]
  at::Tensor apply_layer(int64_t layer, const at::Tensor& h, MoeExecutor& executor,
                         RoutingObserver* observer = nullptr, KvCache* cache = nullptr) const;
  at::Tensor head(const at::Tensor& h) const;  // [B, S, d] -> logits [B, S, V] float32

  const ModelConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }

  // tokens: [B, S] int64 -> logits [B, S, V] float32.
  at::Tensor forward(const at::Tensor& tokens, MoeExecutor& executor, RoutingObserver* observer = nullptr) const;
  // tokens: [B, S] int64 -> the last layer's output [B, S, d], for head() on the
  // positions a caller needs; with a cache, the tokens follow those it holds.
  at::Tensor hidden_states(const at::Tensor& tokens, MoeExecutor& executor, RoutingObserver* observer = nullptr,
                           DecoderCache* cache = nullptr) const;

  // nullptr for a dense layer.
  const MoeLayer* moe_layer(int64_t layer) const;
  // Every weight this process holds, under its checkpoint name (a tied lm_head
  // appears once, as the embedding). The tensors are the decoder's own.
  const std::map<std::string, at::Tensor>& named_parameters() const { return named_; }

  // Bytes of all parameters this process holds.
  uint64_t parameter_bytes() const;

 private:
  struct Layer {
    bool loaded = false;
    at::Tensor input_norm, post_attention_norm;
    AttentionWeights attention;
    GatedMlp mlp;                 // dense layers
    std::optional<MoeLayer> moe;  // MoE layers
  };

  void load_head_and_layers();

  const Checkpoint* checkpoint_ = nullptr;        // the weights: on disk,
  std::map<std::string, at::Tensor> in_memory_;  // or in memory
  DecoderOptions options_;
  ModelConfig config_;
  at::ScalarType dtype_;
  at::Device device_;
  at::Tensor embed_tokens, final_norm, lm_head;
  std::vector<Layer> layers_;
  std::map<std::string, at::Tensor> named_;
};

}  // namespace smoe
