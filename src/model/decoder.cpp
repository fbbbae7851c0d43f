#include "smoe/model/decoder.h"

#include <ATen/ATen.h>

#include "smoe/core/error.h"
#include "smoe/io/checkpoint.h"

namespace smoe {

namespace {

GatedMlp load_mlp(const Checkpoint& ck, const std::string& prefix, const FamilyLayout& names, int64_t ff, int64_t d,
                  at::ScalarType dtype) {
  GatedMlp m;
  m.gate_proj = ck.load(prefix + names.gate_proj + ".weight", dtype, {ff, d});
  m.up_proj = ck.load(prefix + names.up_proj + ".weight", dtype, {ff, d});
  m.down_proj = ck.load(prefix + names.down_proj + ".weight", dtype, {d, ff});
  return m;
}

uint64_t bytes_of(const at::Tensor& t) { return t.defined() ? t.nbytes() : 0; }
uint64_t bytes_of(const GatedMlp& m) { return bytes_of(m.gate_proj) + bytes_of(m.up_proj) + bytes_of(m.down_proj); }

}  // namespace

Decoder::Decoder(const Checkpoint& ck, const DecoderOptions& options) : config_(ck.config()), dtype_(options.dtype) {
  SMOE_CHECK_INPUT(dtype_ == at::kFloat || dtype_ == at::kBFloat16, "compute dtype must be f32 or bf16");
  const ModelConfig& c = config_;
  const int64_t d = c.hidden_size, H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
  const FamilyLayout names = c.layout();
  const FamilyLayout dense_names{"mlp.", "gate_proj", "up_proj", "down_proj"};

  embed_tokens = ck.load("model.embed_tokens.weight", dtype_, {c.vocab_size, d});
  final_norm = ck.load("model.norm.weight", dtype_, {d});
  if (c.tie_word_embeddings && !ck.has("lm_head.weight"))
    lm_head = embed_tokens;
  else
    lm_head = ck.load("lm_head.weight", dtype_, {c.vocab_size, d});

  layers_.resize(static_cast<size_t>(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    Layer& L = layers_[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    L.input_norm = ck.load(p + "input_layernorm.weight", dtype_, {d});
    L.post_attention_norm = ck.load(p + "post_attention_layernorm.weight", dtype_, {d});

    AttentionWeights& a = L.attention;
    const std::string ap = p + "self_attn.";
    a.q_proj = ck.load(ap + "q_proj.weight", dtype_, {H * D, d});
    a.k_proj = ck.load(ap + "k_proj.weight", dtype_, {Hkv * D, d});
    a.v_proj = ck.load(ap + "v_proj.weight", dtype_, {Hkv * D, d});
    a.o_proj = ck.load(ap + "o_proj.weight", dtype_, {d, H * D});
    if (c.attention_bias) {
      a.q_bias = ck.load(ap + "q_proj.bias", dtype_, {H * D});
      a.k_bias = ck.load(ap + "k_proj.bias", dtype_, {Hkv * D});
      a.v_bias = ck.load(ap + "v_proj.bias", dtype_, {Hkv * D});
    }
    if (c.qk_norm == QkNorm::Projection) {
      a.q_norm = ck.load(ap + "q_norm.weight", dtype_, {H * D});
      a.k_norm = ck.load(ap + "k_norm.weight", dtype_, {Hkv * D});
    } else if (c.qk_norm == QkNorm::PerHead) {
      a.q_norm = ck.load(ap + "q_norm.weight", dtype_, {D});
      a.k_norm = ck.load(ap + "k_norm.weight", dtype_, {D});
    }

    if (!c.is_moe(l)) {
      L.mlp = load_mlp(ck, p + dense_names.moe, dense_names, c.intermediate_size, d, dtype_);
      continue;
    }
    MoeLayer m;
    m.layer = l;
    m.num_experts = c.layer_experts[static_cast<size_t>(l)];
    const std::string mp = p + names.moe;
    m.router = ck.load(mp + "gate.weight", dtype_, {m.num_experts, d});
    m.experts.resize(static_cast<size_t>(m.num_experts));
    for (int64_t e = 0; e < m.num_experts; ++e) {
      if (options.holds_expert && !options.holds_expert(l, e)) continue;
      m.experts[static_cast<size_t>(e)] =
          load_mlp(ck, mp + "experts." + std::to_string(e) + ".", names, c.moe_intermediate_size, d, dtype_);
    }
    if (c.shared_expert_intermediate_size > 0) {
      m.shared = load_mlp(ck, mp + "shared_expert.", names, c.shared_expert_intermediate_size, d, dtype_);
      if (c.shared_expert_gate) m.shared_gate = ck.load(mp + "shared_expert_gate.weight", dtype_, {1, d});
    }
    L.moe = std::move(m);
  }
}

const MoeLayer* Decoder::moe_layer(int64_t layer) const {
  const auto& L = layers_.at(static_cast<size_t>(layer));
  return L.moe ? &*L.moe : nullptr;
}

uint64_t Decoder::parameter_bytes() const {
  uint64_t n = bytes_of(embed_tokens) + bytes_of(final_norm);
  if (!lm_head.is_same(embed_tokens)) n += bytes_of(lm_head);
  for (const auto& L : layers_) {
    n += bytes_of(L.input_norm) + bytes_of(L.post_attention_norm);
    const auto& a = L.attention;
    for (const auto* t : {&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &a.q_bias, &a.k_bias, &a.v_bias, &a.q_norm,
                          &a.k_norm})
      n += bytes_of(*t);
    n += bytes_of(L.mlp);
    if (L.moe) {
      n += bytes_of(L.moe->router) + bytes_of(L.moe->score_bias) + bytes_of(L.moe->shared) +
           bytes_of(L.moe->shared_gate);
      for (const auto& e : L.moe->experts) n += bytes_of(e);
    }
  }
  return n;
}

at::Tensor Decoder::forward(const at::Tensor& tokens, MoeExecutor& executor, RoutingObserver* observer) const {
  SMOE_ASSERT(tokens.dim() == 2 && tokens.scalar_type() == at::kLong, "tokens must be [B, S] int64");
  const ModelConfig& c = config_;
  const int64_t B = tokens.size(0), S = tokens.size(1), d = c.hidden_size;
  const RopeTables rope = rope_tables(S, c.head_dim, c.rope_theta, dtype_);

  at::Tensor h = at::embedding(embed_tokens, tokens);
  for (const auto& L : layers_) {
    h = h + attention(c, L.attention, rms_norm(h, L.input_norm, c.rms_norm_eps), rope);
    at::Tensor x = rms_norm(h, L.post_attention_norm, c.rms_norm_eps);
    if (!L.moe) {
      h = h + gated_mlp(L.mlp, x);
      continue;
    }
    const MoeLayer& m = *L.moe;
    at::Tensor flat = x.reshape({B * S, d});
    Routing r = route(c.router, flat, m.router, m.score_bias);
    if (observer) observer->on_routing(m, flat, r);
    at::Tensor y = executor.run(m, flat, r, observer);
    if (m.shared.defined()) {
      at::Tensor s = gated_mlp(m.shared, flat);
      if (m.shared_gate.defined()) s = at::sigmoid(at::linear(flat, m.shared_gate)) * s;
      y = y + s;
    }
    h = h + y.view({B, S, d});
  }
  h = rms_norm(h, final_norm, c.rms_norm_eps);
  return at::linear(h, lm_head).to(at::kFloat);
}

}  // namespace smoe
