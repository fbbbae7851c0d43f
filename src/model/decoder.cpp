#include "smoe/model/decoder.h"

#include <ATen/ATen.h>

#include <map>

#include "smoe/core/error.h"
#include "smoe/io/tensor-io.h"
#include "smoe/model/checkpoint.h"
#include "smoe/model/tensor-names.h"

namespace smoe {

namespace {

std::string shape_text(at::IntArrayRef shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// Loads a tensor as `dtype` onto `device`, from the checkpoint or from memory,
// checking its shape against the config. Every tensor it loads is also recorded
// under its checkpoint name.
struct Loader {
  const Checkpoint* ck;
  const std::map<std::string, at::Tensor>* in_memory;  // when ck is null
  at::ScalarType dtype;
  at::Device device;
  bool own;  // copy out of the mapped file (weights that will be written to)
  std::map<std::string, at::Tensor>* named;
  // `whole`: every batch reads all of it (not so the embedding, whose rows are
  // read by token), so a tensor used in place in the mapping has its pages
  // faulted in at load rather than in the first batch.
  at::Tensor operator()(const std::string& name, const std::vector<int64_t>& shape, bool whole = true) const {
    at::Tensor t = ck ? ck->load(name, dtype, shape, device) : from_memory(name, shape);  // FP8 decoded on the device
    if (ck && whole && device.is_cpu() && !own && t.data_ptr() == static_cast<const void*>(ck->bytes(name)))
      ck->populate_pages(name);
    if (!device.is_cpu()) t = t.to(device);
    else if (own) t = t.clone();
    (*named)[name] = t;
    return t;
  }
  at::Tensor from_memory(const std::string& name, const std::vector<int64_t>& shape) const {
    const auto it = in_memory->find(name);
    SMOE_CHECK_INPUT(it != in_memory->end(), "the model's tensors have no '", name, "'");
    SMOE_CHECK_INPUT(it->second.sizes().vec() == shape, "tensor '", name, "' has shape ", shape_text(it->second.sizes()),
                     "; the config implies ", shape_text(shape));
    return it->second.to(dtype);
  }
  bool has(const std::string& name) const { return ck ? ck->has(name) : in_memory->count(name) != 0; }
};

// An MLP's projections: `prefix` + their names (`names` of the expert's family, or a dense MLP's).
GatedMlp load_mlp(const Loader& load, const std::string& prefix, const TensorNames* names, int64_t ff, int64_t d) {
  auto weight = [&](Proj p) { return prefix + (names ? names->weight(p) : TensorNames::dense_weight(p)); };
  GatedMlp m;
  m.gate_proj = load(weight(Proj::Gate), {ff, d});
  m.up_proj = load(weight(Proj::Up), {ff, d});
  m.down_proj = load(weight(Proj::Down), {d, ff});
  return m;
}

uint64_t bytes_of(const at::Tensor& t) { return t.defined() ? t.nbytes() : 0; }
uint64_t bytes_of(const GatedMlp& m) {
  return bytes_of(m.gate_proj) + bytes_of(m.up_proj) + bytes_of(m.down_proj) + bytes_of(m.gate_bias) +
         bytes_of(m.up_bias) + bytes_of(m.down_bias);
}

}  // namespace

Decoder::Decoder(const Checkpoint& ck, const DecoderOptions& options)
    : checkpoint_(&ck), options_(options), config_(ck.config()), dtype_(options.dtype), device_(options.device) {
  load_head_and_layers();
}

Decoder::Decoder(const ModelConfig& config, std::map<std::string, at::Tensor> tensors, const DecoderOptions& options)
    : in_memory_(std::move(tensors)), options_(options), config_(config), dtype_(options.dtype), device_(options.device) {
  SMOE_ASSERT(options.load_layers, "a decoder from tensors in memory loads every layer at once");
  load_head_and_layers();
  in_memory_.clear();  // what the decoder holds are its own tensors (copies, when trainable): no second set
}

void Decoder::load_head_and_layers() {
  SMOE_CHECK_INPUT(dtype_ == at::kFloat || dtype_ == at::kBFloat16, "compute dtype must be f32 or bf16");
  const ModelConfig& c = config_;
  const int64_t d = c.hidden_size;
  const Loader load{checkpoint_, &in_memory_, dtype_, device_, options_.trainable, &named_};
  embed_tokens = load(TensorNames::embed(), {c.vocab_size, d}, /*whole=*/false);
  if (options_.load_head) {
    final_norm = load(TensorNames::final_norm(), {d});
    if (c.tie_word_embeddings)  // a stored lm_head.weight is ignored, as transformers ties them
      lm_head = embed_tokens;
    else
      lm_head = load(TensorNames::lm_head(), {c.vocab_size, d});
  }
  layers_.resize(static_cast<size_t>(c.num_layers));
  if (options_.load_layers)
    for (int64_t l = 0; l < c.num_layers; ++l) load_layer(l);
}

void Decoder::load_layer(int64_t l) {
  const ModelConfig& c = config_;
  const int64_t d = c.hidden_size, H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
  const TensorNames names(c.family);
  const Loader load{checkpoint_, &in_memory_, dtype_, device_, options_.trainable, &named_};
  Layer& L = layers_.at(static_cast<size_t>(l));
  L = Layer{};
  L.input_norm = load(TensorNames::in_layer(l, "input_layernorm.weight"), {d});
  L.post_attention_norm = load(TensorNames::in_layer(l, "post_attention_layernorm.weight"), {d});

  AttentionWeights& a = L.attention;
  const std::string ap = TensorNames::attention(l, "");
  if (c.mla.enabled()) {
    const MlaConfig& m = c.mla;
    const int64_t dq = m.qk_head_dim();
    if (m.q_lora_rank > 0) {
      a.q_a_proj = load(ap + "q_a_proj.weight", {m.q_lora_rank, d});
      a.q_a_norm = load(ap + "q_a_layernorm.weight", {m.q_lora_rank});
      a.q_b_proj = load(ap + "q_b_proj.weight", {H * dq, m.q_lora_rank});
    } else {
      a.q_proj = load(ap + "q_proj.weight", {H * dq, d});
    }
    a.kv_a_proj = load(ap + "kv_a_proj_with_mqa.weight", {m.kv_lora_rank + m.qk_rope_head_dim, d});
    a.kv_a_norm = load(ap + "kv_a_layernorm.weight", {m.kv_lora_rank});
    a.kv_b_proj = load(ap + "kv_b_proj.weight", {H * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank});
    a.o_proj = load(ap + "o_proj.weight", {d, H * m.v_head_dim});
  } else {
    a.q_proj = load(ap + "q_proj.weight", {H * D, d});
    a.k_proj = load(ap + "k_proj.weight", {Hkv * D, d});
    a.v_proj = load(ap + "v_proj.weight", {Hkv * D, d});
    a.o_proj = load(ap + "o_proj.weight", {d, H * D});
    if (c.attention_bias) {
      a.q_bias = load(ap + "q_proj.bias", {H * D});
      a.k_bias = load(ap + "k_proj.bias", {Hkv * D});
      a.v_bias = load(ap + "v_proj.bias", {Hkv * D});
    }
    if (c.attention_out_bias) a.o_bias = load(ap + "o_proj.bias", {d});
    if (c.attention_sinks) a.sinks = load(ap + "sinks", {H});
    if (c.qk_norm == QkNorm::Projection) {
      a.q_norm = load(ap + "q_norm.weight", {H * D});
      a.k_norm = load(ap + "k_norm.weight", {Hkv * D});
    } else if (c.qk_norm == QkNorm::PerHead) {
      a.q_norm = load(ap + "q_norm.weight", {D});
      a.k_norm = load(ap + "k_norm.weight", {D});
    }
  }

  if (!c.is_moe(l)) {
    L.mlp = load_mlp(load, TensorNames::dense_mlp(l), nullptr, c.intermediate_size, d);
  } else {
    MoeLayer m;
    m.layer = l;
    m.num_experts = c.layer_experts[static_cast<size_t>(l)];
    m.router = load(names.router(l), {m.num_experts, d});
    if (c.router.score_correction_bias) {
      // Selection bias: float32 whatever the compute dtype.
      const Loader load_f32{checkpoint_, &in_memory_, at::kFloat, device_, options_.trainable, &named_};
      // ERNIE-4.5 stores it as [1, E].
      const std::vector<int64_t> shape = c.family == Family::Ernie45Moe ? std::vector<int64_t>{1, m.num_experts}
                                                                         : std::vector<int64_t>{m.num_experts};
      m.score_bias = load_f32(names.router_bias(l), shape).reshape({m.num_experts});
    }
    if (c.router.logit_bias) m.router_bias = load(names.router_logit_bias(l), {m.num_experts});
    m.experts.resize(static_cast<size_t>(m.num_experts));
    for (int64_t e = 0; e < m.num_experts; ++e) {
      if (options_.holds_expert && !options_.holds_expert(l, e)) continue;
      if (c.family != Family::GptOss) {
        m.experts[static_cast<size_t>(e)] = load_mlp(load, names.expert(l, e), &names, c.moe_intermediate_size, d);
        continue;
      }
      SMOE_CHECK_INPUT(checkpoint_, "gpt-oss experts load from a checkpoint only");
      GatedMlp& x = m.experts[static_cast<size_t>(e)] = load_stacked_expert(*checkpoint_, l, m.num_experts, e, dtype_);
      for (at::Tensor* t : {&x.gate_proj, &x.up_proj, &x.down_proj, &x.gate_bias, &x.up_bias, &x.down_bias})
        *t = t->to(device_);
    }
    if (c.shared_expert_intermediate_size > 0) {
      m.shared = load_mlp(load, names.shared_expert(l), &names, c.shared_expert_intermediate_size, d);
      if (c.shared_expert_gate) m.shared_gate = load(names.shared_expert_gate(l), {1, d});
    }
    L.moe = std::move(m);
  }
  L.loaded = true;
}

void Decoder::release_layer(int64_t l) {
  layers_.at(static_cast<size_t>(l)) = Layer{};
  const std::string prefix = TensorNames::layer(l);
  for (auto it = named_.lower_bound(prefix); it != named_.end() && it->first.compare(0, prefix.size(), prefix) == 0;)
    it = named_.erase(it);
  if (checkpoint_) checkpoint_->release_pages(prefix);
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
    for (const auto* t : {&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &a.q_bias, &a.k_bias, &a.v_bias, &a.o_bias,
                          &a.sinks, &a.q_norm,
                          &a.k_norm, &a.q_a_proj, &a.q_a_norm, &a.q_b_proj, &a.kv_a_proj, &a.kv_a_norm, &a.kv_b_proj})
      n += bytes_of(*t);
    n += bytes_of(L.mlp);
    if (L.moe) {
      n += bytes_of(L.moe->router) + bytes_of(L.moe->router_bias) + bytes_of(L.moe->score_bias) + bytes_of(L.moe->shared) +
           bytes_of(L.moe->shared_gate);
      for (const auto& e : L.moe->experts) n += bytes_of(e);
    }
  }
  return n;
}

at::Tensor Decoder::embed(const at::Tensor& tokens) const {
  SMOE_ASSERT(tokens.dim() == 2 && tokens.scalar_type() == at::kLong, "tokens must be [B, S] int64");
  return at::embedding(embed_tokens, tokens.to(device_));
}

at::Tensor Decoder::apply_layer(int64_t layer, const at::Tensor& h_in, MoeExecutor& executor,
                                RoutingObserver* observer, KvCache* cache) const {
  const ModelConfig& c = config_;
  const Layer& L = layers_.at(static_cast<size_t>(layer));
  SMOE_ASSERT(L.loaded, "layer ", layer, " is not loaded");
  const int64_t B = h_in.size(0), S = h_in.size(1), d = c.hidden_size, past = cache ? cache->length() : 0;
  RopeTables rope = rope_tables(past + S, c, c.rope_float32 ? at::kFloat : dtype_, device_);
  rope = {rope.cos.narrow(0, past, S), rope.sin.narrow(0, past, S)};
  const bool f32 = c.norm_weight_float32;
  at::Tensor h =
      h_in + attention(c, layer, L.attention, rms_norm(h_in, L.input_norm, c.rms_norm_eps, f32), rope, cache);
  at::Tensor x = rms_norm(h, L.post_attention_norm, c.rms_norm_eps, f32);
  if (!L.moe) return h + gated_mlp(L.mlp, x);
  const MoeLayer& m = *L.moe;
  at::Tensor flat = x.reshape({B * S, d});
  Routing r = route(c.router, flat, m.router, m.score_bias, m.router_bias);
  if (observer) observer->on_routing(m, flat, r);
  at::Tensor y = executor.run(m, flat, r, observer);
  if (m.shared.defined()) {
    at::Tensor s = gated_mlp(m.shared, flat);
    if (m.shared_gate.defined()) s = at::sigmoid(dense(flat, m.shared_gate)) * s;
    y = y + s;
  }
  return h + y.view({B, S, d});
}

at::Tensor Decoder::head(const at::Tensor& h) const {
  SMOE_ASSERT(lm_head.defined(), "the output head was not loaded");
  return dense(rms_norm(h, final_norm, config_.rms_norm_eps, config_.norm_weight_float32), lm_head).to(at::kFloat);
}

at::Tensor Decoder::forward(const at::Tensor& tokens, MoeExecutor& executor, RoutingObserver* observer) const {
  return head(hidden_states(tokens, executor, observer));
}

at::Tensor Decoder::hidden_states(const at::Tensor& tokens, MoeExecutor& executor, RoutingObserver* observer,
                                  DecoderCache* cache) const {
  if (cache) cache->layers.resize(static_cast<size_t>(config_.num_layers));
  at::Tensor h = embed(tokens);
  for (int64_t l = 0; l < config_.num_layers; ++l)
    h = apply_layer(l, h, executor, observer, cache ? &cache->layers[static_cast<size_t>(l)] : nullptr);
  return h;
}

namespace {

// A tensor as stored (a view of the mapped file), its shape checked.
at::Tensor stored(const Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape) {
  return ck.load(name, to_scalar_type(ck.info(name).dtype, name), shape);
}

}  // namespace

GatedMlp load_stacked_expert(const Checkpoint& ck, int64_t l, int64_t E, int64_t e, at::ScalarType dtype) {
  const ModelConfig& c = ck.config();
  const TensorNames names(c.family);
  const int64_t d = c.hidden_size, F = c.moe_intermediate_size;
  const std::string gate_up = names.stacked(l, Proj::Gate), down = names.stacked(l, Proj::Down);
  at::Tensor gu, dn;  // [2F, d], [d, F] float32
  if (c.mxfp4) {
    gu = ck.load_mxfp4(gate_up, E, e, 2 * F, d);
    dn = ck.load_mxfp4(down, E, e, d, F);
  } else {
    gu = stored(ck, gate_up, {E, d, 2 * F})[e].t().to(at::kFloat);
    dn = stored(ck, down, {E, F, d})[e].t().to(at::kFloat);
  }
  at::Tensor gu_bias = stored(ck, gate_up + "_bias", {E, 2 * F})[e].to(at::kFloat);
  at::Tensor dn_bias = stored(ck, down + "_bias", {E, d})[e].to(at::kFloat);
  auto own = [&](const at::Tensor& t) { return t.contiguous().to(dtype); };
  GatedMlp m;
  m.gate_proj = own(gu.slice(0, 0, 2 * F, 2));
  m.up_proj = own(gu.slice(0, 1, 2 * F, 2));
  m.down_proj = own(dn);
  m.gate_bias = own(gu_bias.slice(0, 0, 2 * F, 2));
  m.up_bias = own(gu_bias.slice(0, 1, 2 * F, 2));
  m.down_bias = own(dn_bias);
  m.swiglu_limit = c.swiglu_limit;
  return m;
}

}  // namespace smoe
