// Routing statistics (DESIGN.md §6): a RoutingObserver that accumulates, per MoE
// layer, what every pruning method needs. Counters are int64, sums float64, on
// the CPU, whatever the compute device.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "smoe/model/moe.h"

namespace smoe {

class Communicator;

struct LayerStats {
  int64_t num_experts = 0;
  int64_t tokens = 0;
  at::Tensor count;         // [E] int64: top-k selections
  at::Tensor gate_sum;      // [E] float64: combine weights
  at::Tensor prob_sum;      // [E] float64: router scores of every expert (soft counts)
  at::Tensor coact;         // [E, E] int64: chosen together for a token (diagonal = count)
  at::Tensor logit_sum;     // [E] float64
  at::Tensor logit_gram;    // [E, E] float64: sum of z z^T over router logits z
  at::Tensor act_norm_sum;  // [E] float64: sum of ||f_e(x)|| over routed tokens
  at::Tensor reap_sum;      // [E] float64: sum of g_e(x) ||f_e(x)|| over routed tokens
  at::Tensor out_sum;       // [E, d] float64: sum of f_e(x) over all tokens (optional)
  at::Tensor sample_keys;   // [n] int64: keys of the sampled tokens, ascending (optional)
  at::Tensor sample;        // [n, d] float32: the layer inputs of those tokens

  // Named tensors for checkpoints, sample padded to `sample_size` rows.
  std::vector<std::pair<std::string, at::Tensor>> state(int64_t sample_size) const;
  void load_state(const std::map<std::string, at::Tensor>& state);
};

struct CollectorOptions {
  bool out_mean = false;      // run every expert on every token (expensive)
  int64_t sample_size = 0;    // rows of hidden_sample per layer; 0: none
  uint64_t seed = 0;          // for the sample's token keys
};

class StatsCollector : public RoutingObserver {
 public:
  // `comm`: the communicator of the expert-parallel executor (for out_mean, which
  // needs every token at every expert's owner); nullptr in one process.
  StatsCollector(const ModelConfig& config, const CollectorOptions& options, Communicator* comm);

  // Identity of the next batch's tokens, row by row ([B * S]): the document index
  // and position of each; they fix the sample keys, the same for any rank count.
  void set_tokens(const at::Tensor& document, const at::Tensor& position);

  void on_routing(const MoeLayer& layer, const at::Tensor& x, const Routing& r) override;
  void on_expert_output(const MoeLayer& layer, int64_t expert, const at::Tensor& slots, const at::Tensor& y) override;

  std::map<int64_t, LayerStats>& layers() { return layers_; }
  const CollectorOptions& options() const { return options_; }

  // Sums every rank's statistics (host communicator); afterwards each rank holds
  // the totals, and the sample is the `sample_size` lowest keys over all ranks.
  void reduce(Communicator& host);

 private:
  CollectorOptions options_;
  Communicator* comm_;
  std::map<int64_t, LayerStats> layers_;
  at::Tensor keys_;     // [T] sample keys of the current batch
  at::Tensor weights_;  // [T * k] combine weights of the current layer's routing (float64)
};

// The sample key of a token: a 63-bit hash of (seed, document, position).
int64_t token_key(uint64_t seed, int64_t document, int64_t position);

}  // namespace smoe
