#!/usr/bin/python3
"""`smoe eval` wall time of two smoe binaries on the same model and eval sets, side
by side (a benchmark, not a test): the bench model of bench.py (Mixtral layout,
hidden 1024, 4 layers, 16 experts top-2, vocab 32000) and the synthetic suite's
eval sets (text, multiple choice with 4 choices, prompts to complete), one rank x
2 threads. Runs alternate between the binaries; the best of --repeats is reported
with the ratio baseline / new and the medians beside them, and the two results
files' metrics are compared.

  /usr/bin/python3 tests/bench/compare_eval.py --smoe build/smoe --baseline OLD/smoe [--workdir DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (its bench model)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--baseline", required=True, help="the smoe binary to compare against")
    ap.add_argument("--workdir")
    ap.add_argument("--eval", type=int, default=40, help="eval examples per task (smoe data synth --eval)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    w = a.workdir or tempfile.mkdtemp(prefix="smoe-compare-eval-")
    model, _, _ = bench.make_inputs(w, [1])
    suite = os.path.join(w, "suite")
    subprocess.run([a.smoe, "data", "synth", "--out", suite, "--facts", "100", "--train", "10", "--eval", str(a.eval),
                    "--overwrite"], check=True, capture_output=True)
    tasks = sorted(t for t in os.listdir(suite) if os.path.exists(os.path.join(suite, t, "eval.jsonl")))
    times = {"new": [], "baseline": []}
    results = {}
    for _ in range(a.repeats):
        for name, binary in (("baseline", a.baseline), ("new", a.smoe)):
            out = os.path.join(w, f"results-{name}.json")
            cmd = [binary, "eval", "--model", model, "--out", out, "--threads", "2", "--overwrite"]
            for t in tasks:
                cmd += ["--task", f"{t}={suite}/{t}/eval.jsonl"]
            start = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=bench.ENV)
            times[name].append(time.perf_counter() - start)
            if p.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
            results[name] = json.load(open(out))["results"]
    print(f"smoe eval of the bench model on {len(tasks)} tasks x {a.eval} examples, 1 rank x 2 threads, "
          f"best (median) of {a.repeats}:")
    for name in ("baseline", "new"):
        print(f"  {name:8s} {min(times[name]):7.2f} s ({statistics.median(times[name]):.2f} s)")
    print(f"  baseline / new: {min(times['baseline']) / min(times['new']):.2f} "
          f"({statistics.median(times['baseline']) / statistics.median(times['new']):.2f} by the medians)")
    for t in tasks:
        old, new = results["baseline"][t], results["new"][t]
        differ = {k: (old[k], new[k]) for k in old if k.endswith(",none") and isinstance(old[k], float)
                  and abs(old[k] - new[k]) > 1e-6 * max(1.0, abs(old[k]))}
        print(f"  {t}: metrics {'the same' if not differ else f'differ: {differ}'}")


if __name__ == "__main__":
    main()
