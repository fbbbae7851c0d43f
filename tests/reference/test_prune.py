#!/usr/bin/python3
"""smoe cluster and smoe prune end to end on tiny Mixtral-layout checkpoints:
  every method at factors 2 and 4 gives a pruned checkpoint that loads and runs
  (1 rank; merged ones on 2 ranks too), with the expert counts the plan says;
  a plan that keeps every expert gives a bit-identical checkpoint;
  merging experts that are hidden-unit permutations of one another leaves the
  layer's output unchanged (and does not without alignment);
  bad plans and bad options exit 2 naming the file and the fault, writing nothing."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, mpi_env, script_args  # noqa: E402
import hf_reference as ref  # noqa: E402

METHODS = ["frequency", "uncurl", "mc-smoe", "hc-smoe", "reap", "naee"]


def load_checkpoint(folder):
    tensors = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            t, meta = ref.load_safetensors(os.path.join(folder, f))
            tensors.update(t)
    with open(os.path.join(folder, "config.json")) as f:
        return tensors, json.load(f), meta


def main():
    a = script_args(mpirun=True)
    w = a.workdir
    env = mpi_env()

    def smoe(*args, ranks=0, expect=0):
        cmd = [a.smoe] + list(args)
        if ranks:
            cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-n", str(ranks)] + cmd + ["--threads", "1"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        if expect is not None and p.returncode != expect:
            sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stderr[-3000:]}")
        return p

    cfg = ref.tiny_config("mixtral")
    weights = ref.random_weights(cfg, seed=17)
    model = os.path.join(w, "model")
    ref.save_checkpoint(model, cfg, weights, shards=2)
    rng = np.random.default_rng(1)
    corpus = os.path.join(w, "task.jsonl")
    with open(corpus, "w") as f:
        for _ in range(30):
            f.write(json.dumps({"input_ids": rng.integers(0, cfg["vocab_size"], int(rng.integers(10, 60))).tolist()})
                    + "\n")
    stats = os.path.join(w, "stats.h5")
    smoe("collect", "--model", model, "--task", f"t={corpus}", "--out", stats, "--out-mean", "--sample", "24",
         "--threads", "2")

    for method in METHODS:
        for factor in (2, 4):
            plan = os.path.join(w, f"plan-{method}-{factor}.h5")
            out = os.path.join(w, f"pruned-{method}-{factor}")
            smoe("cluster", "--stats", stats, "--task", "t", "--method", method, "--factor", str(factor), "--out", plan,
                 "--model", model)
            smoe("prune", "--model", model, "--plan", plan, "--out", out)
            tensors, config, meta = load_checkpoint(out)
            E = 8 // factor
            experts = {int(n.split(".")[5]) for n in tensors if ".experts." in n}
            ok = (config["num_local_experts"] == E and experts == set(range(E))
                  and all(tensors[f"model.layers.{l}.block_sparse_moe.gate.weight"].shape[0] == E for l in range(3))
                  and meta.get("smoe_plan_method") == method and len(meta.get("smoe_plan_sha256", "")) == 64)
            p1 = smoe("score", "--model", out, "--corpus", corpus, "--threads", "1")
            ranks_ok = True
            if method in ("uncurl", "hc-smoe") and factor == 2:
                p2 = smoe("score", "--model", out, "--corpus", corpus, ranks=2)
                # The figures, not the speed (tokens_per_second differs from run to run).
                figures = lambda out: [x for x in out.split() if not x.startswith("tokens_per_second=")]  # noqa: E731
                ranks_ok = figures(p2.stdout) == figures(p1.stdout)
            check(ok and "perplexity=" in p1.stdout and ranks_ok,
                  f"{method} factor {factor}: {E} experts per layer, plan provenance in the shards, runs "
                  f"({[x for x in p1.stdout.split() if x.startswith('perplexity=')][0]})" + (", same on 2 ranks" if method in ("uncurl", "hc-smoe") and factor == 2
                                                  else ""))

    # NAEE's exhaustive search split over 2 ranks finds the subset one rank finds.
    plan2 = os.path.join(w, "plan-naee-2-ranks.h5")
    smoe("cluster", "--stats", stats, "--task", "t", "--method", "naee", "--factor", "2", "--out", plan2, "--model",
         model, ranks=2)
    with h5py.File(plan2) as f2, h5py.File(os.path.join(w, "plan-naee-2.h5")) as f1:
        same = all(np.array_equal(f1[f"layers/{l}/group"][()], f2[f"layers/{l}/group"][()]) for l in range(3))
    check(same, "naee: the search split over 2 ranks keeps the same experts as on 1 rank")

    # Adaptive budget: per-layer counts, at least one expert per layer, and the model still runs.
    plan = os.path.join(w, "plan-adaptive.h5")
    smoe("cluster", "--stats", stats, "--task", "t", "--method", "uncurl", "--budget", "adaptive", "--factor", "3",
         "--out", plan)
    out = os.path.join(w, "pruned-adaptive")
    smoe("prune", "--model", model, "--plan", plan, "--out", out)
    with h5py.File(plan) as f:
        counts = [int(f[f"layers/{l}"].attrs["num_groups"]) for l in range(3)]
    p = smoe("score", "--model", out, "--corpus", corpus, "--threads", "1")
    check(min(counts) >= 1 and "perplexity=" in p.stdout, f"adaptive budget: per-layer experts {counts}, runs")

    # Keep every expert: a bit-identical checkpoint.
    plan = os.path.join(w, "plan-all.h5")
    smoe("cluster", "--stats", stats, "--task", "t", "--method", "frequency", "--factor", "1", "--out", plan)
    out = os.path.join(w, "pruned-all")
    smoe("prune", "--model", model, "--plan", plan, "--out", out)
    tensors, config, _ = load_checkpoint(out)
    original, config0, _ = load_checkpoint(model)
    same = set(tensors) == set(original) and all(
        tensors[n].dtype == original[n].dtype and torch.equal(tensors[n], original[n]) for n in original)
    check(same and config == config0, "keep-all plan: every tensor bit-identical, config.json unchanged")

    # Experts that are hidden-unit permutations of expert 0 in every layer: merging
    # all into one (factor 8) must leave the model's outputs unchanged.
    perm_w = dict(weights)
    g = torch.Generator().manual_seed(5)
    for l in range(3):
        p0 = f"model.layers.{l}.block_sparse_moe.experts.0."
        for e in range(1, 8):
            pe = f"model.layers.{l}.block_sparse_moe.experts.{e}."
            perm = torch.randperm(cfg["intermediate_size"], generator=g)
            perm_w[pe + "w1.weight"] = weights[p0 + "w1.weight"][perm].clone()
            perm_w[pe + "w3.weight"] = weights[p0 + "w3.weight"][perm].clone()
            perm_w[pe + "w2.weight"] = weights[p0 + "w2.weight"][:, perm].clone()
    pmodel = os.path.join(w, "permuted")
    ref.save_checkpoint(pmodel, cfg, perm_w, shards=1)
    pstats = os.path.join(w, "pstats.h5")
    smoe("collect", "--model", pmodel, "--task", f"t={corpus}", "--out", pstats, "--threads", "2")
    plan = os.path.join(w, "plan-one.h5")
    smoe("cluster", "--stats", pstats, "--task", "t", "--method", "uncurl", "--factor", "8", "--out", plan)
    base = os.path.join(w, "base.safetensors")
    smoe("score", "--model", pmodel, "--corpus", corpus, "--logits", base, "--threads", "1")
    diffs = {}
    for align in (True, False):
        out = os.path.join(w, f"merged-{align}")
        smoe("prune", "--model", pmodel, "--plan", plan, "--out", out, *([] if align else ["--no-align"]))
        got = os.path.join(w, f"merged-{align}.safetensors")
        smoe("score", "--model", out, "--corpus", corpus, "--logits", got, "--threads", "1")
        diffs[align] = (ref.load_safetensors(base)[0]["logits"] - ref.load_safetensors(got)[0]["logits"]).abs().max().item()
    check(diffs[True] <= 1e-5 and diffs[False] > 1e-2,
          f"merging 8 permuted copies of an expert into one: max |dlogit| {diffs[True]:.2g} aligned, "
          f"{diffs[False]:.2g} without alignment")

    # Bad plans: exit 2, the plan named with the fault, no output folder.
    good = os.path.join(w, "plan-uncurl-2.h5")

    def bad_plan(name, edit, needle):
        path = os.path.join(w, f"bad-{name}.h5")
        shutil.copy(good, path)
        with h5py.File(path, "r+") as f:
            edit(f)
        out = os.path.join(w, f"out-{name}")
        p = smoe("prune", "--model", model, "--plan", path, "--out", out, expect=None)
        left = [d for d in os.listdir(w) if d.startswith(f"out-{name}")]
        check(p.returncode == 2 and path in p.stderr and needle in p.stderr and not left,
              f"bad plan ({name}): exit {p.returncode}: {p.stderr.strip().splitlines()[-1][-160:]}")

    def set_ds(f, name, values):
        del f[name]
        f[name] = np.array(values)

    bad_plan("missing layer", lambda f: f["layers"].__delitem__("2"), "the plan must give every MoE layer once")
    bad_plan("unknown expert", lambda f: set_ds(f, "layers/1/reference",
                                                [9] + list(f["layers/1/reference"][1:])), "names expert 9")
    bad_plan("empty group", lambda f: set_ds(f, "layers/0/group", [0 if x == 1 else x for x in f["layers/0/group"][()]]),
             "group 1 is empty")
    bad_plan("short group list", lambda f: set_ds(f, "layers/0/group", list(f["layers/0/group"][()]) + [0]),
             "one entry per expert")
    bad_plan("weights", lambda f: set_ds(f, "layers/0/weight", [0.5] * 8), "sum to")
    bad_plan("not a plan", lambda f: f.attrs.__setitem__("format", "something"), "not a smoe plan")

    def bad_cluster(name, args, needle, stats_file=stats):
        p = smoe("cluster", "--stats", stats_file, "--out", os.path.join(w, "never.h5"), *args, expect=None)
        check(p.returncode == 2 and needle in p.stderr and not os.path.exists(os.path.join(w, "never.h5")),
              f"cluster {name}: exit {p.returncode}: {p.stderr.strip().splitlines()[-1][-140:] if p.stderr else ''}")

    bad_cluster("unknown task", ["--task", "nope", "--method", "uncurl", "--factor", "2"], "no task 'nope' (present: t)")
    bad_cluster("unknown method", ["--task", "t", "--method", "kmeans", "--factor", "2"], "--method must be frequency, uncurl, mc-smoe, hc-smoe, reap or naee, found 'kmeans'")
    bad_cluster("factor and experts", ["--task", "t", "--method", "uncurl", "--factor", "2", "--experts", "3"],
                "either --factor")
    bad_cluster("hc-smoe without out_mean", ["--task", "t", "--method", "hc-smoe", "--factor", "2"], "needs out_mean",
                stats_file=pstats)
    bad_cluster("naee without a model", ["--task", "t", "--method", "naee", "--factor", "2"], "needs --model")
    grid = os.path.join(w, "grid.ini")
    with open(grid, "w") as f:
        f.write("[grid]\ntasks = t\nmethods = frequency, reap\nfactors = 2, 4\n")
    smoe("cluster", "--stats", stats, "--grid", grid, "--index", "3", "--out", os.path.join(w, "g-{method}-{factor}.h5"))
    check(os.path.exists(os.path.join(w, "g-reap-4.h5")), "--grid entry 3 of tasks x methods x factors is (t, reap, 4)")
    bad_cluster("grid index outside", ["--grid", grid, "--index", "4"], "outside the grid's 4 entries")
    finish("reference.prune")


if __name__ == "__main__":
    main()
