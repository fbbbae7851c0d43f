#include "smoe/model/router.h"

#include <ATen/ATen.h>

#include "smoe/core/error.h"
#include "smoe/model/layers.h"

namespace smoe {

Routing route(const RouterConfig& config, const at::Tensor& x, const at::Tensor& router, const at::Tensor& score_bias) {
  Routing r;
  // Logits in the compute dtype, as the HF modules compute them; scores in float32.
  at::Tensor logits = dense(x, router);
  r.logits = logits.to(at::kFloat);
  r.scores = config.score == RouterScore::Softmax ? at::softmax(r.logits, -1) : at::sigmoid(r.logits);

  at::Tensor choice = score_bias.defined() ? r.scores + score_bias.to(at::kFloat) : r.scores;
  // Group-limited selection (n_group > 1) arrives with the DeepSeek family.
  SMOE_ASSERT(config.n_group == 1, "group-limited routing is not implemented");
  r.experts = std::get<1>(choice.topk(config.top_k, -1));
  at::Tensor w = r.scores.gather(1, r.experts);
  if (config.norm_topk_prob) w = w / (w.sum(-1, true) + (config.score == RouterScore::Sigmoid ? 1e-20 : 0.0));
  if (config.routed_scaling_factor != 1.0) w = w * config.routed_scaling_factor;
  r.weights = w.to(x.scalar_type());
  return r;
}

}  // namespace smoe
