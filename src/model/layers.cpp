#include "smoe/model/layers.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "smoe/core/error.h"

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

}  // namespace

bool cpu_bf16_gemm_native() {
  static const bool native = [] {
    const char* force = std::getenv("SMOE_BF16_GEMM");
    if (force && *force) {
      SMOE_CHECK_INPUT(std::strcmp(force, "native") == 0 || std::strcmp(force, "f32") == 0,
                       "environment variable SMOE_BF16_GEMM must be 'native' or 'f32', found '", force, "'");
      return std::strcmp(force, "native") == 0;
    }
    // LibTorch 1.13 hands BF16 GEMMs to oneDNN where AVX-512 BW/VL/DQ exist.
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
  }();
  return native;
}

namespace {

bool widen(const at::Tensor& x) {
  return x.scalar_type() == at::kBFloat16 && x.device().is_cpu() && !cpu_bf16_gemm_native();
}

}  // namespace

at::Tensor dense(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (widen(x)) {
    at::Tensor y = b.defined() ? at::linear(x.to(at::kFloat), w.to(at::kFloat), b.to(at::kFloat))
                               : at::linear(x.to(at::kFloat), w.to(at::kFloat));
    return y.to(at::kBFloat16);
  }
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

at::Tensor batch_matmul(const at::Tensor& a, const at::Tensor& b) {
  if (widen(a)) return at::matmul(a.to(at::kFloat), b.to(at::kFloat)).to(at::kBFloat16);
  return at::matmul(a, b);
}

at::Tensor attention(const ModelConfig& c, const AttentionWeights& w, const at::Tensor& x, const RopeTables& rope) {
  const int64_t B = x.size(0), S = x.size(1);
  const int64_t H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
  at::Tensor q = dense(x, w.q_proj, w.q_bias);
  at::Tensor k = dense(x, w.k_proj, w.k_bias);
  at::Tensor v = dense(x, w.v_proj, w.v_bias);
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
  at::Tensor scores = batch_matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(static_cast<double>(D)));
  // Position i sees j <= i (and, with a sliding window, i - j < window).
  at::Tensor idx = at::arange(S, at::TensorOptions().dtype(at::kLong).device(x.device()));
  at::Tensor masked = idx.unsqueeze(0) > idx.unsqueeze(1);
  if (c.sliding_window > 0) masked = masked.logical_or(idx.unsqueeze(1) - idx.unsqueeze(0) >= c.sliding_window);
  scores = scores.masked_fill(masked, -std::numeric_limits<double>::infinity());
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  at::Tensor out = batch_matmul(probs, v).transpose(1, 2).reshape({B, S, H * D});
  return dense(out, w.o_proj);
}

at::Tensor gated_mlp(const GatedMlp& mlp, const at::Tensor& x) {
  return dense(at::silu(dense(x, mlp.gate_proj)) * dense(x, mlp.up_proj), mlp.down_proj);
}

}  // namespace smoe
