#!/usr/bin/python3
"""smoe's clustering and assignment against scikit-learn and scipy on the same
matrices:
  linear assignment = scipy.optimize.linear_sum_assignment on random cost matrices;
  spectral clustering vs SpectralClustering(affinity="precomputed") and average
  linkage vs AgglomerativeClustering(linkage="average"): adjusted Rand index 1.0 on
  well-separated cases; on 20 random cases the mean ARI is reported (and bounded)."""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering, SpectralClustering
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, failures, finish  # noqa: E402


def tool(path, request):
    p = subprocess.run([path], input=json.dumps(request), capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def separated(rng, sizes, noise):
    """An affinity of experts in well-separated blocks: router-logit-like columns."""
    centres = rng.normal(size=(len(sizes), 16)) * 3
    cols = np.concatenate([c + noise * rng.normal(size=(n, 16)) for c, n in zip(centres, sizes)])
    labels = np.concatenate([[i] * n for i, n in enumerate(sizes)])
    perm = rng.permutation(len(cols))
    return cols[perm], labels[perm]


def affinity(cols):
    norm = cols / np.linalg.norm(cols, axis=1, keepdims=True)
    return (norm @ norm.T + 1) / 2


def agglomerative(dist, k):
    try:
        model = AgglomerativeClustering(n_clusters=k, linkage="average", metric="precomputed")
    except TypeError:  # scikit-learn before 1.2
        model = AgglomerativeClustering(n_clusters=k, linkage="average", affinity="precomputed")
    return model.fit_predict(dist)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(0)

    # Linear assignment.
    worst = 0
    for trial in range(30):
        n = int(rng.integers(1, 60))
        cost = rng.normal(size=(n, n)) if trial % 2 else rng.integers(0, 5, size=(n, n)).astype(float)
        ours = np.array(tool(a.tool, {"op": "lsa", "matrix": cost.tolist()})["assignment"])
        rows, cols = linear_sum_assignment(cost)
        check(sorted(ours.tolist()) == list(range(n)), f"LSA n={n}: a permutation") if trial < 2 else None
        gap = abs(cost[np.arange(n), ours].sum() - cost[rows, cols].sum())
        worst = max(worst, gap)
        if trial % 2 and not np.array_equal(ours, cols):
            failures.append(f"LSA n={n}: assignment differs from scipy's")
    check(worst < 1e-9, f"linear assignment: 30 random cost matrices, total cost equal to scipy's (max gap {worst:.2g}); "
                        "same assignment where the optimum is unique")

    # Well-separated cases: ARI 1.0 for both methods.
    for sizes in ([4, 4], [3, 5, 8], [2, 6, 4, 4], [10, 12, 10, 12, 20]):
        cols, truth = separated(rng, sizes, 0.2)
        A = affinity(cols)
        k = len(sizes)
        ours = tool(a.tool, {"op": "spectral", "matrix": A.tolist(), "k": k, "seed": 0})["labels"]
        sk = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=0).fit_predict(A)
        check(adjusted_rand_score(sk, ours) == 1.0 and adjusted_rand_score(truth, ours) == 1.0,
              f"spectral, blocks {sizes}: ARI with scikit-learn {adjusted_rand_score(sk, ours):.3f}")
        D = np.linalg.norm(cols[:, None] - cols[None], axis=2)
        ours = tool(a.tool, {"op": "average", "matrix": D.tolist(), "k": k})["labels"]
        sk = agglomerative(D, k)
        check(adjusted_rand_score(sk, ours) == 1.0, f"average linkage, blocks {sizes}: ARI with scikit-learn "
                                                    f"{adjusted_rand_score(sk, ours):.3f}")

    # 20 random cases: report agreement.
    spectral_ari, linkage_ari = [], []
    for trial in range(20):
        n = int(rng.integers(8, 64))
        k = int(rng.integers(2, max(3, n // 4)))
        cols = rng.normal(size=(n, 16))
        A = affinity(cols)
        ours = tool(a.tool, {"op": "spectral", "matrix": A.tolist(), "k": k, "seed": trial})["labels"]
        sk = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=trial).fit_predict(A)
        spectral_ari.append(adjusted_rand_score(sk, ours))
        D = np.linalg.norm(cols[:, None] - cols[None], axis=2)
        ours = tool(a.tool, {"op": "average", "matrix": D.tolist(), "k": k})["labels"]
        linkage_ari.append(adjusted_rand_score(agglomerative(D, k), ours))
    print(f"random cases (20): spectral ARI with scikit-learn mean {np.mean(spectral_ari):.3f} "
          f"min {np.min(spectral_ari):.3f}; average linkage ARI mean {np.mean(linkage_ari):.3f} "
          f"min {np.min(linkage_ari):.3f}")
    check(np.mean(linkage_ari) == 1.0, "average linkage agrees with scikit-learn on every random case")
    check(np.mean(spectral_ari) >= 0.5, "spectral clustering agrees with scikit-learn on random cases (mean ARI >= 0.5)")
    finish("reference.clustering")


if __name__ == "__main__":
    main()
