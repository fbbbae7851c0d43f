"""The statistics of `smoe report` against plain NumPy/SciPy computations on fixed
inputs: results files with per-example scores are built here, the report is run on
them, and its numbers are recomputed independently.

- Metrics over all tasks pooled and their standard errors (report.csv rows 'all'):
  acc / exact_match as NumPy means with std(ddof=1)/sqrt(n); perplexity and bits per
  byte by the delta method written with np.cov (gradient' Cov gradient / n).
- The paired bootstrap's 95% interval: one task against scipy.stats.bootstrap
  (paired, percentile); tasks pooled against a NumPy stratified bootstrap; both
  within a tenth of the bootstrap standard error (Monte Carlo noise).
- The verdicts and the threshold rule on constructed results: ties, a model worse
  at the smallest factor, a non-monotone curve, a model never worse; the words
  about growth with the pretrained expert count.
- Models scored on other examples, and malformed samples: exit 2 naming the file."""

import csv
import json
import os

import numpy as np
import pytest
import scipy.stats

TASKS = {"t1": 150, "t2": 90}  # examples per task
REPLICATES = 20000
Z95 = 1.959963984540054
METRICS = ("acc", "exact_match", "perplexity", "bits_per_byte")
# The models of the first study: name -> its report.csv key (experts, method, factor).
MODELS = {"scratch": ("4", "scratch", "1"), "frequency": ("8", "frequency", "2")}


def samples(rng, acc_p):
    """Per-example scores of one model on every task: text (nll, tokens, bytes),
    multiple choice (acc, acc_norm), generation (exact match)."""
    out = {}
    for t, n in TASKS.items():
        tokens = rng.integers(5, 13, n).astype(float)
        out[t] = {
            "text": {"line": list(range(1, 3 * n, 3)), "nll": list(rng.gamma(2.0, 0.6, n) * tokens),
                     "tokens": list(tokens), "bytes": list(tokens + 1)},
            "multiple_choice": {"line": list(range(2, 3 * n + 1, 3)),
                                "acc": list((rng.random(n) < acc_p).astype(float)),
                                "acc_norm": list((rng.random(n) < acc_p).astype(float))},
            "generate": {"line": list(range(3, 3 * n + 2, 3)), "exact_match": list((rng.random(n) < 0.5).astype(float))},
        }
    return out


def results_file(path, experts, method, factor, smp):
    """A results file as smoe eval writes it (values computed here)."""
    res = {}
    for t, s in smp.items():
        acc = np.array(s["multiple_choice"]["acc"])
        nll, tok = np.array(s["text"]["nll"]), np.array(s["text"]["tokens"])
        res[t] = {"alias": t, "acc,none": acc.mean(), "acc_stderr,none": acc.std(ddof=1) / np.sqrt(len(acc)),
                  "perplexity,none": float(np.exp(nll.sum() / tok.sum()))}
    with open(path, "w") as f:
        json.dump({"results": res, "samples": smp,
                   "smoe": {"labels": {"experts": str(experts), "method": method, "factor": str(factor)},
                            "cost": {"expert_parameters": 1000 * experts / factor, "checkpoint_bytes": 4000 * experts / factor}}},
                  f)


def pooled(metric, smp):
    """NumPy: the metric over all tasks and its standard error."""
    if metric in ("acc", "exact_match"):
        kind = "multiple_choice" if metric == "acc" else "generate"
        x = np.concatenate([s[kind][metric] for s in smp.values()])
        return x.mean(), x.std(ddof=1) / np.sqrt(len(x))
    den_key = "tokens" if metric == "perplexity" else "bytes"
    x = np.concatenate([s["text"]["nll"] for s in smp.values()])
    y = np.concatenate([s["text"][den_key] for s in smp.values()])
    r = x.mean() / y.mean()
    cov = np.cov(np.vstack([x, y]))  # ddof=1
    if metric == "perplexity":
        value = np.exp(r)
        grad = value * np.array([1 / y.mean(), -x.mean() / y.mean() ** 2])
    else:
        value = r / np.log(2)
        grad = np.array([1 / y.mean(), -x.mean() / y.mean() ** 2]) / np.log(2)
    return value, np.sqrt(grad @ cov @ grad / len(x))


