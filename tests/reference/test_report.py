"""A small study through train -> collect -> cluster -> prune -> eval -> report:
the report's table holds one row per (task, model) and one per model over all
tasks, with the from-scratch baseline and the paired comparison beside each pruned
model; its CSV reads back; thresholds.csv and the figures (PNG and SVG) are there,
the quality figure with a panel per pretrained expert count. (The statistics
themselves: test_statistics.py.)"""

import csv
import json
import os
import xml.etree.ElementTree as ET

import pytest

TASKS = ["capitals", "years"]
FIGURES = ["quality", "thresholds", "pareto"]


def smoe_job(run, smoe, *args):
    """smoe <args>, two threads for the jobs that take --threads; exit 0 asserted."""
    cmd = [smoe, *args, "--threads", "2"] if args[0] not in ("data", "report", "prune") else [smoe, *args]
    return run(cmd)


@pytest.fixture(scope="module")
def study(run, smoe, workdir):
    """The study: an 8-expert model, scratch models of 4 and 2 experts, uncurl and
    frequency pruning at factors 2 and 4, all evaluated, and the report on perplexity."""
    w = workdir
    suite = f"{w}/suite"
    smoe_job(run, smoe, "data", "synth", "--out", suite, "--facts", "40", "--train", "600", "--eval", "20")
    train = ["--suite", suite, "--steps", "80", "--batch", "16", "--context", "48", "--hidden", "48", "--ffn", "64",
             "--log-every", "1000"]
    smoe_job(run, smoe, "train", "--out", f"{w}/e8", "--experts", "8", *train)
    for e in (4, 2):
        smoe_job(run, smoe, "train", "--out", f"{w}/scratch{e}", "--experts", str(e), *train)
    smoe_job(run, smoe, "collect", "--model", f"{w}/e8", "--out", f"{w}/stats.h5", "--max-tokens", "3000",
             *[x for t in TASKS for x in ("--task", f"{t}={suite}/{t}/train.jsonl")])
    evals = [x for t in TASKS for x in ("--task", f"{t}={suite}/{t}/eval.jsonl")]
    os.makedirs(f"{w}/results")
    smoe_job(run, smoe, "eval", "--model", f"{w}/e8", *evals, "--out", f"{w}/results/full.results.json",
             "--label", "experts=8", "--label", "method=full", "--label", "factor=1")
    for e in (4, 2):
        smoe_job(run, smoe, "eval", "--model", f"{w}/scratch{e}", *evals, "--out", f"{w}/results/scratch{e}.results.json",
                 "--label", f"experts={e}", "--label", "method=scratch", "--label", "factor=1")
    for method in ("uncurl", "frequency"):
        for factor in (2, 4):
            plan = f"{w}/plan-{method}-{factor}.h5"
            smoe_job(run, smoe, "cluster", "--stats", f"{w}/stats.h5", "--task", "capitals", "--method", method,
                     "--factor", str(factor), "--out", plan)
            smoe_job(run, smoe, "prune", "--model", f"{w}/e8", "--plan", plan, "--out", f"{w}/pruned-{method}-{factor}")
            # No labels: the report reads method and factor from the plan in the checkpoint.
            smoe_job(run, smoe, "eval", "--model", f"{w}/pruned-{method}-{factor}", *evals,
                     "--out", f"{w}/results/{method}-{factor}.results.json")
    smoe_job(run, smoe, "report", "--results", f"{w}/results", "--out", f"{w}/report", "--metric", "perplexity,none")
    with open(f"{w}/report/report.csv") as f:
        rows = list(csv.DictReader(f))
    with open(f"{w}/report/report.md") as f:
        md = f.read()
    with open(f"{w}/report/thresholds.csv") as f:
        thresholds = list(csv.DictReader(f))
    print(f"\nreport.csv: {len(rows)} rows; thresholds.csv: {thresholds}")
    return dict(folder=w, report=f"{w}/report", rows=rows, md=md, thresholds=thresholds)


def test_report_csv_has_one_row_per_task_and_model(study):
    """Models named by labels or by the plan's provenance in the checkpoint."""
    keys = {(r["task"], r["experts"], r["method"], r["factor"]) for r in study["rows"]}
    expected = {(t, e, m, f) for t in TASKS + ["all"] for (e, m, f) in
                [("8", "full", "1"), ("4", "scratch", "1"), ("2", "scratch", "1")] +
                [("8", m, str(fa)) for m in ("uncurl", "frequency") for fa in (2, 4)]}
    assert keys == expected, f"report.csv: {len(study['rows'])} rows; missing {expected - keys}, extra {keys - expected}"


