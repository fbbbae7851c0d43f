#include "smoe/model/resources.h"

#include <algorithm>
#include <cmath>

#include "smoe/core/error.h"

namespace smoe {

namespace {

double ceil_div(double a, double b) { return std::ceil(a / b); }

// Attention projections of one layer as (rows, cols) of each [out, in] matrix.
std::vector<std::pair<double, double>> attention_matrices(const ModelConfig& c) {
  const double d = static_cast<double>(c.hidden_size), H = static_cast<double>(c.num_heads);
  if (c.mla.enabled()) {
    const MlaConfig& m = c.mla;
    const double dq = static_cast<double>(m.qk_head_dim()), rq = static_cast<double>(m.q_lora_rank);
    const double rkv = static_cast<double>(m.kv_lora_rank), dr = static_cast<double>(m.qk_rope_head_dim);
    std::vector<std::pair<double, double>> v;
    if (m.q_lora_rank > 0) {
      v.push_back({rq, d});
      v.push_back({H * dq, rq});
    } else {
      v.push_back({H * dq, d});
    }
    v.push_back({rkv + dr, d});
    v.push_back({H * static_cast<double>(m.qk_nope_head_dim + m.v_head_dim), rkv});
    v.push_back({d, H * static_cast<double>(m.v_head_dim)});
    return v;
  }
  const double D = static_cast<double>(c.head_dim), Hkv = static_cast<double>(c.num_kv_heads);
  return {{H * D, d}, {Hkv * D, d}, {Hkv * D, d}, {d, H * D}};
}

double attention_vectors(const ModelConfig& c) {  // norms and biases of one layer's attention
  double n = 0;
  if (c.mla.enabled()) n += static_cast<double>(c.mla.q_lora_rank + c.mla.kv_lora_rank);
  const double D = static_cast<double>(c.head_dim);
  if (c.attention_bias) n += D * static_cast<double>(c.num_heads + 2 * c.num_kv_heads);
  if (c.attention_out_bias) n += static_cast<double>(c.hidden_size);
  if (c.attention_sinks) n += static_cast<double>(c.num_heads);
  if (c.qk_norm == QkNorm::Projection) n += D * static_cast<double>(c.num_heads + c.num_kv_heads);
  if (c.qk_norm == QkNorm::PerHead) n += 2 * D;
  return n;
}

double mlp_params(double d, double ff) { return 3 * d * ff; }

// A routed expert: its three projections, and gpt-oss's biases (gate, up, down).
double expert_params(const ModelConfig& c) {
  const double d = static_cast<double>(c.hidden_size), ff = static_cast<double>(c.moe_intermediate_size);
  return mlp_params(d, ff) + (c.family == Family::GptOss ? 2 * ff + d : 0);
}

// A router: its rows, and a selection or logit bias.
double router_params(const ModelConfig& c, double E) {
  return E * static_cast<double>(c.hidden_size) + (c.router.score_correction_bias || c.router.logit_bias ? E : 0);
}

// One [rows, cols] projection on disk.
double matrix_bytes(const ModelConfig& c, double rows, double cols, double weight_bytes) {
  if (!c.fp8) return rows * cols * weight_bytes;  // MXFP4 experts: expert_bytes
  return rows * cols + 4 * ceil_div(rows, static_cast<double>(c.fp8_block_rows)) *
                           ceil_div(cols, static_cast<double>(c.fp8_block_cols));
}

}  // namespace

double ParameterCounts::total() const {
  return embed + lm_head + attention + dense_mlp + routed_experts + shared_experts + router + norms;
}

ParameterCounts count_parameters(const ModelConfig& c) {
  ParameterCounts p;
  const double d = static_cast<double>(c.hidden_size), V = static_cast<double>(c.vocab_size);
  p.embed = V * d;
  p.lm_head = c.tie_word_embeddings ? 0 : V * d;
  p.per_expert = expert_params(c);
  double attention_layer = attention_vectors(c);
  for (const auto& [r, k] : attention_matrices(c)) attention_layer += r * k;
  const double shared_layer = mlp_params(d, static_cast<double>(c.shared_expert_intermediate_size)) +
                              (c.shared_expert_gate ? d : 0);
  double active = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    p.attention += attention_layer;
    p.norms += 2 * d;
    active += attention_layer;
    const double E = static_cast<double>(c.layer_experts[static_cast<size_t>(l)]);
    if (E == 0) {
      p.dense_mlp += mlp_params(d, static_cast<double>(c.intermediate_size));
      active += mlp_params(d, static_cast<double>(c.intermediate_size));
    } else {
      p.routed_experts += E * p.per_expert;
      p.shared_experts += shared_layer;
      p.router += router_params(c, E);
      active += static_cast<double>(c.router.top_k) * p.per_expert + shared_layer + router_params(c, E);
    }
  }
  p.norms += d;
  // An MTP module: a full MoE decoder layer (router and selection bias included), its projection
  // from [embedding | hidden], three norms, and its own copies of the embedding and output head.
  const double E0 = static_cast<double>(c.max_experts());
  p.mtp = static_cast<double>(c.num_nextn_predict_layers) *
          (attention_layer + 2 * d + E0 * p.per_expert + shared_layer + router_params(c, E0) + 2 * d * d + 3 * d +
           2 * V * d);
  p.active_per_token = active;
  return p;
}

