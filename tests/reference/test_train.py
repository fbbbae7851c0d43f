#!/usr/bin/python3
"""`smoe train` on the synthetic suite (`smoe data synth`):
  the trained model's eval loss is well below the unigram baseline (the suite's byte
  frequencies), measured with `smoe score`;
  its experts specialise: per-task routing distributions (from `smoe collect`)
  differ, by the mean pairwise Jensen-Shannon divergence, more than at init;
  1 and 2 ranks follow the same loss curve for the same global batch;
  a run killed after a checkpoint and resumed ends where an uninterrupted one does."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, mpi_env, script_args  # noqa: E402

TASKS = ["capitals", "elements", "years", "symbols"]


def main():
    a = script_args(mpirun=True)
    w = a.workdir
    env = mpi_env()

    def smoe(*args, ranks=0):
        cmd = [a.smoe] + list(args)
        if ranks:
            cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-n", str(ranks)] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            sys.exit(f"FAIL: {' '.join(cmd)}\n{p.stderr[-3000:]}")
        return p

    suite = os.path.join(w, "suite")
    smoe("data", "synth", "--out", suite, "--facts", "50", "--train", "1500", "--eval", "40", "--seed", "1")
    common = ["--suite", suite, "--experts", "8", "--hidden", "64", "--layers", "2", "--ffn", "96", "--batch", "16",
              "--context", "48", "--log-every", "50"]

    def curve(folder):
        with open(os.path.join(folder, "train_log.jsonl")) as f:
            return [json.loads(line)["loss"] for line in f]

    # Train on one rank; eval loss against the unigram baseline.
    model = os.path.join(w, "model")
    smoe("train", "--out", model, "--steps", "240", "--threads", "2", *common)
    counts = np.ones(256)
    for t in TASKS:
        with open(f"{suite}/{t}/train.jsonl") as f:
            for line in f:
                for b in json.loads(line)["text"].encode():
                    counts[b] += 1
    p_unigram = counts / counts.sum()
    eval_text = os.path.join(w, "eval-text.jsonl")
    nll = n = 0
    with open(eval_text, "w") as out:
        for t in TASKS:
            with open(f"{suite}/{t}/eval.jsonl") as f:
                for line in f:
                    r = json.loads(line)
                    if "text" in r:
                        out.write(line)
                        ids = list(r["text"].encode())
                        nll -= sum(math.log(p_unigram[b]) for b in ids[1:])
                        n += len(ids) - 1
    unigram = nll / n
    p = smoe("score", "--model", model, "--corpus", eval_text, "--threads", "2")
    trained = float(p.stdout.split("nll=")[1].split()[0])
    check(trained < 0.6 * unigram, f"eval loss after 240 steps {trained:.3f} nats/token, unigram baseline "
                                    f"{unigram:.3f} ({trained / unigram:.0%} of it)")

    # Specialisation: per-task routing distributions differ (mean pairwise Jensen-Shannon divergence, bits).
    def divergence(folder, tag):
        stats = os.path.join(w, f"stats-{tag}.h5")
        args = ["collect", "--model", folder, "--out", stats, "--threads", "2", "--max-tokens", "4000"]
        for t in TASKS:
            args += ["--task", f"{t}={suite}/{t}/train.jsonl"]
        smoe(*args)
        js = []
        with h5py.File(stats) as f:
            for layer in f[f"tasks/{TASKS[0]}/layers"]:
                dists = [f[f"tasks/{t}/layers/{layer}/count"][()].astype(float) for t in TASKS]
                dists = [d / d.sum() for d in dists]
                for i in range(len(dists)):
                    for j in range(i + 1, len(dists)):
                        m = (dists[i] + dists[j]) / 2
                        kl = lambda p, q: float(np.sum(p[p > 0] * np.log2(p[p > 0] / q[p > 0])))
                        js.append((kl(dists[i], m) + kl(dists[j], m)) / 2)
        return float(np.mean(js))

    init = os.path.join(w, "init")
    smoe("train", "--out", init, "--steps", "1", "--lr", "0", "--threads", "2", *common)
    js_trained, js_init = divergence(model, "trained"), divergence(init, "init")
    check(js_trained > 0.05 and js_trained > 2 * js_init,
          f"expert specialisation: mean pairwise Jensen-Shannon divergence of per-task routing {js_trained:.3f} bits "
          f"(at init {js_init:.3f})")

    # 1 and 2 ranks, the same global batch: the same loss curve within tolerance.
    one, two = os.path.join(w, "one"), os.path.join(w, "two")
    smoe("train", "--out", one, "--steps", "80", "--threads", "1", *common)
    smoe("train", "--out", two, "--steps", "80", "--threads", "1", *common, ranks=2)
    c1, c2 = np.array(curve(one)), np.array(curve(two))
    gap = float(np.max(np.abs(c1 - c2)))
    check(len(c1) == len(c2) == 80 and gap < 0.02 * c1[0],
          f"1 and 2 ranks: loss {c1[0]:.3f} -> {c1[-1]:.3f} vs {c2[0]:.3f} -> {c2[-1]:.3f}, max gap {gap:.2g}")
    # Experts sharded over 2 ranks (expert parallel): the same curve as replicated experts.
    sharded = os.path.join(w, "sharded")
    smoe("train", "--out", sharded, "--steps", "80", "--threads", "1", "--shard-experts", *common, ranks=2)
    cs = np.array(curve(sharded))
    gap_s = float(np.max(np.abs(cs - c2)))
    with open(os.path.join(sharded, "model.safetensors.index.json")) as f:
        wm = json.load(f)["weight_map"]
    owners = {wm[f"model.layers.0.block_sparse_moe.experts.{e}.w1.weight"] for e in range(8)}
    p = smoe("score", "--model", sharded, "--corpus", eval_text, "--threads", "1", ranks=2)
    check(len(cs) == 80 and gap_s < 0.01 * c2[0] and len(owners) == 2 and "perplexity=" in p.stdout,
          f"experts sharded over 2 ranks: loss -> {cs[-1]:.3f} (replicated {c2[-1]:.3f}, max gap {gap_s:.2g}); "
          "one checkpoint shard per rank; it loads and runs")

    # Killed after its first checkpoint, resumed: the same run as an uninterrupted one.
    whole, killed = os.path.join(w, "whole"), os.path.join(w, "killed")
    args = ["--steps", "60", "--checkpoint-every", "20", "--threads", "1", *common]
    smoe("train", "--out", whole, *args)
    proc = subprocess.Popen([a.smoe, "train", "--out", killed, *args], stderr=subprocess.DEVNULL, env=env)
    state = os.path.join(killed, "trainer_state.json")
    while proc.poll() is None and not os.path.exists(state):
        time.sleep(0.01)
    stopped = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = json.load(open(state))["step"] if os.path.exists(state) else None
    smoe("train", "--out", killed, "--resume", *args)
    cw, ck = curve(whole), curve(killed)
    check(stopped and at_kill is not None and at_kill < 60 and cw == ck,
          f"killed after its checkpoint at step {at_kill} and resumed: loss curve identical to an uninterrupted run "
          f"({len(ck)} steps)")
    finish("reference.train")


if __name__ == "__main__":
    main()