def numpy_stratified(metric, a, b, rng, reps):
    """NumPy: the paired bootstrap of A - B, each task resampled on its own, pooled."""
    diffs = np.empty(reps)
    kind, cols = ("multiple_choice", ("acc",)) if metric == "acc" else ("text", ("nll", "tokens"))
    for r in range(reps):
        sa, sb = {c: 0.0 for c in ("n", "d")}, {c: 0.0 for c in ("n", "d")}
        for t in TASKS:
            idx = rng.integers(0, TASKS[t], TASKS[t])
            for s, acc in ((a[t], sa), (b[t], sb)):
                acc["n"] += np.array(s[kind][cols[0]])[idx].sum()
                acc["d"] += len(idx) if metric == "acc" else np.array(s[kind][cols[1]])[idx].sum()
        f = (lambda n, d: n / d) if metric == "acc" else (lambda n, d: np.exp(n / d))
        diffs[r] = f(sa["n"], sa["d"]) - f(sb["n"], sb["d"])
    return np.percentile(diffs, [2.5, 97.5]), diffs.std()


def report(run, smoe, folder, metric, expect=0):
    """smoe report on `folder` (into folder/report): report.csv's rows by (task,
    experts, method, factor), or with `expect` != 0 its error output."""
    p = run([smoe, "report", "--results", folder, "--out", f"{folder}/report", "--metric", metric,
             "--bootstrap", str(REPLICATES)], expect=expect)
    if expect:
        return p.stderr
    with open(f"{folder}/report/report.csv") as f:
        return {(r["task"], r["experts"], r["method"], r["factor"]): r for r in csv.DictReader(f)}


# ---- the scores, all drawn from one generator in a fixed order ---------------------------

@pytest.fixture(scope="module")
def scores():
    """Every model's per-example scores: the first study's scratch and pruned models,
    then the threshold study's scratch models at 1, 2, 4 and 8 experts."""
    rng = np.random.default_rng(7)
    scratch4 = samples(rng, 0.7)
    pruned = samples(rng, 0.62)
    for t in TASKS:  # the pruned model: the scratch model's perplexity scores, somewhat worse
        pruned[t]["text"]["nll"] = list(np.array(scratch4[t]["text"]["nll"]) * rng.normal(1.08, 0.1, TASKS[t]))
        pruned[t]["text"]["tokens"] = scratch4[t]["text"]["tokens"]
        pruned[t]["text"]["bytes"] = scratch4[t]["text"]["bytes"]
    base = {e: samples(rng, 0.8) for e in (1, 2, 4, 8)}
    return {"scratch": scratch4, "frequency": pruned, "base": base}


def same(scores, e):  # exactly the scratch model's scores: a tie, never worse
    return json.loads(json.dumps(scores["base"][e]))


def wrong(scores, e):  # every answer wrong: worse
    s = same(scores, e)
    for t in s:
        s[t]["multiple_choice"]["acc"] = [0.0] * TASKS[t]
    return s


def noisy(scores, e):  # two answers changed in each task: no significant difference
    s = same(scores, e)
    for t in s:
        acc = s[t]["multiple_choice"]["acc"]
        i, j = acc.index(1.0), acc.index(0.0)
        acc[i], acc[j] = 0.0, 1.0
        acc[acc.index(1.0, i + 1)] = 0.0
    return s


# ---- pooled metrics, standard errors, the paired bootstrap -------------------------------

@pytest.fixture(scope="module")
def stats_folder(scores, workdir):
    d1 = f"{workdir}/stats"
    os.makedirs(d1)
    results_file(f"{d1}/scratch4.results.json", 4, "scratch", 1, scores["scratch"])
    results_file(f"{d1}/pruned.results.json", 8, "frequency", 2, scores["frequency"])
    return d1


@pytest.fixture(scope="module", params=["acc", "perplexity"], ids=lambda m: f"report={m}")
def stats_report(request, stats_folder, run, smoe):
    """smoe report on the first study with --metric <metric>,none: (metric, rows)."""
    metric = request.param
    return metric, report(run, smoe, stats_folder, metric + ",none")


@pytest.mark.parametrize("model", MODELS, ids=[f"model={m}" for m in MODELS])
@pytest.mark.parametrize("m", METRICS, ids=[f"pooled={m}" for m in METRICS])
def test_pooled_metric_stderr_and_interval_match_numpy(stats_report, scores, model, m):
    _, rows = stats_report
    r = rows[("all", *MODELS[model])]
    v, se = pooled(m, scores[model])
    got = (float(r[m]), float(r[m + "_stderr"]), float(r[m + "_low"]), float(r[m + "_high"]))
    want = (v, se, v - Z95 * se, v + Z95 * se)
    print(f"{model}, all tasks: {m} {got[0]:.6g} ± {got[1]:.4g} (NumPy {want[0]:.6g} ± {want[1]:.4g}) "
          f"and its 95% interval")
    assert got == pytest.approx(want, rel=1e-7, abs=0), (
        f"{model}, all tasks: {m} (value, stderr, low, high) {got}, NumPy {want}")


