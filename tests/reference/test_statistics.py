#!/usr/bin/python3
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
import subprocess
import sys

import numpy as np
import scipy.stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, script_args  # noqa: E402

TASKS = {"t1": 150, "t2": 90}  # examples per task
REPLICATES = 20000


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


def metric_of(metric, s, idx=None):
    """The metric of one task's samples (rows idx)."""
    if metric == "acc":
        a = np.array(s["multiple_choice"]["acc"])
        return (a if idx is None else a[idx]).mean()
    x, y = np.array(s["text"]["nll"]), np.array(s["text"]["tokens"])
    if idx is not None:
        x, y = x[idx], y[idx]
    return np.exp(x.sum() / y.sum())


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


def main():
    a = script_args()
    w = a.workdir
    rng = np.random.default_rng(7)

    def report(folder, metric, *extra, expect=0):
        p = subprocess.run([a.smoe, "report", "--results", folder, "--out", f"{folder}/report", "--metric", metric,
                            "--bootstrap", str(REPLICATES), *extra], capture_output=True, text=True, timeout=600)
        if p.returncode != expect:
            sys.exit(f"FAIL: smoe report {folder} exited {p.returncode}\n{p.stderr[-3000:]}")
        if expect:
            return p.stderr
        with open(f"{folder}/report/report.csv") as f:
            rows = {(r["task"], r["experts"], r["method"], r["factor"]): r for r in csv.DictReader(f)}
        return rows

    # ---- pooled metrics, standard errors, the paired bootstrap ------------------------
    d1 = f"{w}/stats"
    os.makedirs(d1)
    scratch4 = samples(rng, 0.7)
    pruned = samples(rng, 0.62)
    for t in TASKS:  # the pruned model: the scratch model's perplexity scores, somewhat worse
        pruned[t]["text"]["nll"] = list(np.array(scratch4[t]["text"]["nll"]) * rng.normal(1.08, 0.1, TASKS[t]))
        pruned[t]["text"]["tokens"] = scratch4[t]["text"]["tokens"]
        pruned[t]["text"]["bytes"] = scratch4[t]["text"]["bytes"]
    results_file(f"{d1}/scratch4.results.json", 4, "scratch", 1, scratch4)
    results_file(f"{d1}/pruned.results.json", 8, "frequency", 2, pruned)
    for metric in ("acc", "perplexity"):
        rows = report(d1, metric + ",none")
        for name, smp in (("scratch", scratch4), ("frequency", pruned)):
            r = rows[("all", "4" if name == "scratch" else "8", name, "1" if name == "scratch" else "2")]
            for m in ("acc", "exact_match", "perplexity", "bits_per_byte"):
                v, se = pooled(m, smp)
                got = (float(r[m]), float(r[m + "_stderr"]), float(r[m + "_low"]), float(r[m + "_high"]))
                want = (v, se, v - 1.959963984540054 * se, v + 1.959963984540054 * se)
                check(np.allclose(got, want, rtol=1e-7, atol=0), f"{name}, all tasks: {m} {got[0]:.6g} ± {got[1]:.4g} "
                      f"(NumPy {want[0]:.6g} ± {want[1]:.4g}) and its 95% interval")
        # One task: the paired bootstrap against SciPy's.
        r = rows[("t1", "8", "frequency", "2")]
        sa, sb = pruned["t1"], scratch4["t1"]
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
        check(abs(got[0] - lo) < 0.1 * se and abs(got[1] - hi) < 0.1 * se and
              abs(float(r["difference"]) - stat(*data)) < 1e-9 * max(1, abs(stat(*data))),
              f"t1, {metric}: paired bootstrap interval [{got[0]:.4g}, {got[1]:.4g}] (SciPy [{lo:.4g}, {hi:.4g}], "
              f"bootstrap SE {se:.3g})")
        # All tasks: stratified, against NumPy.
        r = rows[("all", "8", "frequency", "2")]
        (lo, hi), se = numpy_stratified(metric, pruned, scratch4, np.random.default_rng(2), 5000)
        got = (float(r["difference_low"]), float(r["difference_high"]))
        check(abs(got[0] - lo) < 0.1 * se and abs(got[1] - hi) < 0.1 * se,
              f"all tasks, {metric}: stratified paired bootstrap [{got[0]:.4g}, {got[1]:.4g}] (NumPy [{lo:.4g}, "
              f"{hi:.4g}], SE {se:.3g})")
        worse = got[1] < 0 if metric == "acc" else got[0] > 0
        check(r["vs_scratch"] == ("worse" if worse else "no significant difference" if got[0] <= 0 <= got[1]
                                  else "better"), f"all tasks, {metric}: verdict '{r['vs_scratch']}' follows the interval")

    # ---- the threshold rule on constructed results ---------------------------------------
    d2 = f"{w}/thresholds"
    os.makedirs(d2)
    base = {e: samples(rng, 0.8) for e in (1, 2, 4, 8)}
    for e, s in base.items():
        results_file(f"{d2}/scratch{e}.results.json", e, "scratch", 1, s)

    def same(e):  # exactly the scratch model's scores: a tie, never worse
        return json.loads(json.dumps(base[e]))

    def wrong(e):  # every answer wrong: worse
        s = same(e)
        for t in s:
            s[t]["multiple_choice"]["acc"] = [0.0] * TASKS[t]
        return s

    def noisy(e):  # two answers changed in each task: no significant difference
        s = same(e)
        for t in s:
            acc = s[t]["multiple_choice"]["acc"]
            i, j = acc.index(1.0), acc.index(0.0)
            acc[i], acc[j] = 0.0, 1.0
            acc[acc.index(1.0, i + 1)] = 0.0
        return s

    plan = {  # method -> pretrained experts -> factor -> scores
        "never": {4: {2: same, 4: same}, 8: {2: same, 4: noisy, 8: same}},
        "first": {4: {2: wrong, 4: same}, 8: {2: wrong, 4: same, 8: same}},
        "dip": {8: {2: noisy, 4: wrong, 8: same}},
        "late": {4: {2: wrong, 4: wrong}, 8: {2: same, 4: noisy, 8: wrong}},
    }
    for method, by_e in plan.items():
        for e, by_f in by_e.items():
            for f, make in by_f.items():
                results_file(f"{d2}/{method}-{e}-{f}.results.json", e, method, f, make(e // f))
    rows = report(d2, "acc,none")
    with open(f"{d2}/report/thresholds.csv") as f:
        lines = f.read().splitlines()
    want = ["experts,method,threshold_factor", "4,first,1", "4,late,1", "4,never,4",
            "8,dip,2", "8,first,1", "8,late,4", "8,never,8"]
    check(lines == want, f"thresholds.csv: ties never worse, worse at the smallest factor gives 1, a dip stops the "
          f"threshold before it, never worse gives the largest factor: {lines[1:]}")
    verdicts = {(m, f): rows[("all", "8", m, f)]["vs_scratch"] for m in plan for f in ("2", "4", "8") if ("all", "8", m, f) in rows}
    check(verdicts[("never", "2")] == "no significant difference" and float(rows[("all", "8", "never", "2")]["difference"]) == 0
          and verdicts[("first", "2")] == "worse" and verdicts[("late", "4")] == "no significant difference",
          f"verdicts: a tie and two changed answers are no significant difference, all wrong is worse")
    md = open(f"{d2}/report/report.md").read()
    check("- late: the threshold grows with the pretrained expert count (1 at 4, 4 at 8 experts)." in md and
          "- first: the threshold stays the same (1 at 4, 1 at 8 experts)." in md,
          "report.md says in words for which methods the threshold grows with the pretrained expert count")

    # A relative --out: the figures are drawn there too.
    p = subprocess.run([a.smoe, "report", "--results", ".", "--out", "relative", "--metric", "acc,none"], cwd=d2,
                       capture_output=True, text=True, timeout=600)
    check(p.returncode == 0 and all(os.path.exists(f"{d2}/relative/{n}.{x}") for n in ("quality", "thresholds", "pareto")
                                    for x in ("png", "svg")), f"a relative --out: exit {p.returncode}, the figures drawn")

    # ---- other examples, malformed samples: exit 2 naming the file ---------------------
    d3 = f"{w}/mismatch"
    os.makedirs(d3)
    other = same(4)
    other["t1"]["multiple_choice"]["line"] = [x + 1 for x in other["t1"]["multiple_choice"]["line"]]
    results_file(f"{d3}/scratch4.results.json", 4, "scratch", 1, base[4])
    results_file(f"{d3}/pruned.results.json", 8, "frequency", 2, other)
    err = report(d3, "acc,none", expect=2)
    check("pruned.results.json" in err and "same examples" in err, f"models scored on other lines: exit 2 ({err.strip()[-160:]})")
    d4 = f"{w}/malformed"
    os.makedirs(d4)
    results_file(f"{d4}/bad.results.json", 4, "scratch", 1, same(4))
    with open(f"{d4}/bad.results.json") as f:
        bad = json.load(f)
    bad["samples"]["t2"]["text"]["nll"][3] = "NaN"
    with open(f"{d4}/bad.results.json", "w") as f:
        json.dump(bad, f)
    err = report(d4, "acc,none", expect=2)
    check("bad.results.json" in err and "nll" in err, f"a sample that is not a number: exit 2 ({err.strip()[-160:]})")
    finish("reference.statistics")


if __name__ == "__main__":
    main()
