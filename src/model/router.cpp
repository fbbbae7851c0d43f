#include "smoe/model/router.h"

#include <ATen/ATen.h>

#include <limits>
#include <tuple>

#include "smoe/core/error.h"
#include "smoe/model/layers.h"

namespace smoe {

Routing route(const RouterConfig& config, const at::Tensor& x, const at::Tensor& router, const at::Tensor& score_bias,
              const at::Tensor& logit_bias) {
  // Logits in the compute dtype, as the HF modules compute them (DeepSeek, GLM, ERNIE:
  // from float32 operands); scores in float32.
  at::Tensor logits =
      config.float32_logits
          ? dense(x.to(at::kFloat), router.to(at::kFloat), logit_bias.defined() ? logit_bias.to(at::kFloat) : logit_bias)
          : dense(x, router, logit_bias);
  Routing r = route_logits(config, logits.to(at::kFloat), score_bias);
  if (!config.float32_weights) r.weights = r.weights.to(x.scalar_type());
  return r;
}

Routing route_logits(const RouterConfig& config, const at::Tensor& logits, const at::Tensor& score_bias) {
  Routing r;
  r.logits = logits;
  r.scores = config.score == RouterScore::Sigmoid ? at::sigmoid(r.logits) : at::softmax(r.logits, -1);
  if (config.score == RouterScore::SoftmaxOfTopK) {
    // gpt-oss: the k largest logits, their softmax the weights (the scores are the
    // softmax over all experts, for the statistics).
    at::Tensor top;
    std::tie(top, r.experts) = r.logits.topk(config.top_k, -1);
    r.weights = at::softmax(top, -1);
    return r;
  }

  at::Tensor choice = score_bias.defined() ? r.scores + score_bias.to(r.scores.scalar_type()) : r.scores;
  if (config.n_group > 1) {
    // Keep the topk_group best groups; experts of the others cannot be chosen.
    const int64_t T = choice.size(0), E = choice.size(1), G = config.n_group;
    at::Tensor grouped = choice.view({T, G, E / G});
    at::Tensor group_scores = config.group_score == GroupScore::Max ? std::get<0>(grouped.max(-1))
                                                                     : std::get<0>(grouped.topk(2, -1)).sum(-1);
    at::Tensor best = std::get<1>(group_scores.topk(config.topk_group, -1));
    at::Tensor keep = at::zeros({T, G}, choice.options().dtype(at::kBool)).scatter_(1, best, true);
    keep = keep.unsqueeze(-1).expand({T, G, E / G}).reshape({T, E});
    choice = choice.masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
  }
  r.experts = std::get<1>(choice.topk(config.top_k, -1));
  at::Tensor w = r.scores.gather(1, r.experts);
  const bool normalise = config.norm_topk_prob && !(config.scale_only_unnormalised && config.top_k == 1);
  if (normalise) {
    at::Tensor sum = w.sum(-1, true);
    switch (config.renormalise) {
      case Renormalise::Plain: w = w / sum; break;
      case Renormalise::PlusTiny: w = w / (sum + 1e-20); break;
      case Renormalise::ClampMin: w = w / sum.clamp_min(config.norm_min); break;
    }
  }
  if (config.routed_scaling_factor != 1.0 && !(normalise && config.scale_only_unnormalised))
    w = w * config.routed_scaling_factor;
  r.weights = w;
  return r;
}

}  // namespace smoe