def test_every_pruned_row_has_baseline_difference_and_verdict(study):
    """The from-scratch baseline (experts / factor), the paired difference and a verdict."""
    pruned = [r for r in study["rows"] if r["method"] in ("uncurl", "frequency")]
    lacking = [r for r in pruned if not (r["scratch_perplexity"] and r["difference_low"] and r["perplexity_stderr"]
                                         and r["vs_scratch"] in ("worse", "better", "no significant difference"))]
    assert not lacking, f"pruned rows without baseline, difference or verdict: {lacking}"


def test_every_row_states_the_models_cost(study):
    lacking = [r for r in study["rows"] if not (r["expert_parameters"] and r["checkpoint_bytes"])]
    assert not lacking, f"rows without expert_parameters or checkpoint_bytes: {lacking}"


def test_report_md_has_tables_and_thresholds(study):
    assert "| 8 | uncurl |" in study["md"]
    assert "## Threshold pruning factor" in study["md"]


def test_thresholds_csv_has_a_row_per_experts_and_method(study):
    th = study["thresholds"]
    assert sorted(th[0]) == ["experts", "method", "threshold_factor"], f"thresholds.csv columns: {sorted(th[0])}"
    assert {(r["experts"], r["method"]) for r in th} == {("8", "uncurl"), ("8", "frequency")}, f"thresholds.csv: {th}"


@pytest.mark.parametrize("fig", FIGURES)
def test_figure_png_is_a_png(study, fig):
    with open(f"{study['report']}/{fig}.png", "rb") as f:
        head = f.read(4)
    assert head == b"\x89PNG", f"{fig}.png starts {head!r}"


@pytest.mark.parametrize("fig", FIGURES)
def test_figure_svg_is_a_valid_svg(study, fig):
    tag = ET.parse(f"{study['report']}/{fig}.svg").getroot().tag
    assert tag.endswith("svg"), f"{fig}.svg: root element {tag}"


def test_quality_svg_has_the_8_expert_panel_each_method_and_scratch(study):
    with open(f"{study['report']}/quality.svg") as f:
        text = f.read()
    for words in ("8 experts pretrained", "uncurl", "frequency", "from scratch"):
        assert words in text, f"quality.svg lacks '{words}'"


@pytest.fixture(scope="module")
def nights(study, run, smoe):
    """Nightly runs: the study's results labelled with two dates (the second night's
    perplexities doubled), reported together."""
    w = study["folder"]
    for night, scale in (("2026-01-01", 1.0), ("2026-01-02", 2.0)):
        os.makedirs(f"{w}/nights/{night}")
        for name in os.listdir(f"{w}/results"):
            with open(f"{w}/results/{name}") as f:
                r = json.load(f)
            r["smoe"]["labels"]["date"] = night
            for t in r["results"].values():
                t["perplexity,none"] *= scale
            with open(f"{w}/nights/{night}/{name}", "w") as f:
                json.dump(r, f)
    smoe_job(run, smoe, "report", "--results", f"{w}/nights", "--out", f"{w}/trend")
    with open(f"{w}/trend/report.md") as f:
        return f.read()


def test_nightly_results_give_a_trend_column_per_night_and_the_latest_table(nights):
    md = nights
    trend = md.split("## Trend over nights")[1] if "## Trend over nights" in md else ""
    line = [l for l in trend.splitlines() if l.startswith("| 8 | uncurl | 2 |")]
    vals = [float(x) for x in line[0].split("|")[4:6]] if line else []
    print(f"trend of uncurl at factor 2: {vals}")
    assert len(vals) == 2, f"no trend row '| 8 | uncurl | 2 |' with two nights: {line}"
    assert abs(vals[1] - 2 * vals[0]) < 1e-3 * vals[1], f"the second night's perplexity is not twice the first: {vals}"
    assert "of 2026-01-02" in md, "the table is not of the latest night"


def test_report_on_a_missing_folder_exits_2_naming_it(workdir, run, smoe):
    w = workdir
    p = run([smoe, "report", "--results", f"{w}/nothing", "--out", f"{w}/r2"], expect=2)
    assert "nothing" in p.stderr, p.stderr[-500:]
