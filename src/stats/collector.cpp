#include "smoe/stats/collector.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

#include "smoe/core/error.h"
#include "smoe/parallel/comm.h"

namespace smoe {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

constexpr int64_t kNoKey = std::numeric_limits<int64_t>::max();

// Keeps the n rows with the lowest keys, keys ascending.
void keep_lowest(at::Tensor& keys, at::Tensor& rows, int64_t n) {
  at::Tensor order = std::get<1>(at::sort(keys, /*stable=*/true, 0, false));
  if (order.numel() > n) order = order.narrow(0, 0, n);
  keys = keys.index_select(0, order);
  rows = rows.index_select(0, order);
}

}  // namespace

int64_t token_key(uint64_t seed, int64_t document, int64_t position) {
  uint64_t h = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(document)));
  h = splitmix64(h ^ static_cast<uint64_t>(position));
  return static_cast<int64_t>(h >> 1);
}

std::vector<std::pair<std::string, at::Tensor>> layer_state(const LayerStats& s, int64_t sample_size) {
  std::vector<std::pair<std::string, at::Tensor>> state = {{"tokens", at::tensor({s.tokens}, at::kLong)}};
  for (const SummedStat& f : summed_stats()) state.emplace_back(f.name, s.*f.field);
  if (s.out_mean.defined()) state.emplace_back("out_mean", s.out_mean);
  if (sample_size > 0) {
    const int64_t n = s.hidden_sample_keys.numel();
    at::Tensor keys = at::full({sample_size}, kNoKey, at::kLong);
    at::Tensor rows = at::zeros({sample_size, s.hidden_sample.size(1)}, at::kFloat);
    keys.narrow(0, 0, n).copy_(s.hidden_sample_keys);
    rows.narrow(0, 0, n).copy_(s.hidden_sample);
    state.emplace_back("hidden_sample_keys", keys);
    state.emplace_back("hidden_sample", rows);
  }
  return state;
}

void load_layer_state(LayerStats& s, const std::map<std::string, at::Tensor>& state) {
  s.tokens = state.at("tokens")[0].item<int64_t>();
  for (const SummedStat& f : summed_stats()) s.*f.field = state.at(f.name);
  if (state.count("out_mean")) s.out_mean = state.at("out_mean");
  if (state.count("hidden_sample_keys")) {
    at::Tensor keys = state.at("hidden_sample_keys");
    at::Tensor valid = keys != kNoKey;
    s.hidden_sample_keys = keys.masked_select(valid);
    s.hidden_sample = state.at("hidden_sample").index_select(0, valid.nonzero().squeeze(1));
  }
}

StatsCollector::StatsCollector(const ModelConfig& config, const CollectorOptions& options, Communicator* comm)
    : options_(options), comm_(comm) {
  const int64_t d = config.hidden_size;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const int64_t E = config.layer_experts[static_cast<size_t>(l)];
    if (E == 0) continue;
    LayerStats s;
    s.layer = l;
    s.num_experts = E;
    s.top_k = config.router.top_k;
    for (const SummedStat& f : summed_stats())
      s.*f.field = f.pairs ? at::zeros({E, E}, f.whole ? at::kLong : at::kDouble)
                           : at::zeros({E}, f.whole ? at::kLong : at::kDouble);
    if (options.out_mean) s.out_mean = at::zeros({E, d}, at::kDouble);
    if (options.sample_size > 0) {
      s.hidden_sample_keys = at::empty({0}, at::kLong);
      s.hidden_sample = at::empty({0, d}, at::kFloat);
    }
    layers_[l] = std::move(s);
  }
}

void StatsCollector::set_tokens(const at::Tensor& document, const at::Tensor& position) {
  if (options_.sample_size == 0) return;
  at::Tensor doc = document.to(at::kLong).contiguous(), pos = position.to(at::kLong).contiguous();
  keys_ = at::empty({doc.numel()}, at::kLong);
  const int64_t* dp = doc.data_ptr<int64_t>();
  const int64_t* pp = pos.data_ptr<int64_t>();
  int64_t* kp = keys_.data_ptr<int64_t>();
  for (int64_t i = 0; i < doc.numel(); ++i) kp[i] = token_key(options_.seed, dp[i], pp[i]);
}

