"""smoe's clustering and assignment against scikit-learn and scipy on the same
matrices:
  linear assignment = scipy.optimize.linear_sum_assignment on random cost matrices;
  spectral clustering vs SpectralClustering(affinity="precomputed") and average
  linkage vs AgglomerativeClustering(linkage="average"): adjusted Rand index 1.0 on
  well-separated cases; on 20 random cases the mean ARI is reported (and bounded)."""

import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering, SpectralClustering
from sklearn.metrics import adjusted_rand_score

LSA_TRIALS = 30
BLOCKS = ([4, 4], [3, 5, 8], [2, 6, 4, 4], [10, 12, 10, 12, 20])
RANDOM_TRIALS = 20


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


def draw_inputs():
    """Every matrix, drawn from one generator in a fixed order (cheap: done at import,
    so that the test ids can name the sizes)."""
    rng = np.random.default_rng(0)
    lsa = []
    for trial in range(LSA_TRIALS):
        n = int(rng.integers(1, 60))
        cost = rng.normal(size=(n, n)) if trial % 2 else rng.integers(0, 5, size=(n, n)).astype(float)
        lsa.append(cost)
    blocks = [separated(rng, sizes, 0.2) for sizes in BLOCKS]
    random_cases = []
    for trial in range(RANDOM_TRIALS):
        n = int(rng.integers(8, 64))
        k = int(rng.integers(2, max(3, n // 4)))
        random_cases.append((k, rng.normal(size=(n, 16))))
    return lsa, blocks, random_cases


LSA, SEPARATED, RANDOM = draw_inputs()


def ask(run, tool, requests):
    """Requests to the clustering tool, one process for all: a JSON line each on
    stdin, an answer line each on stdout."""
    out = run([tool], input="".join(json.dumps(r) + "\n" for r in requests)).stdout.splitlines()
    assert len(out) == len(requests), f"{len(requests)} requests, {len(out)} answers"
    return [json.loads(line) for line in out]


# ---- linear assignment ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def lsa(run, tool):
    """Per trial: smoe's assignment, scipy's, and the gap between their total costs."""
    out = []
    answers = ask(run, tool, [{"op": "lsa", "matrix": cost.tolist()} for cost in LSA])
    for cost, answer in zip(LSA, answers):
        n = len(cost)
        ours = np.array(answer["assignment"])
        rows, cols = linear_sum_assignment(cost)
        gap = abs(cost[np.arange(n), ours].sum() - cost[rows, cols].sum())
        out.append(dict(n=n, ours=ours, scipy=cols, gap=gap))
    print(f"\nlinear assignment: {LSA_TRIALS} random cost matrices, max gap in total cost "
          f"{max(t['gap'] for t in out):.2g}")
    return out


@pytest.mark.parametrize("trial", [0, 1], ids=lambda t: f"trial{t}-n={len(LSA[t])}")
def test_lsa_assignment_is_a_permutation(lsa, trial):
    t = lsa[trial]
    assert sorted(t["ours"].tolist()) == list(range(t["n"])), f"LSA n={t['n']}: {t['ours'].tolist()}"


def test_lsa_total_cost_equals_scipys(lsa):
    worst = max(t["gap"] for t in lsa)
    assert worst < 1e-9, f"{LSA_TRIALS} random cost matrices: max gap in total cost {worst:.2g}"


# Odd trials: normal costs, whose optimum is unique (even ones: small integers, ties).
@pytest.mark.parametrize("trial", range(1, LSA_TRIALS, 2), ids=lambda t: f"trial{t}-n={len(LSA[t])}")
def test_lsa_assignment_equals_scipys_where_the_optimum_is_unique(lsa, trial):
    t = lsa[trial]
    assert np.array_equal(t["ours"], t["scipy"]), (
        f"LSA n={t['n']}: assignment differs from scipy's:\n{t['ours'].tolist()}\n{t['scipy'].tolist()}")


# ---- well-separated blocks: ARI 1.0 for both methods -----------------------------------------

@pytest.fixture(scope="module", params=range(len(BLOCKS)),
                ids=[f"blocks={'+'.join(map(str, s))}" for s in BLOCKS])
def blocks(request, run, tool):
    """One well-separated case: smoe's and scikit-learn's spectral clustering of the
    affinity and average linkage of the distances."""
    sizes = BLOCKS[request.param]
    cols, truth = SEPARATED[request.param]
    A = affinity(cols)
    k = len(sizes)
    D = np.linalg.norm(cols[:, None] - cols[None], axis=2)
    spectral, average = (a["labels"] for a in ask(run, tool, [
        {"op": "spectral", "matrix": A.tolist(), "k": k, "seed": 0},
        {"op": "average", "matrix": D.tolist(), "k": k}]))
    sk_spectral = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=0).fit_predict(A)
    sk_average = agglomerative(D, k)
    r = dict(sizes=sizes, spectral_sk=adjusted_rand_score(sk_spectral, spectral),
             spectral_truth=adjusted_rand_score(truth, spectral), average_sk=adjusted_rand_score(sk_average, average))
    print(f"\nblocks {sizes}: spectral ARI with scikit-learn {r['spectral_sk']:.3f}, with the truth "
          f"{r['spectral_truth']:.3f}; average linkage ARI with scikit-learn {r['average_sk']:.3f}")
    return r


def test_spectral_finds_the_blocks_as_scikit_learn_does(blocks):
    assert blocks["spectral_sk"] == 1.0, f"spectral, blocks {blocks['sizes']}: ARI with scikit-learn {blocks['spectral_sk']}"
    assert blocks["spectral_truth"] == 1.0, f"spectral, blocks {blocks['sizes']}: ARI with the truth {blocks['spectral_truth']}"


def test_average_linkage_finds_the_blocks_as_scikit_learn_does(blocks):
    assert blocks["average_sk"] == 1.0, f"average linkage, blocks {blocks['sizes']}: ARI with scikit-learn {blocks['average_sk']}"


# ---- 20 random cases: agreement reported and bounded --------------------------------------------

@pytest.fixture(scope="module")
def random_agreement(run, tool):
    spectral_ari, linkage_ari = [], []
    cases = [(k, affinity(cols), np.linalg.norm(cols[:, None] - cols[None], axis=2)) for k, cols in RANDOM]
    requests = []
    for trial, (k, A, D) in enumerate(cases):
        requests += [{"op": "spectral", "matrix": A.tolist(), "k": k, "seed": trial},
                     {"op": "average", "matrix": D.tolist(), "k": k}]
    answers = ask(run, tool, requests)
    for trial, (k, A, D) in enumerate(cases):
        sk = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=trial).fit_predict(A)
        spectral_ari.append(adjusted_rand_score(sk, answers[2 * trial]["labels"]))
        linkage_ari.append(adjusted_rand_score(agglomerative(D, k), answers[2 * trial + 1]["labels"]))
    print(f"\nrandom cases ({RANDOM_TRIALS}): spectral ARI with scikit-learn mean {np.mean(spectral_ari):.3f} "
          f"min {np.min(spectral_ari):.3f}; average linkage ARI mean {np.mean(linkage_ari):.3f} "
          f"min {np.min(linkage_ari):.3f}")
    return dict(spectral=spectral_ari, linkage=linkage_ari)


def test_average_linkage_agrees_with_scikit_learn_on_every_random_case(random_agreement):
    ari = random_agreement["linkage"]
    assert np.mean(ari) == 1.0, f"average linkage ARI per case: {np.round(ari, 3).tolist()}"


def test_spectral_agrees_with_scikit_learn_on_random_cases_on_average(random_agreement):
    ari = random_agreement["spectral"]
    assert np.mean(ari) >= 0.5, f"spectral mean ARI {np.mean(ari):.3f}; per case {np.round(ari, 3).tolist()}"