def test_one_task_paired_bootstrap_matches_scipy(stats_report, scores):
    metric, rows = stats_report
    r = rows[("t1", "8", "frequency", "2")]
    sa, sb = scores["frequency"]["t1"], scores["scratch"]["t1"]
    if metric == "acc":
        data = (np.array(sa["multiple_choice"]["acc"]), np.array(sb["multiple_choice"]["acc"]))
        stat = lambda x, y: x.mean() - y.mean()  # noqa: E731
    else:
        data = tuple(np.array(s["text"][c]) for s in (sa, sb) for c in ("nll", "tokens"))
        stat = lambda x, y, u, v: np.exp(x.sum() / y.sum()) - np.exp(u.sum() / v.sum())  # noqa: E731
    ref = scipy.stats.bootstrap(data, stat, paired=True, vectorized=False, method="percentile",
                                n_resamples=REPLICATES, random_state=np.random.default_rng(1))
    lo, hi, se = ref.confidence_interval.low, ref.confidence_interval.high, ref.standard_error
    got = (float(r["difference_low"]), float(r["difference_high"]))
    want = stat(*data)
    print(f"t1, {metric}: paired bootstrap interval [{got[0]:.4g}, {got[1]:.4g}] (SciPy [{lo:.4g}, {hi:.4g}], "
          f"bootstrap SE {se:.3g}); difference {r['difference']} (NumPy {want:.6g})")
    assert abs(got[0] - lo) < 0.1 * se and abs(got[1] - hi) < 0.1 * se, (
        f"t1, {metric}: interval [{got[0]:.6g}, {got[1]:.6g}], SciPy [{lo:.6g}, {hi:.6g}], "
        f"allowed 0.1 x SE = {0.1 * se:.3g}")
    assert abs(float(r["difference"]) - want) < 1e-9 * max(1, abs(want)), (
        f"t1, {metric}: difference {r['difference']}, NumPy {want!r}")


def test_pooled_stratified_bootstrap_matches_numpy(stats_report, scores):
    metric, rows = stats_report
    r = rows[("all", "8", "frequency", "2")]
    (lo, hi), se = numpy_stratified(metric, scores["frequency"], scores["scratch"], np.random.default_rng(2), 5000)
    got = (float(r["difference_low"]), float(r["difference_high"]))
    print(f"all tasks, {metric}: stratified paired bootstrap [{got[0]:.4g}, {got[1]:.4g}] (NumPy [{lo:.4g}, "
          f"{hi:.4g}], SE {se:.3g})")
    assert abs(got[0] - lo) < 0.1 * se and abs(got[1] - hi) < 0.1 * se, (
        f"all tasks, {metric}: interval [{got[0]:.6g}, {got[1]:.6g}], NumPy [{lo:.6g}, {hi:.6g}], "
        f"allowed 0.1 x SE = {0.1 * se:.3g}")


def test_verdict_follows_the_interval(stats_report):
    metric, rows = stats_report
    r = rows[("all", "8", "frequency", "2")]
    lo, hi = float(r["difference_low"]), float(r["difference_high"])
    worse = hi < 0 if metric == "acc" else lo > 0
    want = "worse" if worse else "no significant difference" if lo <= 0 <= hi else "better"
    print(f"all tasks, {metric}: verdict '{r['vs_scratch']}' for the interval [{lo:.4g}, {hi:.4g}]")
    assert r["vs_scratch"] == want, f"all tasks, {metric}: verdict '{r['vs_scratch']}' for interval [{lo}, {hi}]"


# ---- the threshold rule on constructed results ---------------------------------------------

PLAN = {  # method -> pretrained experts -> factor -> scores
    "never": {4: {2: same, 4: same}, 8: {2: same, 4: noisy, 8: same}},
    "first": {4: {2: wrong, 4: same}, 8: {2: wrong, 4: same, 8: same}},
    "dip": {8: {2: noisy, 4: wrong, 8: same}},
    "late": {4: {2: wrong, 4: wrong}, 8: {2: same, 4: noisy, 8: wrong}},
}


