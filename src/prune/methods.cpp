#include "smoe/prune/methods.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "smoe/core/error.h"
#include "smoe/parallel/comm.h"
#include "smoe/model/decoder.h"
#include "smoe/prune/clustering.h"

namespace smoe {

namespace {

std::vector<double> doubles(const at::Tensor& t) {
  at::Tensor c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// Indices of the n largest scores, ties to the lower index, in expert order.
std::vector<int64_t> top_n(const std::vector<double>& score, int64_t n) {
  std::vector<int64_t> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
    return score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)];
  });
  idx.resize(static_cast<size_t>(n));
  std::sort(idx.begin(), idx.end());
  return idx;
}

// Cosine of the router-logit columns, from their Gram matrix.
at::Tensor logit_cosine(const LayerStats& s) {
  at::Tensor d = s.logit_gram.diagonal().clamp_min(1e-300).sqrt();
  return (s.logit_gram / (d.unsqueeze(1) * d.unsqueeze(0))).clamp(-1.0, 1.0);
}

// A plan keeping `kept` experts alone, dropping the rest.
LayerPlan keep_only(const LayerStats& s, const std::vector<int64_t>& kept) {
  LayerPlan lp;
  lp.layer = s.layer;
  lp.num_experts = s.num_experts;
  lp.group.assign(static_cast<size_t>(s.num_experts), -1);
  lp.weight.assign(static_cast<size_t>(s.num_experts), 0.0);
  for (size_t g = 0; g < kept.size(); ++g) {
    lp.group[static_cast<size_t>(kept[g])] = static_cast<int64_t>(g);
    lp.weight[static_cast<size_t>(kept[g])] = 1.0;
    lp.reference.push_back(kept[g]);
  }
  return lp;
}

// A plan merging each cluster (labels numbered 0..G-1): weights by frequency, the
// most used member as reference.
LayerPlan merge_clusters(const LayerStats& s, const std::vector<int64_t>& labels, const ClusterOptions& o) {
  LayerPlan lp;
  lp.layer = s.layer;
  lp.num_experts = s.num_experts;
  lp.group = labels;
  lp.weight.assign(labels.size(), 0.0);
  const std::vector<double> count = doubles(s.count);
  const std::vector<double> freq = o.merge_weight == MergeWeight::Count ? count : doubles(s.gate_sum);
  const int64_t G = *std::max_element(labels.begin(), labels.end()) + 1;
  for (int64_t g = 0; g < G; ++g) {
    std::vector<int64_t> members = lp.members(g);
    double total = 0;
    int64_t ref = members[0];
    for (int64_t e : members) {
      total += freq[static_cast<size_t>(e)];
      if (count[static_cast<size_t>(e)] > count[static_cast<size_t>(ref)]) ref = e;
    }
    for (int64_t e : members)
      lp.weight[static_cast<size_t>(e)] =
          total > 0 ? freq[static_cast<size_t>(e)] / total : 1.0 / static_cast<double>(members.size());
    lp.reference.push_back(ref);
  }
  return lp;
}

// NAEE: the kept subset whose layer output on the hidden sample is closest to the
// full layer's (squared error), router restricted to the kept experts.
class NaeeSearch {
 public:
  NaeeSearch(const MoeLayer& layer, const RouterConfig& router, const at::Tensor& sample)
      : router_(router), k_(router.top_k), num_experts_(layer.num_experts) {
    x_ = sample.to(layer.router.device(), layer.router.scalar_type());  // on the model's device
    logits_ = (layer.router_bias.defined() ? at::linear(x_, layer.router, layer.router_bias.to(x_.scalar_type()))
                                           : at::linear(x_, layer.router)).to(at::kDouble);
    if (layer.score_bias.defined()) bias_ = layer.score_bias.to(at::kDouble);
    const int64_t E = layer.num_experts;
    for (int64_t e = 0; e < E; ++e) outputs_.push_back(gated_mlp(layer.experts[static_cast<size_t>(e)], x_).to(at::kDouble));
    std::vector<int64_t> all(static_cast<size_t>(E));
    std::iota(all.begin(), all.end(), 0);
    full_ = output(all);
  }

  double loss(const std::vector<int64_t>& kept) const { return (output(kept) - full_).pow(2).sum().item<double>(); }

