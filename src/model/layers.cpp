#include "smoe/model/layers.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "smoe/core/error.h"
#include "smoe/model/gemm.h"

namespace smoe {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps, bool weight_float32) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, true);
  xf = xf * at::rsqrt(var + eps);
  if (weight_float32) return (weight.to(at::kFloat) * xf).to(x.scalar_type());
  return weight * xf.to(x.scalar_type());
}

at::Tensor rope_inv_freq(const ModelConfig& c) {
  const int64_t dim = c.rope_dim();
  at::Tensor pos_freqs = at::pow(c.rope_theta, at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim));
  at::Tensor extrapolation = 1.0 / pos_freqs;
  if (!c.yarn.enabled) return extrapolation;
  // YaRN: frequencies below the correction range keep their value, those above
  // are divided by the factor, a linear ramp in between.
  const YarnScaling& y = c.yarn;
  auto correction_dim = [&](double rotations) {
    return static_cast<double>(dim) * std::log(y.original_max_position / (rotations * 2 * M_PI)) /
           (2 * std::log(c.rope_theta));
  };
  double low = correction_dim(y.beta_fast), high = correction_dim(y.beta_slow);
  if (y.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  at::Tensor ramp = ((at::arange(dim / 2, at::kLong).to(at::kFloat) - low) / (high - low)).clamp(0, 1);
  at::Tensor extrapolation_factor = 1 - ramp;
  at::Tensor interpolation = 1.0 / (y.factor * pos_freqs);
  return interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor;
}

RopeTables rope_tables(int64_t seq_len, const ModelConfig& c, at::ScalarType dtype, at::Device device) {
  at::Tensor inv_freq = rope_inv_freq(c);
  at::Tensor pos = at::arange(seq_len, at::kLong).to(at::kFloat);
  at::Tensor freqs = at::outer(pos, inv_freq);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos(), sin = emb.sin();
  if (c.yarn.enabled && c.yarn.attention_factor != 1.0) {
    cos = cos * c.yarn.attention_factor;
    sin = sin * c.yarn.attention_factor;
  }
  return {cos.to(device, dtype), sin.to(device, dtype)};
}

namespace {

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x: [B, H, S, D]; the tables' width is the rotated part (the first elements of each head).
at::Tensor apply_rope(const at::Tensor& x, const RopeTables& rope) {
  const int64_t r = rope.cos.size(-1), D = x.size(-1);
  if (r == D) return x * rope.cos + rotate_half(x) * rope.sin;
  at::Tensor rot = x.narrow(-1, 0, r);
  return at::cat({rot * rope.cos + rotate_half(rot) * rope.sin, x.narrow(-1, r, D - r)}, -1);
}

}  // namespace

namespace {

// The value of environment variable `name` if set: `first` or `second` (true for
// `first`), anything else an input error; nullopt when unset or empty.
std::optional<bool> env_choice(const char* name, const char* first, const char* second) {
  const char* value = std::getenv(name);
  if (!value || !*value) return std::nullopt;
  SMOE_CHECK_INPUT(std::strcmp(value, first) == 0 || std::strcmp(value, second) == 0, "environment variable ", name,
                   " must be '", first, "' or '", second, "', found '", value, "'");
  return std::strcmp(value, first) == 0;
}

}  // namespace

