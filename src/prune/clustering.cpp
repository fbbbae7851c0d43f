#include "smoe/prune/clustering.h"

#include <ATen/ATen.h>

#include <limits>
#include <map>
#include <random>

#include "smoe/core/error.h"

namespace smoe {

std::vector<int64_t> canonical_labels(const std::vector<int64_t>& labels) {
  std::map<int64_t, int64_t> rename;
  std::vector<int64_t> out(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    auto it = rename.find(labels[i]);
    if (it == rename.end()) it = rename.emplace(labels[i], static_cast<int64_t>(rename.size())).first;
    out[i] = it->second;
  }
  return out;
}

std::vector<int64_t> kmeans(const at::Tensor& points_in, int64_t k, uint64_t seed, int restarts, int max_iterations) {
  at::Tensor x = points_in.to(at::kDouble).contiguous();
  const int64_t n = x.size(0);
  SMOE_ASSERT(k >= 1 && k <= n, "k-means needs 1 <= k <= n, got k=", k, " n=", n);
  std::mt19937_64 rng(seed);
  std::vector<int64_t> best;
  double best_inertia = std::numeric_limits<double>::infinity();
  for (int run = 0; run < std::max(restarts, 1); ++run) {
    // k-means++ seeding.
    std::vector<int64_t> centre_ids = {static_cast<int64_t>(rng() % static_cast<uint64_t>(n))};
    at::Tensor d2 = (x - x[centre_ids[0]]).pow(2).sum(1);
    while (static_cast<int64_t>(centre_ids.size()) < k) {
      const double total = d2.sum().item<double>();
      int64_t pick = 0;
      if (total <= 0) {
        pick = static_cast<int64_t>(rng() % static_cast<uint64_t>(n));
      } else {
        double r = std::uniform_real_distribution<double>(0.0, total)(rng), acc = 0.0;
        auto dp = d2.accessor<double, 1>();
        for (pick = 0; pick < n - 1; ++pick) {
          acc += dp[pick];
          if (acc >= r) break;
        }
      }
      centre_ids.push_back(pick);
      d2 = at::minimum(d2, (x - x[pick]).pow(2).sum(1));
    }
    at::Tensor centres = x.index_select(0, at::tensor(centre_ids, at::kLong));
    at::Tensor labels;
    for (int it = 0; it < max_iterations; ++it) {
      at::Tensor dist = at::cdist(x, centres).pow(2);
      at::Tensor next = dist.argmin(1);
      if (labels.defined() && at::equal(next, labels)) break;
      labels = next;
      for (int64_t c = 0; c < k; ++c) {
        at::Tensor members = (labels == c).nonzero().squeeze(1);
        if (members.numel() > 0) centres[c] = x.index_select(0, members).mean(0);
      }
    }
    const double inertia = std::get<0>(at::cdist(x, centres).pow(2).min(1)).sum().item<double>();
    if (inertia < best_inertia - 1e-12) {
      best_inertia = inertia;
      auto lp = labels.contiguous();
      best.assign(lp.data_ptr<int64_t>(), lp.data_ptr<int64_t>() + n);
    }
  }
  return canonical_labels(best);
}

std::vector<int64_t> spectral_clustering(const at::Tensor& affinity, int64_t k, uint64_t seed, int restarts) {
  at::Tensor a = affinity.to(at::kDouble);
  const int64_t n = a.size(0);
  SMOE_ASSERT(a.dim() == 2 && a.size(1) == n, "affinity must be square");
  if (k >= n) {
    std::vector<int64_t> all(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
    return all;
  }
  at::Tensor deg = a.sum(1).clamp_min(1e-300);
  at::Tensor dinv = deg.rsqrt();
  at::Tensor m = dinv.unsqueeze(1) * a * dinv.unsqueeze(0);
  m = (m + m.t()) / 2;
  auto [values, vectors] = at::linalg_eigh(m);
  // eigh sorts ascending; the leading k are the last k columns.
  at::Tensor embedding = vectors.narrow(1, n - k, k) * dinv.unsqueeze(1);
  // Fix each eigenvector's sign so the embedding does not depend on the solver's choice.
  for (int64_t j = 0; j < k; ++j) {
    at::Tensor col = embedding.select(1, j);
    const int64_t at_max = col.abs().argmax().item<int64_t>();
    if (col[at_max].item<double>() < 0) col.neg_();
  }
  return kmeans(embedding, k, seed, restarts);
}

std::vector<int64_t> average_linkage(const at::Tensor& distances, int64_t k) {
  at::Tensor d = distances.to(at::kDouble).contiguous();
  const int64_t n = d.size(0);
  SMOE_ASSERT(k >= 1 && k <= n, "need 1 <= k <= n");
  // Cluster-to-cluster average distances, updated by the Lance-Williams rule.
  std::vector<std::vector<double>> dist(static_cast<size_t>(n), std::vector<double>(static_cast<size_t>(n)));
  auto dp = d.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) dist[static_cast<size_t>(i)][static_cast<size_t>(j)] = dp[i][j];
  std::vector<int64_t> size(static_cast<size_t>(n), 1), label(static_cast<size_t>(n));
  std::vector<char> alive(static_cast<size_t>(n), 1);
  for (int64_t i = 0; i < n; ++i) label[static_cast<size_t>(i)] = i;
  for (int64_t clusters = n; clusters > k; --clusters) {
    double best = std::numeric_limits<double>::infinity();
    int64_t bi = -1, bj = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (!alive[static_cast<size_t>(i)]) continue;
      for (int64_t j = i + 1; j < n; ++j) {
        if (!alive[static_cast<size_t>(j)]) continue;
        const double v = dist[static_cast<size_t>(i)][static_cast<size_t>(j)];
        if (v < best) {
          best = v;
          bi = i;
          bj = j;
        }
      }
    }
    // Merge bj into bi.
    const double si = static_cast<double>(size[static_cast<size_t>(bi)]);
    const double sj = static_cast<double>(size[static_cast<size_t>(bj)]);
    for (int64_t m = 0; m < n; ++m) {
      if (!alive[static_cast<size_t>(m)] || m == bi || m == bj) continue;
      const double v = (si * dist[static_cast<size_t>(bi)][static_cast<size_t>(m)] +
                        sj * dist[static_cast<size_t>(bj)][static_cast<size_t>(m)]) /
                       (si + sj);
      dist[static_cast<size_t>(bi)][static_cast<size_t>(m)] = dist[static_cast<size_t>(m)][static_cast<size_t>(bi)] = v;
    }
    size[static_cast<size_t>(bi)] += size[static_cast<size_t>(bj)];
    alive[static_cast<size_t>(bj)] = 0;
    for (auto& l : label)
      if (l == bj) l = bi;
  }
  return canonical_labels(label);
}

}  // namespace smoe