 private:
  // The layer's output with only `kept` experts, routed by the family's rule as the
  // pruned model routes (a subset no longer falls into the original groups).
  at::Tensor output(const std::vector<int64_t>& kept) const {
    at::Tensor idx = at::tensor(kept, at::kLong).to(x_.device());
    RouterConfig rc = router_;
    rc.top_k = std::min<int64_t>(k_, static_cast<int64_t>(kept.size()));
    if (static_cast<int64_t>(kept.size()) != num_experts_) rc.n_group = rc.topk_group = 1;
    Routing r = route_logits(rc, logits_.index_select(1, idx), bias_.defined() ? bias_.index_select(0, idx) : bias_);
    at::Tensor out = at::zeros({x_.size(0), outputs_[0].size(1)}, outputs_[0].options());
    for (size_t j = 0; j < kept.size(); ++j) {
      at::Tensor gate = (r.weights * (r.experts == static_cast<int64_t>(j))).sum(-1, true);
      out += gate * outputs_[static_cast<size_t>(kept[j])];
    }
    return out;
  }

  const RouterConfig& router_;
  int64_t k_, num_experts_;
  at::Tensor x_, logits_, bias_, full_;
  std::vector<at::Tensor> outputs_;
};

double choose(int64_t n, int64_t k) {
  double c = 1;
  for (int64_t i = 1; i <= k; ++i) c = c * static_cast<double>(n - k + i) / static_cast<double>(i);
  return c;
}

// The combination with lexicographic rank `index` of k out of n.
std::vector<int64_t> unrank(int64_t n, int64_t k, int64_t index) {
  std::vector<int64_t> out;
  int64_t next = 0;
  for (int64_t slot = 0; slot < k; ++slot) {
    for (int64_t v = next; v < n; ++v) {
      const int64_t below = static_cast<int64_t>(choose(n - v - 1, k - slot - 1));
      if (index < below) {
        out.push_back(v);
        next = v + 1;
        break;
      }
      index -= below;
    }
  }
  return out;
}

std::vector<int64_t> naee_subset(const NaeeSearch& search, int64_t E, int64_t G, int64_t limit, Communicator* comm) {
  const double combos = choose(E, G);
  if (combos <= static_cast<double>(limit)) {
    const int rank = comm ? comm->rank() : 0, ranks = comm ? comm->size() : 1;
    double best = std::numeric_limits<double>::infinity();
    int64_t best_index = -1;
    for (int64_t i = rank; i < static_cast<int64_t>(combos); i += ranks) {
      const double l = search.loss(unrank(E, G, i));
      if (l < best) {
        best = l;
        best_index = i;
      }
    }
    if (comm && ranks > 1) {
      // The lowest loss over the ranks, ties to the lowest index.
      at::Tensor all = comm->all_gather(at::tensor({best, static_cast<double>(best_index)}, at::kDouble));
      for (int64_t r = 0; r < all.size(0); ++r) {
        const double l = all[r][0].item<double>();
        const int64_t i = static_cast<int64_t>(all[r][1].item<double>());
        if (i >= 0 && (l < best || (l == best && i < best_index))) {
          best = l;
          best_index = i;
        }
      }
    }
    return unrank(E, G, best_index);
  }
  // Greedy: drop, one at a time, the expert whose removal costs least.
  std::vector<int64_t> kept(static_cast<size_t>(E));
  std::iota(kept.begin(), kept.end(), 0);
  while (static_cast<int64_t>(kept.size()) > G) {
    double best = std::numeric_limits<double>::infinity();
    size_t drop = 0;
    for (size_t j = 0; j < kept.size(); ++j) {
      std::vector<int64_t> trial = kept;
      trial.erase(trial.begin() + static_cast<std::ptrdiff_t>(j));
      const double l = search.loss(trial);
      if (l < best) {
        best = l;
        drop = j;
      }
    }
    kept.erase(kept.begin() + static_cast<std::ptrdiff_t>(drop));
  }
  return kept;
}

}  // namespace

