#!/usr/bin/python3
"""Collect throughput of two smoe binaries on the same inputs, side by side: the
bench model of bench.py (Mixtral layout, hidden 1024, 4 layers, 16 experts top-2,
sequences of 512), F32 and BF16, one rank x 2 threads and two ranks x 1 thread,
both schedules. Runs alternate between the binaries; the best of --repeats is
reported with the ratio new / baseline, and the medians beside them (on a shared
machine the spread between runs of one binary can exceed the difference between
binaries: read the two ratios together). A benchmark, not a test.

  /usr/bin/python3 tests/bench/compare_collect.py --smoe build/smoe --baseline OLD/smoe [--workdir DIR]
"""

import argparse
import os
import statistics
import sys
import tempfile
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (its bench model, corpus and collect runner)

CASES = [  # (ranks, threads, dtype, schedule)
    (1, 2, "f32", "default"),
    (1, 2, "bf16", "default"),
    (2, 1, "f32", "default"),
    (1, 2, "f32", "layerwise"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--baseline", required=True, help="the smoe binary to compare against")
    ap.add_argument("--workdir")
    ap.add_argument("--docs", type=int, default=16, help="sequences of 512 in the corpus")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    w = a.workdir or tempfile.mkdtemp(prefix="smoe-compare-")
    os.makedirs(w, exist_ok=True)
    model, _, corpora = bench.make_inputs(w, [a.docs])
    corpus = corpora[a.docs]
    binaries = {"baseline": SimpleNamespace(smoe=a.baseline), "new": SimpleNamespace(smoe=a.smoe)}
    print(f"collect throughput, tokens/s over {a.repeats} runs each, {a.docs} sequences of {bench.SEQ}\n")
    print("| ranks x threads | dtype | schedule | baseline best / median | new best / median | "
          "new / baseline: best, median |")
    print("|---|---|---|---|---|---|")
    for ranks, threads, dtype, schedule in CASES:
        runs = {name: [] for name in binaries}
        for r in range(a.repeats):
            for name, b in binaries.items():
                run = bench.run_smoe(b, w, model, corpus, ranks, threads, dtype, schedule, tag=f"-{name}-{r}")
                runs[name].append(run["tokens_per_s"])
        best = {n: max(v) for n, v in runs.items()}
        median = {n: statistics.median(v) for n, v in runs.items()}
        print(f"| {ranks} x {threads} | {dtype} | {schedule} | {best['baseline']:.0f} / {median['baseline']:.0f} | "
              f"{best['new']:.0f} / {median['new']:.0f} | {best['new'] / best['baseline']:.3f}, "
              f"{median['new'] / median['baseline']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