@pytest.fixture(scope="module")
def thresholds(scores, workdir, run, smoe):
    """The threshold study: scratch models at 1..8 experts and the PLAN's pruned
    models, reported with --metric acc,none."""
    d2 = f"{workdir}/thresholds"
    os.makedirs(d2)
    for e, s in scores["base"].items():
        results_file(f"{d2}/scratch{e}.results.json", e, "scratch", 1, s)
    for method, by_e in PLAN.items():
        for e, by_f in by_e.items():
            for f, make in by_f.items():
                results_file(f"{d2}/{method}-{e}-{f}.results.json", e, method, f, make(scores, e // f))
    rows = report(run, smoe, d2, "acc,none")
    with open(f"{d2}/report/thresholds.csv") as f:
        lines = f.read().splitlines()
    with open(f"{d2}/report/report.md") as f:
        md = f.read()
    print(f"\nthresholds.csv: {lines[1:]}")
    return dict(folder=d2, rows=rows, lines=lines, md=md)


def test_thresholds_csv_follows_the_threshold_rule(thresholds):
    """Ties are never worse, worse at the smallest factor gives 1, a dip stops the
    threshold before it, never worse gives the largest factor."""
    want = ["experts,method,threshold_factor", "4,first,1", "4,late,1", "4,never,4",
            "8,dip,2", "8,first,1", "8,late,4", "8,never,8"]
    assert thresholds["lines"] == want


def test_verdicts_tie_and_two_changes_not_significant_all_wrong_worse(thresholds):
    rows = thresholds["rows"]
    verdicts = {(m, f): rows[("all", "8", m, f)]["vs_scratch"]
                for m in PLAN for f in ("2", "4", "8") if ("all", "8", m, f) in rows}
    print(f"verdicts at 8 experts: {verdicts}")
    assert verdicts[("never", "2")] == "no significant difference", "a tie"
    assert float(rows[("all", "8", "never", "2")]["difference"]) == 0, "a tie's difference"
    assert verdicts[("first", "2")] == "worse", "every answer wrong"
    assert verdicts[("late", "4")] == "no significant difference", "two answers changed in each task"


def test_report_md_says_for_which_methods_the_threshold_grows(thresholds):
    md = thresholds["md"]
    assert "- late: the threshold grows with the pretrained expert count (1 at 4, 4 at 8 experts)." in md
    assert "- first: the threshold stays the same (1 at 4, 1 at 8 experts)." in md


def test_relative_out_draws_the_figures(thresholds, run, smoe):
    d2 = thresholds["folder"]
    run([smoe, "report", "--results", ".", "--out", "relative", "--metric", "acc,none"], cwd=d2)
    missing = [f"{n}.{x}" for n in ("quality", "thresholds", "pareto") for x in ("png", "svg")
               if not os.path.exists(f"{d2}/relative/{n}.{x}")]
    assert not missing, f"a relative --out: figures not drawn: {missing}"


# ---- other examples, malformed samples: exit 2 naming the file -----------------------------

def test_models_scored_on_other_examples_exit_2_naming_the_file(scores, workdir, run, smoe):
    d3 = f"{workdir}/mismatch"
    os.makedirs(d3)
    other = same(scores, 4)
    other["t1"]["multiple_choice"]["line"] = [x + 1 for x in other["t1"]["multiple_choice"]["line"]]
    results_file(f"{d3}/scratch4.results.json", 4, "scratch", 1, scores["base"][4])
    results_file(f"{d3}/pruned.results.json", 8, "frequency", 2, other)
    err = report(run, smoe, d3, "acc,none", expect=2)
    print(f"models scored on other lines: {err.strip()[-160:]}")
    assert "pruned.results.json" in err and "same examples" in err, err.strip()[-300:]


def test_sample_that_is_not_a_number_exits_2_naming_the_file(scores, workdir, run, smoe):
    d4 = f"{workdir}/malformed"
    os.makedirs(d4)
    results_file(f"{d4}/bad.results.json", 4, "scratch", 1, same(scores, 4))
    with open(f"{d4}/bad.results.json") as f:
        bad = json.load(f)
    bad["samples"]["t2"]["text"]["nll"][3] = "NaN"
    with open(f"{d4}/bad.results.json", "w") as f:
        json.dump(bad, f)
    err = report(run, smoe, d4, "acc,none", expect=2)
    print(f"a sample that is not a number: {err.strip()[-160:]}")
    assert "bad.results.json" in err and "nll" in err, err.strip()[-300:]
