#!/usr/bin/python3
"""A small study through train -> collect -> cluster -> prune -> eval -> report:
the report's table holds one row per (task, model) and one per model over all
tasks, with the from-scratch baseline and the paired comparison beside each pruned
model; its CSV reads back; thresholds.csv and the figures (PNG and SVG) are there,
the quality figure with a panel per pretrained expert count. (The statistics
themselves: test_statistics.py.)"""

import csv
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, script_args  # noqa: E402


def main():
    a = script_args()
    w = a.workdir

    def smoe(*args):
        p = subprocess.run([a.smoe, *args, "--threads", "2"] if args[0] not in ("data", "report", "prune") else [a.smoe, *args],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            sys.exit(f"FAIL: smoe {' '.join(args)}\n{p.stderr[-3000:]}")
        return p

    suite = f"{w}/suite"
    smoe("data", "synth", "--out", suite, "--facts", "40", "--train", "600", "--eval", "20")
    tasks = ["capitals", "years"]
    train = ["--suite", suite, "--steps", "80", "--batch", "16", "--context", "48", "--hidden", "48", "--ffn", "64",
             "--log-every", "1000"]
    smoe("train", "--out", f"{w}/e8", "--experts", "8", *train)
    for e in (4, 2):
        smoe("train", "--out", f"{w}/scratch{e}", "--experts", str(e), *train)
    smoe("collect", "--model", f"{w}/e8", "--out", f"{w}/stats.h5", "--max-tokens", "3000",
         *[x for t in tasks for x in ("--task", f"{t}={suite}/{t}/train.jsonl")])
    evals = [x for t in tasks for x in ("--task", f"{t}={suite}/{t}/eval.jsonl")]
    os.makedirs(f"{w}/results")
    smoe("eval", "--model", f"{w}/e8", *evals, "--out", f"{w}/results/full.results.json",
         "--label", "experts=8", "--label", "method=full", "--label", "factor=1")
    for e in (4, 2):
        smoe("eval", "--model", f"{w}/scratch{e}", *evals, "--out", f"{w}/results/scratch{e}.results.json",
             "--label", f"experts={e}", "--label", "method=scratch", "--label", "factor=1")
    for method in ("uncurl", "frequency"):
        for factor in (2, 4):
            plan = f"{w}/plan-{method}-{factor}.h5"
            smoe("cluster", "--stats", f"{w}/stats.h5", "--task", "capitals", "--method", method, "--factor",
                 str(factor), "--out", plan)
            smoe("prune", "--model", f"{w}/e8", "--plan", plan, "--out", f"{w}/pruned-{method}-{factor}")
            # No labels: the report reads method and factor from the plan in the checkpoint.
            smoe("eval", "--model", f"{w}/pruned-{method}-{factor}", *evals,
                 "--out", f"{w}/results/{method}-{factor}.results.json")
    smoe("report", "--results", f"{w}/results", "--out", f"{w}/report", "--metric", "perplexity,none")

    with open(f"{w}/report/report.csv") as f:
        rows = list(csv.DictReader(f))
    keys = {(r["task"], r["experts"], r["method"], r["factor"]) for r in rows}
    expected = {(t, e, m, f) for t in tasks + ["all"] for (e, m, f) in
                [("8", "full", "1"), ("4", "scratch", "1"), ("2", "scratch", "1")] +
                [("8", m, str(fa)) for m in ("uncurl", "frequency") for fa in (2, 4)]}
    check(keys == expected, f"report.csv: {len(rows)} rows, one per task and model (labels or plan provenance)")
    pruned = [r for r in rows if r["method"] in ("uncurl", "frequency")]
    check(all(r["scratch_perplexity"] and r["difference_low"] and r["perplexity_stderr"] and r["vs_scratch"] in
              ("worse", "better", "no significant difference") for r in pruned),
          "every pruned row has its from-scratch baseline (experts / factor), the paired difference and a verdict")
    check(all(r["expert_parameters"] and r["checkpoint_bytes"] for r in rows), "every row states the model's cost")
    md = open(f"{w}/report/report.md").read()
    check("| 8 | uncurl |" in md and "## Threshold pruning factor" in md, "report.md: tables and the thresholds")
    with open(f"{w}/report/thresholds.csv") as f:
        th = list(csv.DictReader(f))
    check(sorted(th[0]) == ["experts", "method", "threshold_factor"] and {(r["experts"], r["method"]) for r in th}
          == {("8", "uncurl"), ("8", "frequency")}, f"thresholds.csv: a row per (experts, method): {th}")
    for fig in ("quality", "thresholds", "pareto"):
        check(open(f"{w}/report/{fig}.png", "rb").read(4) == b"\x89PNG", f"{fig}.png is a PNG")
        check(ET.parse(f"{w}/report/{fig}.svg").getroot().tag.endswith("svg"), f"{fig}.svg is a valid SVG")
    text = open(f"{w}/report/quality.svg").read()
    check("8 experts pretrained" in text and "uncurl" in text and "frequency" in text and "from scratch" in text,
          "quality.svg: the panel of 8 pretrained experts, a line per method and the from-scratch reference")
    # Nightly runs: results labelled with dates; the table is of the latest, the trend of all.
    import json as _json
    for night, scale in (("2026-01-01", 1.0), ("2026-01-02", 2.0)):
        os.makedirs(f"{w}/nights/{night}")
        for name in os.listdir(f"{w}/results"):
            r = _json.load(open(f"{w}/results/{name}"))
            r["smoe"]["labels"]["date"] = night
            for t in r["results"].values():
                t["perplexity,none"] *= scale
            _json.dump(r, open(f"{w}/nights/{night}/{name}", "w"))
    smoe("report", "--results", f"{w}/nights", "--out", f"{w}/trend")
    md = open(f"{w}/trend/report.md").read()
    trend = md.split("## Trend over nights")[1] if "## Trend over nights" in md else ""
    line = [l for l in trend.splitlines() if l.startswith("| 8 | uncurl | 2 |")]
    vals = [float(x) for x in line[0].split("|")[4:6]] if line else []
    check(len(vals) == 2 and abs(vals[1] - 2 * vals[0]) < 1e-3 * vals[1] and "of 2026-01-02" in md,
          f"nightly results: a trend column per night ({vals}), the table of the latest night")
    p = subprocess.run([a.smoe, "report", "--results", f"{w}/nothing", "--out", f"{w}/r2"], capture_output=True, text=True)
    check(p.returncode == 2 and "nothing" in p.stderr, "report on a missing folder: exit 2 naming it")
    finish("reference.report")


if __name__ == "__main__":
    main()
