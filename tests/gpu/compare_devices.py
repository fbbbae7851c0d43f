#!/usr/bin/env python3
"""smoe's jobs on a device against the same jobs on the CPU (tests/gpu/run.sh runs
it on a GPU): one line per check, `ok` or `FAIL`, then the exit status 1 if any
failed. On a tiny Qwen3-MoE checkpoint and the synthetic suite:

  score    f32 logits within 1e-4 of the CPU's, routing identical; bf16 (the
           device's default) within the bound stated below;
  collect  f32 statistics: counts identical, sums within 1e-4 (relative); the same
           on 2 ranks sharing the device (MPI staged through pinned memory) with
           --exact-ep against 1 rank, and with grouped GEMMs within 1e-4;
  eval     f32: every per-example score, and the generated tokens, as on the CPU;
  train    f32, 2 ranks with sharded experts: the loss of every step within 1e-3
           (relative) of the CPU's;
  cluster  NAEE's search on the device picks the CPU's experts.

Needs only python3 with torch and h5py (no MPI Python bindings). With
`--device cpu` it runs the same comparisons CPU against CPU, which checks the
script itself on a machine without a GPU.

  python3 tests/gpu/compare_devices.py --smoe build-gpu/smoe --device cuda --workdir DIR
"""

import argparse
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import hf_reference as ref  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
BF16_LOGIT_BOUND = 0.25  # bf16 on the device against f32 on the CPU, tiny model: the bound we state
failures = []


def check(ok, what):
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)


def smoe(a, *args, ranks=0):
    cmd = (["mpirun", "--oversubscribe", "--bind-to", "none", "-n", str(ranks)] if ranks else []) + [a.smoe, *args]
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))}: exit {p.returncode}\n{p.stderr[-3000:]}")
    return p


