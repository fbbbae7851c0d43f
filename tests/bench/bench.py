#!/usr/bin/python3
"""smoe's benchmarks (not tests: nothing here passes or fails). One run measures
everything against baselines taken in the same run and prints one Markdown table:

  - collection throughput of `smoe collect` on the bench model (Mixtral layout,
    hidden 1024, 4 layers, 16 experts top-2, expert FFN 2816, vocab 32000, 16 heads,
    4 KV heads, sequences of 512), F32 and BF16, 2 threads, as a ratio to the usual
    PyTorch approach (tests/bench/baseline_collect.py: HF block semantics, forward
    hooks), and as a share of the machine's GEMM peak measured here;
  - expert-parallel cost: 2 ranks x 1 thread against 1 rank x 2 threads, and the
    share of time in the token exchanges (all-to-all);
  - peak resident memory per rank for 1, 2, 4 ranks, default and layerwise schedules;
  - the fuzz targets run for longer than the test command runs them.

  /usr/bin/python3 tests/bench/bench.py --smoe build/smoe [--fuzz-dir build-san] \
      [--workdir DIR] [--write docs/bench.md]
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import h5py
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import hf_reference as ref  # noqa: E402

BENCH = dict(hidden_size=1024, num_hidden_layers=4, num_local_experts=16, num_experts_per_tok=2,
             intermediate_size=2816, vocab_size=32000, num_attention_heads=16, num_key_value_heads=4,
             sliding_window=None, max_position_embeddings=4096)
SEQ = 512
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def make_inputs(w, docs):
    model = os.path.join(w, "bench-model")
    cfg = ref.tiny_config("mixtral")
    cfg.update(BENCH)
    cached = os.path.join(model, "config.json")
    if not os.path.exists(cached) or json.load(open(cached)) != cfg:
        ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=0), shards=4)
    g = torch.Generator().manual_seed(1)
    corpora = {}
    for n in sorted(set(docs)):
        path = os.path.join(w, f"corpus-{n}.jsonl")
        with open(path, "w") as f:
            for _ in range(n):
                f.write(json.dumps({"input_ids": torch.randint(0, cfg["vocab_size"], (SEQ,), generator=g).tolist()}) + "\n")
        corpora[n] = path
    return model, cfg, corpora


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def flops_per_token(cfg):
    """Multiply-adds x 2 of one token through the layers collect runs (no LM head);
    attention scores over the full sequence, as both implementations compute them."""
    d, H, Hkv, E = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_local_experts"]
    D = d // H
    proj = d * H * D + 2 * d * Hkv * D + H * D * d
    attn = 2 * SEQ * H * D
    experts = cfg["num_experts_per_tok"] * 3 * d * cfg["intermediate_size"]
    return 2 * cfg["num_hidden_layers"] * (proj + attn + experts + d * E)


def gemm_peak(dtype, threads):
    torch.set_num_threads(threads)
    a = torch.randn(4096, 4096).to(dtype)
    b = torch.randn(4096, 4096).to(dtype)
    best = float("inf")
    for _ in range(4):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * 4096 ** 3 / best


def run_smoe(a, w, model, corpus, ranks, threads, dtype="f32", schedule="default", bind="none", tag="", env=None):
    out = os.path.join(w, f"stats{tag}.h5")
    cmd = ["mpirun", "--oversubscribe", "--bind-to", bind, "-n", str(ranks), a.smoe, "collect", "--model", model,
           "--task", f"bench={corpus}", "--out", out, "--threads", str(threads), "--dtype", dtype,
           "--schedule", schedule, "--context", str(SEQ), "--progress-seconds", "0"]
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(ENV, **(env or {})))
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    m = re.search(r"collect: (\d+) tokens in ([\d.e+-]+) s: ([\d.e+-]+) tokens/s; rank 0 spent ([\d.e+-]+) s "
                  r"\(([\d.e+-]+)%\)", p.stderr)
    peaks = [int(x) for x in re.findall(r"r\d+ (\d+) MB",
                                        p.stderr.split("peak resident memory per rank:")[1].splitlines()[0])]
    return {"tokens_per_s": float(m.group(3)), "exchange_share": float(m.group(5)) / 100, "peaks": peaks, "out": out,
            "end_to_end": int(m.group(1)) / wall}


def run_baseline(model, corpus, dtype, threads, out, lm_head=True):
    cmd = ["/usr/bin/python3", os.path.join(HERE, "baseline_collect.py"), "--model", model, "--corpus", corpus,
           "--dtype", dtype, "--threads", str(threads), "--out", out] + ([] if lm_head else ["--no-lm-head"])
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"baseline failed:\n{p.stderr}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["end_to_end"] = r["tokens"] / wall
    return r


def best(runs, key="tokens_per_s"):
    return max(runs, key=lambda r: r[key])


def same_counts(stats_h5, baseline_pt, layers):
    theirs = torch.load(baseline_pt)
    with h5py.File(stats_h5, "r") as f:
        return all((f[f"tasks/bench/layers/{l}/count"][()] == theirs[l]["count"].numpy()).all() for l in range(layers))


def run_fuzz(fuzz_dir, seconds):
    rows = []
    for target in ("fuzz-safetensors", "fuzz-config"):
        exe = os.path.join(fuzz_dir, "tests", "fuzz", target)
        if not os.path.exists(exe):
            rows.append((target, "not built"))
            continue
        corpus = tempfile.mkdtemp(prefix=f"smoe-{target}-")
        p = subprocess.run([exe, f"-max_total_time={seconds}", "-print_final_stats=1", corpus,
                            os.path.join(HERE, "..", "fuzz", "seeds", target.split("-")[1])],
                           capture_output=True, text=True)
        execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", p.stderr)
        verdict = "no crash, no sanitizer report" if p.returncode == 0 else f"FAILED (exit {p.returncode})"
        rows.append((target, f"{int(execs.group(1)) if execs else 0:,} inputs in {seconds} s: {verdict}"))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--workdir")
    ap.add_argument("--docs", type=int, default=24, help="sequences of 512 in the throughput corpus")
    ap.add_argument("--bf16-baseline-docs", type=int, default=2,
                    help="sequences for the BF16 baseline (slow where the CPU lacks BF16 GEMM instructions)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each F32 measurement; the best is reported")
    ap.add_argument("--fuzz-dir", default="build-san", help="build folder with the fuzz targets")
    ap.add_argument("--fuzz-seconds", type=int, default=300)
    ap.add_argument("--write", help="also write the table to this Markdown file")
    a = ap.parse_args()
    w = a.workdir or tempfile.mkdtemp(prefix="smoe-bench-")
    os.makedirs(w, exist_ok=True)
    model, cfg, corpora = make_inputs(w, [a.docs, 4, a.bf16_baseline_docs])
    size = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model) if f.endswith(".safetensors"))
    fpt = flops_per_token(cfg)
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    say(f"# smoe benchmarks, {datetime.date.today().isoformat()}")
    say()
    flags = set(open("/proc/cpuinfo").read().split())
    native = {"avx512bw", "avx512vl", "avx512dq"} <= flags
    say(f"Machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"{'with' if native else 'without'} AVX-512 (BF16 GEMMs: "
        f"{'LibTorch/oneDNN kernels in both' if native else 'smoe widens them to F32; the baseline runs LibTorch fallback'}); "
        f"LibTorch/PyTorch {torch.__version__} (Debian). Bench model: Mixtral layout, hidden 1024, 4 layers, "
        f"16 experts top-2, expert FFN 2816, vocab 32000, 16 heads / 4 KV heads, {size / 2**30:.2f} GiB in F32; "
        f"{a.docs} sequences of {SEQ} tokens; {fpt / 1e6:.0f} MFLOP a token.")
    say()

    say(f"## Collection throughput (1 rank x 2 threads; best of {a.repeats} runs, taken in turns)")
    say()
    say("Tokens/s over the loop through the corpus (model loading excluded in both), then over the "
        "whole process (loading the checkpoint and writing the statistics included). The baseline runs the "
        "causal LM as MC-SMoE, HC-SMoE and REAP do (`model(**batch)`: the LM head's logits for every position "
        "included); smoe and the decoder-only baseline run no LM head.")
    say()
    say("| dtype | smoe tokens/s | baseline (causal LM) tokens/s | smoe / baseline | end to end: smoe / baseline | "
        "baseline without LM head tokens/s | smoe / that | GEMM peak (GFLOP/s)" + ("" if native else ", BF16: F32's") +
        " | smoe's share of peak | same expert counts |")
    say("|---|---|---|---|---|---|---|---|---|---|")
    through = {}
    blas = None
    for dtype, tdtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        # Without BF16 GEMM instructions smoe's BF16 products run as F32 GEMMs: F32 is its peak.
        peak = gemm_peak(tdtype if native or dtype == "f32" else torch.float32, 2)
        base_docs = a.docs if dtype == "f32" else a.bf16_baseline_docs
        repeats = a.repeats if dtype == "f32" else 1
        runs = {"ours": [], "base": [], "lean": [], "blas": []}
        for _ in range(repeats):
            runs["ours"].append(run_smoe(a, w, model, corpora[a.docs], 1, 2, dtype, tag=f"-{dtype}"))
            runs["base"].append(run_baseline(model, corpora[base_docs], dtype, 2, os.path.join(w, f"baseline-{dtype}.pt")))
            runs["lean"].append(run_baseline(model, corpora[base_docs], dtype, 2, os.path.join(w, f"lean-{dtype}.pt"),
                                             lm_head=False))
            if dtype == "f32":
                runs["blas"].append(run_smoe(a, w, model, corpora[a.docs], 1, 2, dtype, tag="-blas",
                                             env={"SMOE_CPU_GEMM": "torch"}))
        ours, base, lean = best(runs["ours"]), best(runs["base"]), best(runs["lean"])
        if dtype == "f32":
            blas = best(runs["blas"])
        through[dtype] = ours
        # BF16 rounds differently in the two programs: only F32 counts must agree.
        agree = "n/a"
        if dtype == "f32":
            agree = "yes" if all(same_counts(ours["out"], os.path.join(w, f"{b}-f32.pt"), cfg["num_hidden_layers"])
                                 for b in ("baseline", "lean")) else "no"
        say(f"| {dtype} | {ours['tokens_per_s']:.0f} | {base['tokens_per_s']:.0f} | "
            f"{ours['tokens_per_s'] / base['tokens_per_s']:.2f}x | "
            f"{ours['end_to_end'] / base['end_to_end']:.2f}x | {lean['tokens_per_s']:.0f} | "
            f"{ours['tokens_per_s'] / lean['tokens_per_s']:.2f}x | {peak / 1e9:.0f} | "
            f"{ours['tokens_per_s'] * fpt / peak:.0%} | {agree} |")
    say()
    say(f"smoe's own F32 GEMM kernel (src/model/gemm.cpp) against LibTorch's BLAS path in the same runs "
        f"(`SMOE_CPU_GEMM=torch`): {through['f32']['tokens_per_s']:.0f} against {blas['tokens_per_s']:.0f} tokens/s, "
        f"{through['f32']['tokens_per_s'] / blas['tokens_per_s']:.2f}x.")
    say()

    say("## Expert-parallel cost (F32)")
    say()
    say("| layout | tokens/s | ratio | share of time in token exchanges (rank 0) |")
    say("|---|---|---|---|")
    one = through["f32"]
    two = best([run_smoe(a, w, model, corpora[a.docs], 2, 1, "f32", bind="core", tag="-ep") for _ in range(a.repeats)])
    say(f"| 1 rank x 2 threads | {one['tokens_per_s']:.0f} | 1.00 | {one['exchange_share']:.1%} |")
    say(f"| 2 ranks x 1 thread | {two['tokens_per_s']:.0f} | {two['tokens_per_s'] / one['tokens_per_s']:.2f} | "
        f"{two['exchange_share']:.1%} |")
    say()

    say(f"## Peak resident memory per rank (F32, checkpoint {size / 2**20:.0f} MB)")
    say()
    say("| ranks | schedule | peak RSS per rank (MB) | largest / checkpoint |")
    say("|---|---|---|---|")
    for schedule in ("default", "layerwise"):
        for ranks in (1, 2, 4):
            r = run_smoe(a, w, model, corpora[4], ranks, 1, "f32", schedule=schedule, tag=f"-mem{ranks}{schedule}")
            say(f"| {ranks} | {schedule} | {', '.join(map(str, r['peaks']))} | {max(r['peaks']) * 2**20 / size:.1%} |")
    say()

    if a.fuzz_seconds > 0:
        say("## Fuzzing (libFuzzer, ASan + UBSan)")
        say()
        say("| target | result |")
        say("|---|---|")
        for target, result in run_fuzz(a.fuzz_dir, a.fuzz_seconds):
            say(f"| {target} | {result} |")
        say()

    if a.write:
        with open(a.write, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
