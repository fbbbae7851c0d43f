// An MoE layer's weights, and the two interfaces the decoder calls for it:
//  - MoeExecutor runs the routed experts (here locally; expert-parallel in parallel/);
//  - RoutingObserver sees the layer's routing and expert outputs (stats/ uses it).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "smoe/model/layers.h"
#include "smoe/model/router.h"

namespace smoe {

struct MoeLayer {
  int64_t layer = 0;        // index of the decoder layer
  int64_t num_experts = 0;
  at::Tensor router;        // [E, d]
  at::Tensor router_bias;   // [E], added to the logits (gpt-oss); undefined for most families
  at::Tensor score_bias;    // [E], selection-only bias; undefined for most families
  std::vector<GatedMlp> experts;  // E entries; an entry is undefined where this process does not hold it
  GatedMlp shared;          // undefined without a shared expert
  at::Tensor shared_gate;   // [1, d]: sigmoid(shared_gate x) scales the shared expert (Qwen2-MoE)
};

class RoutingObserver {
 public:
  virtual ~RoutingObserver() = default;
  // x: [T, d], the layer's normalised input; r: the routing of those T tokens.
  virtual void on_routing(const MoeLayer& layer, const at::Tensor& x, const Routing& r) {}
  // Expert `expert`'s outputs y: [n, d] for the routed slots `slots` (indices into
  // r.experts viewed as [T * k]; token = slot / k).
  virtual void on_expert_output(const MoeLayer& layer, int64_t expert, const at::Tensor& slots, const at::Tensor& y) {}
};

class MoeExecutor {
 public:
  virtual ~MoeExecutor() = default;
  // For each token t of x: [T, d], sum over its k choices of weight * expert(x_t). Returns [T, d].
  virtual at::Tensor run(const MoeLayer& layer, const at::Tensor& x, const Routing& r, RoutingObserver* observer) = 0;
};

// Runs every expert in this process, each on all of its tokens at once.
class LocalMoeExecutor : public MoeExecutor {
 public:
  at::Tensor run(const MoeLayer& layer, const at::Tensor& x, const Routing& r, RoutingObserver* observer) override;
};

// Groups the T*k routed slots by expert. order: slot ids sorted by expert
// (stable); counts[e]: slots of expert e.
struct ExpertBatches {
  at::Tensor order;
  std::vector<int64_t> counts;
};
ExpertBatches batch_by_expert(const at::Tensor& experts, int64_t num_experts);

}  // namespace smoe
