#include "smoe/model/moe.h"

#include <ATen/ATen.h>

#include "smoe/core/error.h"

namespace smoe {

ExpertBatches batch_by_expert(const at::Tensor& experts, int64_t num_experts) {
  at::Tensor flat = experts.reshape({-1});
  ExpertBatches b;
  b.order = std::get<1>(at::sort(flat, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  at::Tensor counts = at::bincount(flat, {}, num_experts).to(at::kCPU, at::kLong).contiguous();
  const int64_t* c = counts.data_ptr<int64_t>();
  b.counts.assign(c, c + num_experts);
  return b;
}

at::Tensor LocalMoeExecutor::run(const MoeLayer& layer, const at::Tensor& x, const Routing& r,
                                 RoutingObserver* observer) {
  const int64_t k = r.experts.size(1);
  // Summed in the weights' dtype (float32 for DeepSeek, as HF does), returned in x's.
  at::Tensor out = at::zeros(x.sizes(), x.options().dtype(r.weights.scalar_type()));
  at::Tensor weights = r.weights.reshape({-1});
  ExpertBatches b = batch_by_expert(r.experts, layer.num_experts);
  int64_t offset = 0;
  for (int64_t e = 0; e < layer.num_experts; ++e) {
    const int64_t n = b.counts[static_cast<size_t>(e)];
    if (n == 0) continue;
    const GatedMlp& expert = layer.experts[static_cast<size_t>(e)];
    SMOE_ASSERT(expert.defined(), "layer ", layer.layer, " expert ", e, " is routed to but not loaded here");
    at::Tensor slots = b.order.narrow(0, offset, n);
    at::Tensor tokens = at::floor_divide(slots, k);
    at::Tensor y = gated_mlp(expert, x.index_select(0, tokens));
    if (observer) observer->on_expert_output(layer, e, slots, y);
    out.index_add_(0, tokens, y * weights.index_select(0, slots).unsqueeze(1));
    offset += n;
  }
  return out.to(x.scalar_type());
}

}  // namespace smoe