def h5_arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def compare_stats(a_path, b_path, what, rtol=1e-4):
    a, b = h5_arrays(a_path), h5_arrays(b_path)
    counts = [n for n in a if n.endswith("/count")]
    same_counts = all(np.array_equal(a[n], b[n]) for n in counts) and set(a) == set(b)
    worst = 0.0
    for n, x in a.items():
        if np.issubdtype(np.asarray(x).dtype, np.floating):
            scale = max(float(np.abs(x).max()) if np.size(x) else 0.0, 1e-30)
            worst = max(worst, float(np.abs(np.asarray(x) - np.asarray(b[n])).max()) / scale if np.size(x) else 0.0)
    check(same_counts and worst <= rtol,
          f"collect {what}: {len(counts)} count tables identical: {same_counts}; largest difference of a sum "
          f"{worst:.2e} of its table's largest value (bound {rtol:g})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    w = a.workdir
    os.makedirs(w, exist_ok=True)
    dev = ["--device", a.device]
    cfg = ref.tiny_config("qwen3_moe")
    model = os.path.join(w, "model")
    ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=3), shards=2)
    smoe(a, "data", "synth", "--out", f"{w}/suite", "--facts", "20", "--train", "40", "--eval", "8", "--overwrite")
    corpus = f"{w}/suite/years/train.jsonl"

    # score: logits and routing
    def score(tag, *args):
        out = f"{w}/logits-{tag}.safetensors"
        smoe(a, "score", "--model", model, "--corpus", corpus, "--logits", out, "--overwrite", *args)
        return ref.load_safetensors(out)[0]
    cpu = score("cpu", "--dtype", "f32")
    f32 = score("f32", "--dtype", "f32", *dev)
    bf16 = score("bf16", *dev)
    routing = [n for n in cpu if n.startswith("routing.")]
    same = all(torch.equal(cpu[n].sort(1).values, f32[n].sort(1).values) for n in routing)
    diff = (cpu["logits"] - f32["logits"]).abs().max().item()
    check(diff <= 1e-4 and same, f"score f32 on {a.device}: max|dlogit| {diff:.2e} (bound 1e-4), routing of "
          f"{len(routing)} layers identical: {same}")
    diff = (cpu["logits"] - bf16["logits"]).abs().max().item()
    check(diff <= BF16_LOGIT_BOUND, f"score with the default dtype on {a.device} (bf16 on cuda) against f32 on the "
          f"CPU: max|dlogit| {diff:.3f} (bound {BF16_LOGIT_BOUND})")

    # collect: the statistics, on 1 rank and on 2 ranks sharing the device
    def collect(tag, *args, ranks=0):
        out = f"{w}/stats-{tag}.h5"
        smoe(a, "collect", "--model", model, "--task", f"years={corpus}", "--out", out, "--threads", "1",
             "--sample", "16", "--progress-seconds", "0", "--overwrite", *args, ranks=ranks)
        return out
    stats_cpu = collect("cpu", "--dtype", "f32")
    stats_dev = collect("dev", "--dtype", "f32", *dev)
    compare_stats(stats_cpu, stats_dev, f"f32 on {a.device} against the CPU")
    compare_stats(stats_dev, collect("dev2-exact", "--dtype", "f32", "--exact-ep", *dev, ranks=2),
                  f"f32 on 2 ranks sharing {a.device} (--exact-ep) against 1 rank", rtol=1e-5)
    compare_stats(stats_dev, collect("dev2", "--dtype", "f32", *dev, ranks=2),
                  f"f32 on 2 ranks sharing {a.device} (grouped expert GEMMs) against 1 rank")

    # eval: per-example scores and generated tokens
    def evaluate(tag, *args):
        out = f"{w}/eval-{tag}.json"
        smoe(a, "eval", "--model", model, "--task", f"years={w}/suite/years/eval.jsonl", "--out", out, "--overwrite",
             *args)
        return json.load(open(out))["samples"]["years"]
    e_cpu, e_dev = evaluate("cpu", "--dtype", "f32"), evaluate("dev", "--dtype", "f32", *dev)
    nll = np.max(np.abs(np.array(e_cpu["text"]["nll"]) - e_dev["text"]["nll"]) / np.array(e_cpu["text"]["nll"]))
    check(e_cpu["multiple_choice"] == e_dev["multiple_choice"] and e_cpu["generate"] == e_dev["generate"]
          and nll <= 1e-5, f"eval f32 on {a.device}: choices and generations as on the CPU: "
          f"{e_cpu['multiple_choice'] == e_dev['multiple_choice']}, {e_cpu['generate'] == e_dev['generate']}; "
          f"nll per document within {nll:.1e} (bound 1e-5)")

    # train: two ranks, experts sharded, the loss of every step
    def train(tag, *args):
        out = f"{w}/train-{tag}"
        smoe(a, "train", "--suite", f"{w}/suite", "--out", out, "--steps", "20", "--batch", "8", "--context", "32",
             "--hidden", "32", "--ffn", "48", "--experts", "4", "--shard-experts", "--threads", "1", "--overwrite",
             *args, ranks=2)
        return [json.loads(line)["loss"] for line in open(f"{out}/train_log.jsonl")]
    l_cpu, l_dev = train("cpu"), train("dev", *dev)
    worst = max(abs(x - y) / abs(x) for x, y in zip(l_cpu, l_dev))
    check(len(l_cpu) == len(l_dev) == 20 and worst <= 1e-3,
          f"train on {a.device}, 2 ranks, sharded experts: {len(l_dev)} steps, loss within {worst:.1e} of the CPU's "
          "(bound 1e-3)")

    # cluster: NAEE's search
    def naee(tag, *args):
        out = f"{w}/plan-{tag}.h5"
        smoe(a, "cluster", "--stats", stats_cpu, "--task", "years", "--method", "naee", "--factor", "2", "--model",
             model, "--out", out, "--overwrite", *args)
        return h5_arrays(out)
    p_cpu, p_dev = naee("cpu"), naee("dev", *dev)
    groups = [n for n in p_cpu if n.endswith("/group")]
    same = set(p_cpu) == set(p_dev) and all(np.array_equal(p_cpu[n], p_dev[n]) for n in groups)
    check(same and len(groups) > 0,
          f"cluster naee on {a.device}: the kept experts of {len(groups)} layers as on the CPU: {same}")

    print(f"compare_devices: {len(failures)} failed" if failures else "compare_devices: passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
