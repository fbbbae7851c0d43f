#!/usr/bin/python3
"""Cross-check of `smoe collect` with h5py and python3-torch alone: recomputes the
statistics of a tiny Mixtral-layout checkpoint over a corpus with the plain
PyTorch reference (hf_reference.py) and compares them with stats.h5. Also checks
the file's schema (docs/stats-h5.md): attributes, dataset names, shapes, dtypes."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, script_args  # noqa: E402
import hf_reference as ref  # noqa: E402

CONTEXT = 24


def close(name, ours, theirs, rtol=1e-5):
    """Each entry within rtol of the dataset's largest magnitude: the reference runs
    in float32 too, pieces one at a time, so entries that cancel to near zero (off
    the Gram matrix's diagonal, say) carry the absolute error of their terms."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    check(ours.shape == theirs.shape and diff <= rtol * scale,
          f"{name}: max |diff| {diff:.3g} of max |value| {scale:.3g} (bound rtol {rtol})")


def main():
    a = script_args(fresh=False)
    w = a.workdir
    torch.set_num_threads(2)
    cfg = ref.tiny_config("mixtral")
    weights = ref.random_weights(cfg, seed=31)
    model = os.path.join(w, "model")
    ref.save_checkpoint(model, cfg, weights, shards=2)
    g = torch.Generator().manual_seed(4)
    corpus = os.path.join(w, "task.jsonl")
    docs = [torch.randint(0, cfg["vocab_size"], (int(n),), generator=g).tolist() for n in (30, 7, 55, 24, 3, 41)]
    with open(corpus, "w") as f:
        for d in docs:
            f.write(json.dumps({"input_ids": d}) + "\n")
        f.write(json.dumps({"text": "plain text is tokenised as bytes"}) + "\n")
    docs.append(list(b"plain text is tokenised as bytes"))

    out = os.path.join(w, "stats.h5")
    cmd = [a.smoe, "collect", "--model", model, "--task", f"demo={corpus}", "--out", out, "--context", str(CONTEXT),
           "--out-mean", "--sample", "10", "--threads", "2"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{p.stderr}")

    # The reference: every piece of every document, on its own.
    E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    acc = {}
    with torch.no_grad():
        for d in docs:
            for b in range(0, len(d), CONTEXT):
                piece = d[b:b + CONTEXT]
                if len(piece) < 2:
                    continue
                traces = {}
                _, routing = ref.forward(cfg, weights, torch.tensor([piece]), torch.float32, traces)
                for l, chosen in routing.items():
                    t = traces[l]
                    z = t["logits"].double()
                    s = acc.setdefault(l, {"tokens": 0, "count": np.zeros(E, np.int64), "gate_sum": np.zeros(E),
                                           "prob_sum": np.zeros(E), "logit_sum": np.zeros(E),
                                           "logit_gram": np.zeros((E, E)), "coact": np.zeros((E, E), np.int64),
                                           "act_norm_sum": np.zeros(E), "reap_sum": np.zeros(E),
                                           "out_sum": np.zeros((E, cfg["hidden_size"]))})
                    s["tokens"] += z.shape[0]
                    c = chosen.numpy()
                    np.add.at(s["count"], c.reshape(-1), 1)
                    np.add.at(s["gate_sum"], c.reshape(-1), t["weights"].double().numpy().reshape(-1))
                    np.add.at(s["act_norm_sum"], c.reshape(-1), t["norms"].numpy().reshape(-1))
                    np.add.at(s["reap_sum"], c.reshape(-1), (t["norms"] * t["weights"].double()).numpy().reshape(-1))
                    s["prob_sum"] += torch.softmax(z, -1).sum(0).numpy()
                    s["logit_sum"] += z.sum(0).numpy()
                    s["logit_gram"] += (z.T @ z).numpy()
                    onehot = np.zeros((z.shape[0], E), np.int64)
                    np.put_along_axis(onehot, c, 1, axis=1)
                    s["coact"] += onehot.T @ onehot
                    s["out_sum"] += t["out_sum"].numpy()

    with h5py.File(out, "r") as f:
        check(f.attrs["format"] == "smoe-stats" and f.attrs["schema_version"] == 1 and f.attrs["complete"] == 1,
              "root attributes: format, schema_version 1, complete")
        for key in ("model", "model_config_sha256", "software", "created", "command", "options", "schedule", "dtype"):
            check(key in f.attrs and isinstance(f.attrs[key], str), f"provenance attribute '{key}' is a string")
        t = f["tasks/demo"]
        check(t.attrs["corpus"] == corpus and len(t.attrs["corpus_sha256"]) == 64, "task corpus path and hash")
        check(sorted(int(x) for x in t["layers"]) == sorted(acc), f"MoE layers {sorted(acc)}")
        for l, s in sorted(acc.items()):
            lg = t["layers"][str(l)]
            check(lg.attrs["tokens"] == s["tokens"] and lg.attrs["num_experts"] == E and lg.attrs["top_k"] == k,
                  f"layer {l}: tokens {s['tokens']}, num_experts, top_k")
            for name in ("count", "coact"):
                check(lg[name].dtype == np.int64 and np.array_equal(lg[name][()], s[name]),
                      f"layer {l} {name}: int64, equal")
            for name in ("gate_sum", "prob_sum", "logit_sum", "logit_gram", "act_norm_sum", "reap_sum"):
                check(lg[name].dtype == np.float64, f"layer {l} {name}: float64")
                close(f"layer {l} {name}", lg[name][()], s[name])
            close(f"layer {l} out_mean", lg["out_mean"][()], s["out_sum"] / s["tokens"])
            check(lg["hidden_sample"].shape == (10, cfg["hidden_size"]) and lg["hidden_sample_keys"].shape == (10,)
                  and np.all(np.diff(lg["hidden_sample_keys"][()]) > 0), f"layer {l} hidden_sample: 10 rows, keys ascending")
    finish("reference.collect-stats")


if __name__ == "__main__":
    main()
