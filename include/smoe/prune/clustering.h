// Clustering for expert grouping: k-means (k-means++ seeding, restarts), spectral
// clustering on a precomputed affinity, average-linkage agglomerative clustering.
// Deterministic for a given seed. Inputs and outputs are CPU float64 tensors and
// label vectors numbered in order of each cluster's first member.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace smoe {

// points: [n, d]. Returns labels [n] in [0, k).
std::vector<int64_t> kmeans(const at::Tensor& points, int64_t k, uint64_t seed, int restarts, int max_iterations = 300);

// affinity: [n, n], symmetric, non-negative. Normalised spectral clustering: the k
// leading eigenvectors of D^-1/2 A D^-1/2, rows scaled by D^-1/2 (as scikit-learn's
// spectral embedding does), then k-means.
std::vector<int64_t> spectral_clustering(const at::Tensor& affinity, int64_t k, uint64_t seed, int restarts);

// distances: [n, n], symmetric. Merges the closest pair of clusters (average of
// member distances) until k remain.
std::vector<int64_t> average_linkage(const at::Tensor& distances, int64_t k);

// Relabels so that clusters are numbered by their first member.
std::vector<int64_t> canonical_labels(const std::vector<int64_t>& labels);

}  // namespace smoe