void StatsCollector::on_routing(const MoeLayer& layer, const at::Tensor& x, const Routing& r) {
  LayerStats& s = layers_.at(layer.layer);
  const int64_t T = x.size(0), E = s.num_experts;
  at::Tensor experts = r.experts.cpu();
  at::Tensor weights = r.weights.to(at::kCPU, at::kDouble);
  weights_ = weights.reshape({-1});
  s.tokens += T;
  s.count += at::bincount(experts.reshape({-1}), {}, E);
  s.gate_sum.index_add_(0, experts.reshape({-1}), weights_);
  at::Tensor logits = r.logits.to(at::kCPU, at::kDouble);
  s.prob_sum += r.scores.to(at::kCPU, at::kDouble).sum(0);
  s.logit_sum += logits.sum(0);
  s.logit_gram += at::mm(logits.t(), logits);
  at::Tensor chosen = at::zeros({T, E}, at::kDouble).scatter_(1, experts, 1.0);
  s.coact += at::mm(chosen.t(), chosen).round().to(at::kLong);

  if (options_.sample_size > 0 && T > 0) {
    SMOE_ASSERT(keys_.defined() && keys_.numel() == T, "set_tokens() must describe the batch before routing");
    at::Tensor keys = at::cat({s.hidden_sample_keys, keys_});
    at::Tensor rows = at::cat({s.hidden_sample, x.to(at::kCPU, at::kFloat)});
    keep_lowest(keys, rows, options_.sample_size);
    s.hidden_sample_keys = keys;
    s.hidden_sample = rows;
  }

  if (options_.out_mean) {
    // Every expert on every token: the owners of the experts need every rank's tokens.
    at::Tensor all = x;
    std::vector<int64_t> sources = {T};
    if (comm_ && comm_->size() > 1) {
      std::vector<int64_t> send(static_cast<size_t>(comm_->size()), T);
      sources = comm_->exchange_counts(send);
      all = comm_->all_to_all(x.repeat({comm_->size(), 1}), send, sources);
    }
    for (int64_t e = 0; e < E; ++e) {
      const GatedMlp& expert = layer.experts[static_cast<size_t>(e)];
      if (!expert.defined()) continue;
      // One source's batch at a time: the same GEMMs, and sums, for any rank count.
      int64_t offset = 0;
      for (int64_t n : sources) {
        if (n > 0) s.out_mean[e] += gated_mlp(expert, all.narrow(0, offset, n)).to(at::kCPU, at::kDouble).sum(0);
        offset += n;
      }
    }
  }
}

void StatsCollector::on_expert_output(const MoeLayer& layer, int64_t expert, const at::Tensor& slots,
                                      const at::Tensor& y) {
  LayerStats& s = layers_.at(layer.layer);
  at::Tensor norms = y.to(at::kCPU, at::kDouble).norm(2, {1});
  s.act_norm_sum[expert] += norms.sum();
  s.reap_sum[expert] += (weights_.index_select(0, slots.cpu()) * norms).sum();
}

void StatsCollector::reduce(Communicator& host) {
  for (auto& [l, s] : layers_) {
    at::Tensor tokens = at::tensor({s.tokens}, at::kLong);
    host.all_reduce_sum(tokens);
    s.tokens = tokens[0].item<int64_t>();
    for (const SummedStat& f : summed_stats()) {
      at::Tensor& t = s.*f.field;
      t = t.contiguous();
      host.all_reduce_sum(t);
    }
    if (s.out_mean.defined()) {
      s.out_mean = s.out_mean.contiguous();
      host.all_reduce_sum(s.out_mean);
      s.out_mean = s.out_mean / static_cast<double>(std::max<int64_t>(s.tokens, 1));
    }
    if (options_.sample_size > 0) {
      // Every rank's lowest keys, then the lowest of those.
      at::Tensor keys = s.hidden_sample_keys, rows = s.hidden_sample;
      std::vector<int64_t> send(static_cast<size_t>(host.size()), keys.numel());
      std::vector<int64_t> recv = host.exchange_counts(send);
      keys = host.all_to_all(keys.repeat({host.size()}), send, recv);
      rows = host.all_to_all(rows.repeat({host.size(), 1}), send, recv);
      keep_lowest(keys, rows, options_.sample_size);
      s.hidden_sample_keys = keys;
      s.hidden_sample = rows;
    }
  }
}

}  // namespace smoe
