// What a model needs to run under smoe, from its config.json alone: parameter
// counts and bytes, memory per rank for P ranks and either collect schedule,
// all-to-all volume per token, and a time estimate on a named GPU cluster.
// Torch-free; `smoe plan-resources` prints it (docs/scale.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "smoe/model/config.h"

namespace smoe {

struct ParameterCounts {
  double embed = 0, lm_head = 0;
  double attention = 0;       // every layer's attention, with its norms
  double dense_mlp = 0;       // the dense layers' MLPs
  double routed_experts = 0;  // every MoE layer's routed experts
  double shared_experts = 0;
  double router = 0;          // router rows and selection biases
  double norms = 0;           // input/post-attention norms and the final norm
  double per_expert = 0;      // one routed expert
  double mtp = 0;             // multi-token-prediction layers stored after the others (never loaded)
  double total() const;       // everything loaded (not the MTP layers)
  double active_per_token = 0;  // parameters one token passes through, without embedding and head
};

ParameterCounts count_parameters(const ModelConfig& c);

// Bytes of the checkpoint on disk: FP8 projections (1 byte + a float32 scale per
// block) where the config names fp8, else `weight_bytes` per parameter.
double checkpoint_bytes(const ModelConfig& c, double weight_bytes);

struct ClusterSpec {
  std::string gpu = "h100";
  double peak_flops = 989e12;   // dense BF16 per GPU
  double memory_bytes = 80e9;
  double mfu = 0.35;            // fraction of peak the forward pass reaches
  int gpus_per_node = 8;
  double intra_node_bytes_per_s = 450e9;  // NVLink, per GPU and direction
  double inter_node_bytes_per_s = 50e9;   // InfiniBand NDR 400 Gb/s, per GPU
};
// h100, h200, a100, b200 or mi300x; InputError for another name.
ClusterSpec cluster_preset(const std::string& gpu);

struct ResourcePlan {
  int ranks = 1;
  bool layerwise = false;
  double compute_bytes = 2;   // per parameter and activation element (bf16)
  ParameterCounts params;
  double disk_bytes = 0;
  // Per rank, bytes.
  double replicated_weights = 0;  // embedding, attention, dense MLPs, routers, shared experts, norms (all layers)
  double expert_weights = 0;      // this rank's routed experts (all layers; the busiest rank)
  double resident_weights = 0;    // what the schedule holds at once
  double activations = 0;         // one step: hidden states, attention scores, exchange buffers
  double held_hidden = 0;         // layerwise: hidden states of the rank's share of the corpus
  double dequant_scratch = 0;     // FP8: the largest tensor in float32 while it is dequantised
  double total_per_rank() const { return resident_weights + activations + held_hidden + dequant_scratch; }
  // All-to-all, bytes per token over every MoE layer (there and back), and the remote share.
  double exchange_bytes_per_token = 0;
  double flops_per_token = 0;
  // Estimate for `tokens`, seconds.
  double tokens = 0;
  double compute_seconds = 0, exchange_seconds = 0;
  double total_seconds() const { return compute_seconds + exchange_seconds; }
};

// tokens: corpus size; context, batch: collect's --context and --batch.
ResourcePlan plan_resources(const ModelConfig& c, int ranks, bool layerwise, double tokens, int64_t context,
                            int64_t batch, const ClusterSpec& cluster);

}  // namespace smoe
