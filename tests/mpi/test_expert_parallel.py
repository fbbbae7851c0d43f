#!/usr/bin/python3
"""`smoe score` expert-parallel under mpirun with 1, 2, 3 and 4 ranks against the
single-process run, for one model family: logits within 1e-5 (F32), identical
token ids and routing choices. Includes placements where the expert count does not
divide by the rank count, a placement map from a file, and a capacity factor."""

import json
import os
import subprocess
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
import hf_reference as ref  # noqa: E402
from checks import script_args  # noqa: E402
from family_runs import make_corpus  # noqa: E402

BOUND = 1e-5
failures = []


def score(smoe, mpirun, ranks, model, corpus, out, extra=()):
    # One thread everywhere, so that GEMMs split their sums alike in every run.
    cmd = [smoe, "score", "--model", model, "--corpus", corpus, "--context", "40", "--batch", "3",
           "--threads", "1", "--logits", out] + list(extra)
    if ranks:
        cmd = [mpirun, "--oversubscribe", "--bind-to", "none", "-n", str(ranks)] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    values = dict(line.split("=", 1) for line in p.stdout.split() if "=" in line)
    return ref.load_safetensors(out)[0], values


def compare(label, base, got):
    diff = (base["logits"] - got["logits"]).abs().max().item()
    same = all(torch.equal(base[k], got[k]) for k in base if k != "logits") and set(base) == set(got)
    ok = diff <= BOUND and same
    print(f"{'ok  ' if ok else 'FAIL'} {label:50s} max|dlogit| {diff:.3g}  tokens/routing identical: {same}")
    if not ok:
        failures.append(label)


def main():
    a = script_args("--family", mpirun=True, fresh=False)
    cfg = ref.tiny_config(a.family)
    model = os.path.join(a.workdir, "model")
    ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=99), shards=3)
    corpus = os.path.join(a.workdir, "corpus.jsonl")
    make_corpus(corpus, cfg["vocab_size"], seed=3)
    E = cfg.get("num_local_experts", cfg.get("num_experts"))

    base, base_values = score(a.smoe, a.mpirun, 0, model, corpus, os.path.join(a.workdir, "single.safetensors"))
    for ranks in (1, 2, 3, 4):
        got, values = score(a.smoe, a.mpirun, ranks, model, corpus, os.path.join(a.workdir, f"p{ranks}.safetensors"),
                            ["--executor", "expert-parallel"])
        compare(f"{a.family}: {ranks} rank(s), {E} experts in contiguous blocks", base, got)
        if values["tokens"] != base_values["tokens"]:
            failures.append(f"{ranks} ranks: token count {values['tokens']} vs {base_values['tokens']}")

    placement = os.path.join(a.workdir, "placement.json")
    with open(placement, "w") as f:
        json.dump({"default": [(E - 1 - e) % 3 for e in range(E)]}, f)
    got, _ = score(a.smoe, a.mpirun, 3, model, corpus, os.path.join(a.workdir, "placed.safetensors"),
                   ["--placement", placement])
    compare(f"{a.family}: 3 ranks, placement map from a file", base, got)

    _, values = score(a.smoe, a.mpirun, 2, model, corpus, os.path.join(a.workdir, "capacity.safetensors"),
                      ["--capacity-factor", "0.6"])
    dropped, routed = int(values["dropped_slots"]), int(values["routed_slots"])
    ok = 0 < dropped < routed and values["perplexity"] != base_values["perplexity"]
    print(f"{'ok  ' if ok else 'FAIL'} {a.family}: capacity factor 0.6 dropped {dropped} of {routed} slots")
    if not ok:
        failures.append("capacity factor")
    if failures:
        sys.exit(f"{len(failures)} failed")
    print(f"mpi.score.{a.family}: passed")


if __name__ == "__main__":
    main()