double checkpoint_bytes(const ModelConfig& c, double weight_bytes) {
  const ParameterCounts p = count_parameters(c);
  const double d = static_cast<double>(c.hidden_size);
  double bytes = (p.embed + p.lm_head + p.router) * weight_bytes + p.norms * weight_bytes;
  double attention_layer = attention_vectors(c) * weight_bytes;
  for (const auto& [r, k] : attention_matrices(c)) attention_layer += matrix_bytes(c, r, k, weight_bytes);
  const double ff = static_cast<double>(c.moe_intermediate_size), sff = static_cast<double>(c.shared_expert_intermediate_size);
  double expert = 2 * matrix_bytes(c, ff, d, weight_bytes) + matrix_bytes(c, d, ff, weight_bytes);
  if (c.family == Family::GptOss)  // biases; MXFP4: half a byte per weight and a scale byte per 32
    expert = (c.mxfp4 ? 3 * ff * d * (0.5 + 1.0 / 32) : expert) + (2 * ff + d) * weight_bytes;
  const double shared = sff > 0 ? 2 * matrix_bytes(c, sff, d, weight_bytes) + matrix_bytes(c, d, sff, weight_bytes) : 0;
  const double I = static_cast<double>(c.intermediate_size);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    bytes += attention_layer;
    const double E = static_cast<double>(c.layer_experts[static_cast<size_t>(l)]);
    if (E == 0) bytes += 2 * matrix_bytes(c, I, d, weight_bytes) + matrix_bytes(c, d, I, weight_bytes);
    else bytes += E * expert + shared;
  }
  const double E0 = static_cast<double>(c.max_experts());
  const double V = static_cast<double>(c.vocab_size);
  bytes += static_cast<double>(c.num_nextn_predict_layers) *
           (attention_layer + E0 * expert + shared +
            (router_params(c, E0) + 2 * d * d + 5 * d + 2 * V * d) * weight_bytes);
  return bytes;
}

ClusterSpec cluster_preset(const std::string& gpu) {
  ClusterSpec s;
  s.gpu = gpu;
  if (gpu == "h100") return s;  // SXM: 989 TFLOP/s BF16 dense, 80 GB, NVLink 4, NDR 400 Gb/s
  if (gpu == "h200") {
    s.memory_bytes = 141e9;
    return s;
  }
  if (gpu == "a100") {
    s.peak_flops = 312e12;
    s.intra_node_bytes_per_s = 300e9;
    s.inter_node_bytes_per_s = 25e9;  // HDR 200 Gb/s
    return s;
  }
  if (gpu == "b200") {
    s.peak_flops = 2250e12;
    s.memory_bytes = 180e9;
    s.intra_node_bytes_per_s = 900e9;
    s.inter_node_bytes_per_s = 50e9;
    return s;
  }
  if (gpu == "mi300x") {
    s.peak_flops = 1307e12;
    s.memory_bytes = 192e9;
    s.intra_node_bytes_per_s = 448e9;  // Infinity Fabric, 7 links of 64 GB/s
    return s;
  }
  throw InputError(str("--gpu must be one of h100, h200, a100, b200, mi300x, found '", gpu, "'"));
}

