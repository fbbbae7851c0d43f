#include "smoe/stats/collector.h"

#include <ATen/ATen.h>

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

std::vector<std::pair<std::string, at::Tensor>> LayerStats::state(int64_t sample_size) const {
  std::vector<std::pair<std::string, at::Tensor>> s = {
      {"tokens", at::tensor({tokens}, at::kLong)}, {"count", count},         {"gate_sum", gate_sum},
      {"prob_sum", prob_sum},                      {"coact", coact},         {"logit_sum", logit_sum},
      {"logit_gram", logit_gram},                  {"act_norm_sum", act_norm_sum}, {"reap_sum", reap_sum}};
  if (out_sum.defined()) s.emplace_back("out_sum", out_sum);
  if (sample_size > 0) {
    const int64_t n = sample_keys.numel();
    at::Tensor keys = at::full({sample_size}, kNoKey, at::kLong);
    at::Tensor rows = at::zeros({sample_size, sample.size(1)}, at::kFloat);
    keys.narrow(0, 0, n).copy_(sample_keys);
    rows.narrow(0, 0, n).copy_(sample);
    s.emplace_back("sample_keys", keys);
    s.emplace_back("sample", rows);
  }
  return s;
}

void LayerStats::load_state(const std::map<std::string, at::Tensor>& s) {
  tokens = s.at("tokens")[0].item<int64_t>();
  count = s.at("count");
  gate_sum = s.at("gate_sum");
  prob_sum = s.at("prob_sum");
  coact = s.at("coact");
  logit_sum = s.at("logit_sum");
  logit_gram = s.at("logit_gram");
  act_norm_sum = s.at("act_norm_sum");
  reap_sum = s.at("reap_sum");
  if (s.count("out_sum")) out_sum = s.at("out_sum");
  if (s.count("sample_keys")) {
    at::Tensor keys = s.at("sample_keys");
    at::Tensor valid = keys != kNoKey;
    sample_keys = keys.masked_select(valid);
    sample = s.at("sample").index_select(0, valid.nonzero().squeeze(1));
  }
}

StatsCollector::StatsCollector(const ModelConfig& config, const CollectorOptions& options, Communicator* comm)
    : options_(options), comm_(comm) {
  const int64_t d = config.hidden_size;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const int64_t E = config.layer_experts[static_cast<size_t>(l)];
    if (E == 0) continue;
    LayerStats s;
    s.num_experts = E;
    s.count = at::zeros({E}, at::kLong);
    s.gate_sum = at::zeros({E}, at::kDouble);
    s.prob_sum = at::zeros({E}, at::kDouble);
    s.coact = at::zeros({E, E}, at::kLong);
    s.logit_sum = at::zeros({E}, at::kDouble);
    s.logit_gram = at::zeros({E, E}, at::kDouble);
    s.act_norm_sum = at::zeros({E}, at::kDouble);
    s.reap_sum = at::zeros({E}, at::kDouble);
    if (options.out_mean) s.out_sum = at::zeros({E, d}, at::kDouble);
    if (options.sample_size > 0) {
      s.sample_keys = at::empty({0}, at::kLong);
      s.sample = at::empty({0, d}, at::kFloat);
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
    at::Tensor keys = at::cat({s.sample_keys, keys_});
    at::Tensor rows = at::cat({s.sample, x.to(at::kCPU, at::kFloat)});
    keep_lowest(keys, rows, options_.sample_size);
    s.sample_keys = keys;
    s.sample = rows;
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
        if (n > 0) s.out_sum[e] += gated_mlp(expert, all.narrow(0, offset, n)).to(at::kCPU, at::kDouble).sum(0);
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
    for (at::Tensor* t : {&s.count, &s.gate_sum, &s.prob_sum, &s.coact, &s.logit_sum, &s.logit_gram, &s.act_norm_sum,
                          &s.reap_sum, &s.out_sum}) {
      if (!t->defined()) continue;
      *t = t->contiguous();
      host.all_reduce_sum(*t);
    }
    if (options_.sample_size > 0) {
      // Every rank's lowest keys, then the lowest of those.
      at::Tensor keys = s.sample_keys, rows = s.sample;
      std::vector<int64_t> send(static_cast<size_t>(host.size()), keys.numel());
      std::vector<int64_t> recv = host.exchange_counts(send);
      keys = host.all_to_all(keys.repeat({host.size()}), send, recv);
      rows = host.all_to_all(rows.repeat({host.size(), 1}), send, recv);
      keep_lowest(keys, rows, options_.sample_size);
      s.sample_keys = keys;
      s.sample = rows;
    }
  }
}

}  // namespace smoe
