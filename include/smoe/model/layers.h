// The dense building blocks of a decoder layer: RMSNorm, rotary embeddings,
// attention, the gated MLP. Numerics follow the Hugging Face modules: norms and
// softmax in float32, everything else in the compute dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include "smoe/model/config.h"

namespace smoe {

// x w^T (+ b), and a @ b batched: every matrix product of the model core goes
// through these two. BF16 on a CPU without BF16 GEMM instructions (LibTorch 1.13
// then falls back to a scalar loop, ~100x slower) runs as float32 GEMMs on the
// exactly widened operands, rounded back to BF16: the products are exact and the
// sums are float32, as in the hardware BF16 GEMMs. SMOE_BF16_GEMM=native or f32
// overrides the choice.
at::Tensor dense(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = {});
at::Tensor batch_matmul(const at::Tensor& a, const at::Tensor& b);
// Whether BF16 matrix products on the CPU run through LibTorch's own kernels.
bool cpu_bf16_gemm_native();
// Whether dense() runs float32 products on the CPU through smoe's kernel
// (model/gemm.h): where AVX2 and FMA exist, unless SMOE_CPU_GEMM=torch asks for
// LibTorch's (BLAS) path.
bool cpu_gemm_own();

// x * rsqrt(mean(x^2) + eps) in float32, cast back, times weight; with
// `weight_float32` (gpt-oss) times weight in float32, then cast back.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps, bool weight_float32 = false);

// cos and sin tables for positions [0, seq_len), [seq_len, head_dim], in `dtype`
// on `device` (computed in float32 on the CPU), with the config's YaRN scaling.
struct RopeTables {
  at::Tensor cos;
  at::Tensor sin;
};
RopeTables rope_tables(int64_t seq_len, const ModelConfig& config, at::ScalarType dtype, at::Device device);
// The rotary inverse frequencies [head_dim / 2], float32 (YaRN-blended where configured).
at::Tensor rope_inv_freq(const ModelConfig& config);

struct AttentionWeights {
  at::Tensor q_proj, k_proj, v_proj, o_proj;  // [out, in]
  at::Tensor q_bias, k_bias, v_bias;          // undefined without attention_bias
  at::Tensor o_bias;                          // undefined without attention_out_bias
  at::Tensor sinks;                           // [H], undefined without attention_sinks
  at::Tensor q_norm, k_norm;                  // undefined without q/k norm
  // Multi-head latent attention: q_proj is undefined where q goes through q_a/q_b.
  at::Tensor q_a_proj, q_a_norm, q_b_proj;    // [q_lora_rank, d], [q_lora_rank], [H*(dn+dr), q_lora_rank]
  at::Tensor kv_a_proj, kv_a_norm, kv_b_proj; // [kv_lora_rank+dr, d], [kv_lora_rank], [H*(dn+dv), kv_lora_rank]
};

// The keys and values one attention layer has computed so far, for generation:
// [B, heads, T, dim] each, after RoPE (grouped-query attention: the key/value
// heads; MLA: every head). Empty before the first call.
struct KvCache {
  at::Tensor k, v;
  int64_t length() const { return k.defined() ? k.size(2) : 0; }
};

// Causal self-attention of decoder layer `layer` over x: [B, S, d] -> [B, S, d]:
// grouped-query, or multi-head latent attention where config.mla is enabled.
// With a cache, x holds the S tokens after the cache's T, `rope` their positions'
// rows (T to T + S), and their keys and values join the cache.
at::Tensor attention(const ModelConfig& config, int64_t layer, const AttentionWeights& w, const at::Tensor& x,
                     const RopeTables& rope, KvCache* cache = nullptr);

// The gated MLP used by dense layers and by every expert: down(silu(gate x) * up x),
// or gpt-oss's clamped SwiGLU with biases (config.swiglu_limit).
struct GatedMlp {
  at::Tensor gate_proj, up_proj;  // [ff, d]
  at::Tensor down_proj;           // [d, ff]
  at::Tensor gate_bias, up_bias;  // [ff], gpt-oss; undefined elsewhere
  at::Tensor down_bias;           // [d], gpt-oss
  double swiglu_limit = 0;        // 0: silu(gate) * up
  bool defined() const { return gate_proj.defined(); }
};
at::Tensor gated_mlp(const GatedMlp& mlp, const at::Tensor& x);

}  // namespace smoe
