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
#include "smoe/stats/schema.h"

namespace smoe {

class Communicator;

// A layer's state for collect's working file (every field, hidden_sample padded
// to `sample_size` rows so that every rank writes the same shapes), and back.
std::vector<std::pair<std::string, at::Tensor>> layer_state(const LayerStats& s, int64_t sample_size);
void load_layer_state(LayerStats& s, const std::map<std::string, at::Tensor>& state);

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
  // the totals, out_mean is a mean, and the sample is the `sample_size` lowest
  // keys over all ranks.
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
