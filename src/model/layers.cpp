#include "smoe/model/layers.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace smoe {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, true);
  xf = xf * at::rsqrt(var + eps);
  return weight * xf.to(x.scalar_type());
}

RopeTables rope_tables(int64_t seq_len, int64_t head_dim, double theta, at::ScalarType dtype, at::Device device) {
  at::Tensor exponent = at::arange(0, head_dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(head_dim);
  at::Tensor inv_freq = 1.0 / at::pow(theta, exponent);
  at::Tensor pos = at::arange(seq_len, at::kLong).to(at::kFloat);
  at::Tensor freqs = at::outer(pos, inv_freq);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos().to(device, dtype), emb.sin().to(device, dtype)};
}

namespace {

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x: [B, H, S, D]
at::Tensor apply_rope(const at::Tensor& x, const RopeTables& rope) {
  return x * rope.cos + rotate_half(x) * rope.sin;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

}  // namespace

at::Tensor attention(const ModelConfig& c, const AttentionWeights& w, const at::Tensor& x, const RopeTables& rope) {
  const int64_t B = x.size(0), S = x.size(1);
  const int64_t H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
  at::Tensor q = linear(x, w.q_proj, w.q_bias);
  at::Tensor k = linear(x, w.k_proj, w.k_bias);
  at::Tensor v = linear(x, w.v_proj, w.v_bias);
  if (c.qk_norm == QkNorm::Projection) {
    q = rms_norm(q, w.q_norm, c.rms_norm_eps);
    k = rms_norm(k, w.k_norm, c.rms_norm_eps);
  }
  if (c.clip_qkv > 0) {
    q = q.clamp(-c.clip_qkv, c.clip_qkv);
    k = k.clamp(-c.clip_qkv, c.clip_qkv);
    v = v.clamp(-c.clip_qkv, c.clip_qkv);
  }
  q = q.view({B, S, H, D});
  k = k.view({B, S, Hkv, D});
  v = v.view({B, S, Hkv, D});
  if (c.qk_norm == QkNorm::PerHead) {
    q = rms_norm(q, w.q_norm, c.rms_norm_eps);
    k = rms_norm(k, w.k_norm, c.rms_norm_eps);
  }
  q = apply_rope(q.transpose(1, 2), rope);
  k = apply_rope(k.transpose(1, 2), rope);
  v = v.transpose(1, 2);
  if (Hkv != H) {
    // Query head h reads key/value head h / (H / Hkv).
    const int64_t rep = H / Hkv;
    k = k.unsqueeze(2).expand({B, Hkv, rep, S, D}).reshape({B, H, S, D});
    v = v.unsqueeze(2).expand({B, Hkv, rep, S, D}).reshape({B, H, S, D});
  }
  at::Tensor scores = at::matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(static_cast<double>(D)));
  // Position i sees j <= i (and, with a sliding window, i - j < window).
  at::Tensor idx = at::arange(S, at::TensorOptions().dtype(at::kLong).device(x.device()));
  at::Tensor masked = idx.unsqueeze(0) > idx.unsqueeze(1);
  if (c.sliding_window > 0) masked = masked.logical_or(idx.unsqueeze(1) - idx.unsqueeze(0) >= c.sliding_window);
  scores = scores.masked_fill(masked, -std::numeric_limits<double>::infinity());
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  at::Tensor out = at::matmul(probs, v).transpose(1, 2).reshape({B, S, H * D});
  return at::linear(out, w.o_proj);
}

at::Tensor gated_mlp(const GatedMlp& mlp, const at::Tensor& x) {
  return at::linear(at::silu(at::linear(x, mlp.gate_proj)) * at::linear(x, mlp.up_proj), mlp.down_proj);
}

}  // namespace smoe