bool cpu_bf16_gemm_native() {
  static const bool native = [] {
    if (std::optional<bool> native = env_choice("SMOE_BF16_GEMM", "native", "f32")) return *native;
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

bool cpu_gemm_own() {
  static const bool own = [] {
    if (std::optional<bool> own = env_choice("SMOE_CPU_GEMM", "smoe", "torch")) {
      SMOE_CHECK_INPUT(!*own || gemm::available(), "SMOE_CPU_GEMM=smoe needs a CPU with AVX2 and FMA");
      return *own;
    }
    return gemm::available();
  }();
  return own;
}

namespace {

// x w^T through smoe's kernel (gemm.h): float32 x and w (w as it lies in the
// checkpoint), outside autograd. BF16 keeps the widened BLAS path, whose results
// the reference reproduces bit for bit. The x side is packed once (OwnRows) and
// may serve several weights.
struct OwnRows {
  at::Tensor packed;
  int64_t m = 0, k = 0;
  std::vector<int64_t> lead;  // x's leading dimensions
};

bool own_applies(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat && t.device().is_cpu() && cpu_gemm_own() &&
         !(at::GradMode::is_enabled() && t.requires_grad());
}

int64_t panels_of(int64_t m) { return (m + gemm::kPanelRows - 1) / gemm::kPanelRows; }

// Packs the rows of x [..., k]; nullopt where the kernel does not apply to x.
std::optional<OwnRows> own_rows(const at::Tensor& x) {
  if (!own_applies(x) || x.dim() < 1) return std::nullopt;
  OwnRows r;
  r.k = x.size(-1);
  r.lead = x.sizes().vec();
  r.lead.pop_back();
  at::Tensor x2 = x.reshape({-1, r.k});
  if (x2.stride(1) != 1 && x2.stride(0) != 1) x2 = x2.contiguous();  // row- and column-major pack alike
  r.m = x2.size(0);
  const float* xp = x2.data_ptr<float>();
  const int64_t rs = x2.stride(0), cs = x2.stride(1), m = r.m, k = r.k;
  r.packed = at::empty({gemm::packed_size(m, k)}, x2.options());  // CPU allocations are 64-byte aligned
  float* pp = r.packed.data_ptr<float>();
  at::parallel_for(0, panels_of(m), std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, k * gemm::kPanelRows)),
                   [&](int64_t p0, int64_t p1) { gemm::pack_rows(xp, rs, cs, m, k, pp, p0, p1); });
  return r;
}

// rows w^T, the columns split between LibTorch's threads; undefined where the
// kernel does not apply to w. `column_major` (2-D x only) returns y [m, n] laid
// out column by column, which a following dense() packs without transposing.
at::Tensor own_apply(const OwnRows& r, const at::Tensor& w, bool column_major = false) {
  if (!own_applies(w) || w.dim() != 2 || w.stride(1) != 1) return {};
  const int64_t n = w.size(0), m = r.m, k = r.k;
  SMOE_ASSERT(w.size(1) == k, "dense: x has ", k, " features, the weight takes ", w.size(1));
  SMOE_ASSERT(!column_major || r.lead.size() == 1, "dense: a column-major result needs a 2-D input");
  at::Tensor y = column_major ? at::empty({n, m}, r.packed.options()).t() : at::empty({m, n}, r.packed.options());
  const int64_t rs = y.stride(0), cs = y.stride(1);
  const float* pp = r.packed.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t ldw = w.stride(0);
  const int64_t blocks = (n + gemm::kColumnBlock - 1) / gemm::kColumnBlock;
  // A task of at least ~256k multiply-adds, so small products stay on one thread.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, m * k * gemm::kColumnBlock));
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    gemm::xwt(pp, m, k, wp, ldw, yp, rs, cs, b0 * gemm::kColumnBlock, std::min(n, b1 * gemm::kColumnBlock));
  });
  if (column_major) return y;
  std::vector<int64_t> shape = r.lead;
  shape.push_back(n);
  return y.view(shape);
}

at::Tensor own_dense(const at::Tensor& x, const at::Tensor& w) {
  if (!own_applies(w)) return {};
  std::optional<OwnRows> r = own_rows(x);
  return r ? own_apply(*r, w) : at::Tensor();
}

// a [..., m, k] @ b [..., k, n] with equal batch dimensions: one batch per task,
// each through the kernel on one thread (no synchronisation inside a product).
at::Tensor own_batch_matmul(const at::Tensor& a, const at::Tensor& b) {
  if (!own_applies(a) || !own_applies(b) || a.dim() < 3 || a.dim() != b.dim() ||
      a.sizes().slice(0, a.dim() - 2) != b.sizes().slice(0, b.dim() - 2) || a.size(-1) != b.size(-2))
    return {};
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  at::Tensor a3 = a.reshape({-1, m, k});
  if (a3.stride(2) != 1) a3 = a3.contiguous();
  at::Tensor w3 = b.transpose(-1, -2).reshape({-1, n, k});  // b^T: rows of k, as the kernel reads weights
  if (w3.stride(2) != 1) w3 = w3.contiguous();
  const int64_t batches = a3.size(0);
  at::Tensor y = at::empty({batches, m, n}, a.options());
  const float* ap = a3.data_ptr<float>();
  const float* wp = w3.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, batches, 1, [&](int64_t b0, int64_t b1) {
    at::Tensor packed = at::empty({gemm::packed_size(m, k)}, at::kFloat);
    float* pp = packed.data_ptr<float>();
    for (int64_t i = b0; i < b1; ++i) {
      gemm::pack_rows(ap + i * a3.stride(0), a3.stride(1), 1, m, k, pp, 0, panels_of(m));
      gemm::xwt(pp, m, k, wp + i * w3.stride(0), w3.stride(1), yp + i * m * n, n, 1, 0, n);
    }
  });
  std::vector<int64_t> shape = a.sizes().vec();
  shape.back() = n;
  return y.view(shape);
}

}  // namespace

