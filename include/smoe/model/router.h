// The router of an MoE layer: scores every expert for every token and picks the
// top-k with their combine weights, by the family's rule.
#pragma once

#include <ATen/core/Tensor.h>

#include "smoe/model/config.h"

namespace smoe {

struct Routing {
  at::Tensor logits;   // [T, E] router logits, float32
  at::Tensor scores;   // [T, E] softmax (or sigmoid) of the logits, float32
  at::Tensor experts;  // [T, k] chosen experts, int64, best first
  at::Tensor weights;  // [T, k] combine weights, in the compute dtype (float32 where config.float32_weights)
};

// x: [T, d] in the compute dtype; router: [E, d]; score_bias: [E] or undefined
// (used for selection only, as DeepSeek-V3's e_score_correction_bias); logit_bias:
// [E] or undefined (added to the logits, gpt-oss).
Routing route(const RouterConfig& config, const at::Tensor& x, const at::Tensor& router, const at::Tensor& score_bias,
              const at::Tensor& logit_bias = {});

// The same rule from router logits [T, E] already computed (float32 or float64):
// scores, selection, weights in the logits' dtype.
Routing route_logits(const RouterConfig& config, const at::Tensor& logits, const at::Tensor& score_bias);

}  // namespace smoe
