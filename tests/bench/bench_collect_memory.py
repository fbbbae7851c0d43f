#!/usr/bin/python3
"""Benchmark (not a test): peak resident memory per rank of `smoe collect` on a
6-layer Mixtral-layout model, default schedule against --schedule layerwise, as a
share of the checkpoint's size. Prints one table.

  /usr/bin/python3 tests/bench/bench_collect_memory.py --smoe build/smoe [--ranks 2]"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import hf_reference as ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    w = a.workdir or tempfile.mkdtemp(prefix="smoe-bench-")
    cfg = ref.tiny_config("mixtral")
    cfg.update(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4,
               intermediate_size=1024, num_local_experts=32, num_experts_per_tok=2, vocab_size=1024,
               sliding_window=None)
    model = os.path.join(w, "model")
    if not os.path.exists(os.path.join(model, "config.json")):
        ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=0), shards=6)
    size = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model) if f.endswith(".safetensors"))
    corpus = os.path.join(w, "corpus.jsonl")
    g = torch.Generator().manual_seed(0)
    with open(corpus, "w") as f:
        for _ in range(32):
            f.write(json.dumps({"input_ids": torch.randint(0, 1024, (128,), generator=g).tolist()}) + "\n")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    rows = []
    for schedule in ("default", "layerwise"):
        out = os.path.join(w, f"stats-{schedule}.h5")
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-n", str(a.ranks), a.smoe, "collect",
               "--model", model, "--task", f"bench={corpus}", "--out", out, "--threads", "1",
               "--schedule", schedule, "--context", "128"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(p.stderr)
        peaks = [int(x) for x in re.findall(r"r\d+ (\d+) MB", p.stderr.split("peak resident memory per rank:")[1].splitlines()[0])]
        rows.append((schedule, peaks))
    print(f"checkpoint: {size / 2**20:.0f} MB (6 layers x 32 experts, hidden 512, expert FFN 1024, F32), "
          f"{a.ranks} ranks")
    print(f"{'schedule':10s} {'peak RSS per rank (MB)':>28s} {'max / checkpoint':>17s}")
    for schedule, peaks in rows:
        print(f"{schedule:10s} {', '.join(map(str, peaks)):>28s} {max(peaks) * 2**20 / size:17.1%}")


if __name__ == "__main__":
    main()