ResourcePlan plan_resources(const ModelConfig& c, int ranks, bool layerwise, double tokens, int64_t context,
                            int64_t batch, const ClusterSpec& cluster) {
  SMOE_CHECK_INPUT(ranks >= 1, "ranks must be at least 1, found ", ranks);
  SMOE_CHECK_INPUT(context >= 1 && batch >= 1, "context and batch must be positive");
  ResourcePlan r;
  r.ranks = ranks;
  r.layerwise = layerwise;
  r.tokens = tokens;
  r.params = count_parameters(c);
  const ParameterCounts& p = r.params;
  const double b = r.compute_bytes, d = static_cast<double>(c.hidden_size), P = ranks;
  r.disk_bytes = checkpoint_bytes(c, 2.0);

  // collect loads no output head. Contiguous placement: the busiest rank holds ceil(E / P) experts.
  r.replicated_weights = (p.embed + p.attention + p.dense_mlp + p.shared_experts + p.router + p.norms) * b;
  double layer_max = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const double E = static_cast<double>(c.layer_experts[static_cast<size_t>(l)]);
    const double mine = std::ceil(E / P) * p.per_expert * b;
    r.expert_weights += mine;
    const double dense = E == 0 ? mlp_params(d, static_cast<double>(c.intermediate_size)) * b : 0;
    const double shared = E > 0 ? (p.shared_experts / std::max<int64_t>(c.num_moe_layers(), 1)) * b + E * d * b : 0;
    layer_max = std::max(layer_max, mine + dense + shared);
  }
  const double attention_layer = p.attention / static_cast<double>(c.num_layers) * b;
  r.resident_weights = layerwise ? p.embed * b + attention_layer + layer_max : r.replicated_weights + r.expert_weights;

  // One step: batch x context tokens; attention scores [batch, H, S, S] in float32 and the compute dtype;
  // expert exchange: k copies of each token out and back.
  const double T = static_cast<double>(batch * context), S = static_cast<double>(context);
  const double H = static_cast<double>(c.num_heads);
  const double k = static_cast<double>(c.router.top_k);
  const double head_width = c.mla.enabled() ? static_cast<double>(c.mla.qk_head_dim() + c.mla.v_head_dim)
                                            : 2.0 * static_cast<double>(c.head_dim);
  r.activations = static_cast<double>(batch) * H * S * S * (4 + b) + T * H * head_width * b * 3 + T * d * b * 8 +
                  4 * T * k * d * b;
  if (layerwise) r.held_hidden = tokens / P * d * b;
  if (c.fp8) {
    const double biggest = std::max({static_cast<double>(c.intermediate_size) * d, p.per_expert / 3,
                                     static_cast<double>(c.shared_expert_intermediate_size) * d});
    r.dequant_scratch = biggest * 4;
  }

  r.exchange_bytes_per_token = 2 * k * d * b * static_cast<double>(c.num_moe_layers()) * (P - 1) / P;
  // Forward FLOPs per token: 2 per weight it passes through, plus attention over the full context
  // (smoe masks the causal half, it does not skip it).
  r.flops_per_token = 2 * p.active_per_token + static_cast<double>(c.num_layers) * 2 * S * H * head_width;
  r.compute_seconds = tokens * r.flops_per_token / (P * cluster.peak_flops * cluster.mfu);
  // Each rank's exchange: the share to peers in its node over NVLink, the rest over the network, side by side.
  const double g = std::min<double>(cluster.gpus_per_node, P);
  const double per_rank = tokens / P * 2 * k * d * b * static_cast<double>(c.num_moe_layers());
  const double intra = per_rank * (g - 1) / P, inter = per_rank * (P - g) / P;
  r.exchange_seconds = std::max(intra / cluster.intra_node_bytes_per_s, inter / cluster.inter_node_bytes_per_s);
  return r;
}

}  // namespace smoe