at::Tensor dense(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (at::Tensor y = own_dense(x, w); y.defined()) return b.defined() ? y + b : y;
  if (widen(x)) {
    at::Tensor y = b.defined() ? at::linear(x.to(at::kFloat), w.to(at::kFloat), b.to(at::kFloat))
                               : at::linear(x.to(at::kFloat), w.to(at::kFloat));
    return y.to(at::kBFloat16);
  }
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

at::Tensor batch_matmul(const at::Tensor& a, const at::Tensor& b) {
  if (at::Tensor y = own_batch_matmul(a, b); y.defined()) return y;
  if (widen(a)) return at::matmul(a.to(at::kFloat), b.to(at::kFloat)).to(at::kBFloat16);
  return at::matmul(a, b);
}

namespace {

// The last S of T positions against all T: position i sees j <= i (and, with a
// sliding window, i - j < window).
at::Tensor causal_mask(int64_t window, int64_t S, int64_t T, at::Device device) {
  const auto opts = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor query = at::arange(T - S, T, opts).unsqueeze(1), key = at::arange(T, opts).unsqueeze(0);
  at::Tensor masked = key > query;
  if (window > 0) masked = masked.logical_or(query - key >= window);
  return masked;
}

// softmax(q k^T * scale + mask) v over q [B, H, S, *] and k, v [B, H, T, *] (the
// queries are the last S positions) -> [B, S, H * dv]. With sinks [H] (gpt-oss),
// each head's sink logit joins every row as one more column, the row's largest
// logit is subtracted, and the sink's share is dropped after the softmax, in the
// compute dtype as transformers does.
at::Tensor attend(const ModelConfig& c, int64_t window, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& sinks = {}) {
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), T = k.size(2);
  at::Tensor scores = batch_matmul(q, k.transpose(2, 3)) * c.attention_scale;
  scores = scores.masked_fill(causal_mask(window, S, T, q.device()), -std::numeric_limits<double>::infinity());
  at::Tensor probs;
  if (sinks.defined()) {
    at::Tensor all = at::cat({scores, sinks.to(scores.scalar_type()).view({1, H, 1, 1}).expand({B, H, S, 1})}, -1);
    all = all - std::get<0>(all.max(-1, true));
    probs = at::softmax(all, -1, at::kFloat).to(q.scalar_type()).narrow(-1, 0, T);
  } else {
    probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  }
  return batch_matmul(probs, v).transpose(1, 2).reshape({B, S, H * v.size(-1)});
}

// With a cache: the cached keys and values followed by the new ones, which the
// cache keeps; without one, the new ones.
std::pair<at::Tensor, at::Tensor> remember(KvCache* cache, at::Tensor k, at::Tensor v) {
  if (cache == nullptr) return {k, v};
  if (cache->k.defined()) {
    k = at::cat({cache->k, k}, 2);
    v = at::cat({cache->v, v}, 2);
  }
  cache->k = k;
  cache->v = v;
  return {k, v};
}

// DeepSeek's rotary layout (MLA): pairs (2i, 2i+1) rotate together. HF
// de-interleaves them to [evens | odds] and rotates halves; smoe does the same, so
// that q.k sums in HF's order.
at::Tensor rope_interleaved(const at::Tensor& x, const RopeTables& rope) {
  const auto sizes = x.sizes().vec();
  std::vector<int64_t> pairs(sizes.begin(), sizes.end() - 1);
  pairs.push_back(x.size(-1) / 2);
  pairs.push_back(2);
  return apply_rope(x.reshape(pairs).transpose(-1, -2).reshape(sizes), rope);
}

// ERNIE-4.5's rotary layout: pairs (2i, 2i+1) rotate in place, with each pair's
// frequency repeated twice, so that q.k sums over the head in its stored order.
at::Tensor rope_pairs(const at::Tensor& x, const RopeTables& rope) {
  const int64_t r = rope.cos.size(-1), D = x.size(-1);
  at::Tensor cos = rope.cos.narrow(-1, 0, r / 2).repeat_interleave(2, -1);
  at::Tensor sin = rope.sin.narrow(-1, 0, r / 2).repeat_interleave(2, -1);
  at::Tensor rot = x.narrow(-1, 0, r);
  std::vector<int64_t> pairs = rot.sizes().vec();
  pairs.back() = r / 2;
  pairs.push_back(2);
  at::Tensor split = rot.reshape(pairs);
  at::Tensor turned = at::stack({-split.select(-1, 1), split.select(-1, 0)}, -1).reshape(rot.sizes());
  at::Tensor out = rot * cos + turned * sin;
  return r == D ? out : at::cat({out, x.narrow(-1, r, D - r).to(out.scalar_type())}, -1);
}

// The latent norms are built without an eps in the HF modules: RMSNorm's default 1e-6.
constexpr double kLatentNormEps = 1e-6;

at::Tensor mla_attention(const ModelConfig& c, const AttentionWeights& w, const at::Tensor& x, const RopeTables& rope,
                         KvCache* cache) {
  const int64_t B = x.size(0), S = x.size(1), H = c.num_heads;
  const MlaConfig& m = c.mla;
  const int64_t dn = m.qk_nope_head_dim, dr = m.qk_rope_head_dim, dv = m.v_head_dim;
  at::Tensor q = w.q_proj.defined() ? dense(x, w.q_proj)
                                    : dense(rms_norm(dense(x, w.q_a_proj), w.q_a_norm, kLatentNormEps), w.q_b_proj);
  q = q.view({B, S, H, dn + dr}).transpose(1, 2);
  at::Tensor a = dense(x, w.kv_a_proj);  // [B, S, kv_lora_rank + dr]
  at::Tensor latent = a.narrow(-1, 0, m.kv_lora_rank);
  at::Tensor k_pe = a.narrow(-1, m.kv_lora_rank, dr).view({B, 1, S, dr});
  at::Tensor kv = dense(rms_norm(latent, w.kv_a_norm, kLatentNormEps), w.kv_b_proj).view({B, S, H, dn + dv}).transpose(1, 2);
  at::Tensor q_pe = rope_interleaved(q.narrow(-1, dn, dr), rope);
  k_pe = rope_interleaved(k_pe, rope).expand({B, H, S, dr});
  at::Tensor qs = at::cat({q.narrow(-1, 0, dn), q_pe}, -1);
  auto [ks, vs] = remember(cache, at::cat({kv.narrow(-1, 0, dn), k_pe}, -1), kv.narrow(-1, dn, dv));
  return dense(attend(c, 0, qs, ks, vs), w.o_proj);
}

}  // namespace