std::vector<int64_t> layer_budgets(const TaskStatsData& stats, const ClusterOptions& o) {
  std::vector<int64_t> budget;
  if (o.budget == Budget::Uniform) {
    for (const auto& s : stats.layers) {
      int64_t g = o.experts > 0 ? o.experts : static_cast<int64_t>(std::floor(static_cast<double>(s.num_experts) / o.factor));
      SMOE_CHECK_INPUT(!(o.experts > s.num_experts), "--experts ", o.experts, " exceeds the ", s.num_experts,
                       " experts of layer ", s.layer);
      budget.push_back(std::max<int64_t>(1, g));
    }
    return budget;
  }
  SMOE_CHECK_INPUT(o.factor >= 1, "--budget adaptive needs --factor >= 1");
  std::vector<double> all;
  int64_t total = 0;
  std::vector<std::vector<double>> freq;
  for (const auto& s : stats.layers) {
    std::vector<double> f = doubles(s.count);
    for (double& v : f) v /= static_cast<double>(std::max<int64_t>(s.tokens * s.top_k, 1));
    all.insert(all.end(), f.begin(), f.end());
    freq.push_back(f);
    total += s.num_experts;
  }
  const int64_t keep = std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(total) / o.factor)));
  std::vector<double> sorted = all;
  std::sort(sorted.begin(), sorted.end(), std::greater<double>());
  const double threshold = sorted[static_cast<size_t>(std::min<int64_t>(keep, static_cast<int64_t>(sorted.size())) - 1)];
  for (const auto& f : freq) {
    int64_t n = 0;
    for (double v : f) n += v >= threshold ? 1 : 0;
    budget.push_back(std::max<int64_t>(1, n));
  }
  return budget;
}

Plan make_plan(const TaskStatsData& stats, const ClusterOptions& o, Decoder* decoder, Communicator* comm) {
  const std::vector<int64_t> budget = layer_budgets(stats, o);
  Plan plan;
  plan.router_policy = o.router_policy;
  for (size_t i = 0; i < stats.layers.size(); ++i) {
    const LayerStats& s = stats.layers[i];
    const int64_t E = s.num_experts, G = std::min(budget[i], E);
    const std::vector<double> count = doubles(s.count);
    if (o.method == Method::Frequency) {
      plan.layers.push_back(keep_only(s, top_n(count, G)));
    } else if (o.method == Method::Reap) {
      std::vector<double> score = doubles(s.reap_sum);
      for (size_t e = 0; e < score.size(); ++e) score[e] = count[e] > 0 ? score[e] / count[e] : 0.0;
      plan.layers.push_back(keep_only(s, top_n(score, G)));
    } else if (o.method == Method::Uncurl) {
      at::Tensor affinity = (logit_cosine(s) + 1.0) / 2.0;
      plan.layers.push_back(merge_clusters(s, spectral_clustering(affinity, G, o.seed, o.restarts), o));
    } else if (o.method == Method::McSmoe) {
      const std::vector<int64_t> centres = top_n(count, G);
      at::Tensor cos = logit_cosine(s);
      std::vector<int64_t> labels(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) {
        int64_t best = 0;
        for (size_t c = 0; c < centres.size(); ++c) {
          if (centres[c] == e) {
            best = static_cast<int64_t>(c);
            break;
          }
          if (cos[e][centres[c]].item<double>() > cos[e][centres[static_cast<size_t>(best)]].item<double>())
            best = static_cast<int64_t>(c);
        }
        labels[static_cast<size_t>(e)] = best;
      }
      plan.layers.push_back(merge_clusters(s, canonical_labels(labels), o));
    } else if (o.method == Method::HcSmoe) {
      SMOE_CHECK_INPUT(s.out_mean.defined(), stats.path, ": hc-smoe needs out_mean; collect with --out-mean");
      plan.layers.push_back(merge_clusters(s, average_linkage(at::cdist(s.out_mean, s.out_mean), G), o));
    } else {  // naee
      SMOE_CHECK_INPUT(s.hidden_sample.defined(), stats.path, ": naee needs hidden_sample; collect with --sample N");
      SMOE_CHECK_INPUT(decoder != nullptr, "naee needs the model: give --model DIR");
      decoder->load_layer(s.layer);
      const MoeLayer* layer = decoder->moe_layer(s.layer);
      SMOE_CHECK_INPUT(layer && layer->num_experts == E, "layer ", s.layer, " of the model does not match ",
                       stats.path);
      NaeeSearch search(*layer, decoder->config().router, s.hidden_sample);
      plan.layers.push_back(keep_only(s, naee_subset(search, E, G, o.naee_limit, comm)));
      decoder->release_layer(s.layer);
    }
  }
  return plan;
}

}  // namespace smoe