at::Tensor attention(const ModelConfig& c, int64_t layer, const AttentionWeights& w, const at::Tensor& x,
                     const RopeTables& rope, KvCache* cache) {
  if (c.mla.enabled()) return mla_attention(c, w, x, rope, cache);
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
  const bool interleaved = c.rope_layout == RopeLayout::Interleaved;
  // Float32 tables (rope_float32) rotate in float32; the result is cast back.
  q = (interleaved ? rope_pairs(q.transpose(1, 2), rope) : apply_rope(q.transpose(1, 2), rope)).to(x.scalar_type());
  k = (interleaved ? rope_pairs(k.transpose(1, 2), rope) : apply_rope(k.transpose(1, 2), rope)).to(x.scalar_type());
  std::tie(k, v) = remember(cache, k, v.transpose(1, 2));
  if (Hkv != H) {
    // Query head h reads key/value head h / (H / Hkv).
    const int64_t rep = H / Hkv, T = k.size(2);
    k = k.unsqueeze(2).expand({B, Hkv, rep, T, D}).reshape({B, H, T, D});
    v = v.unsqueeze(2).expand({B, Hkv, rep, T, D}).reshape({B, H, T, D});
  }
  return dense(attend(c, c.window(layer), q, k, v, w.sinks), w.o_proj, w.o_bias);
}

namespace {

// gpt-oss's expert: each bias added after its product (as transformers adds them),
// g = min(gate, l), u = clamp(up, -l, l), down((u + 1) * g * sigmoid(1.702 g)).
at::Tensor clamped_swiglu(const GatedMlp& mlp, const at::Tensor& x) {
  const double limit = mlp.swiglu_limit;
  at::Tensor gate = dense(x, mlp.gate_proj), up = dense(x, mlp.up_proj);
  if (mlp.gate_bias.defined()) gate = gate + mlp.gate_bias;
  if (mlp.up_bias.defined()) up = up + mlp.up_bias;
  gate = gate.clamp_max(limit);
  up = up.clamp(-limit, limit);
  at::Tensor y = dense((up + 1) * (gate * at::sigmoid(gate * 1.702)), mlp.down_proj);
  return mlp.down_bias.defined() ? y + mlp.down_bias : y;
}

}  // namespace

at::Tensor gated_mlp(const GatedMlp& mlp, const at::Tensor& x) {
  if (mlp.swiglu_limit > 0) return clamped_swiglu(mlp, x);
  // Through smoe's kernel the gate and up projections share one packing of x, and
  // (for 2-D x: the experts' token blocks) come out column-major, the layout in
  // which the down projection packs silu(gate) * up without a transpose.
  if (own_applies(mlp.gate_proj) && own_applies(mlp.up_proj))
    if (std::optional<OwnRows> r = own_rows(x)) {
      const bool column_major = x.dim() == 2;
      at::Tensor gate = own_apply(*r, mlp.gate_proj, column_major), up = own_apply(*r, mlp.up_proj, column_major);
      if (gate.defined() && up.defined()) return dense(at::silu(gate) * up, mlp.down_proj);
    }
  return dense(at::silu(dense(x, mlp.gate_proj)) * dense(x, mlp.up_proj), mlp.down_proj);
}

}  // namespace smoe
