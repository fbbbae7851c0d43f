#!/usr/bin/env python3
"""smoe on a GPU against the usual PyTorch approach, in one run (a benchmark: nothing
passes or fails). On a Mixtral-layout model with Mixtral-8x7B's layer shapes
(hidden 4096, 8 experts top-2 of FFN 14336, 32 heads, 8 KV heads, vocab 32000;
--layers of them), bf16, sequences of 512:

  - the GPU's bf16 GEMM peak (8192^3 torch.mm, best of 5);
  - `smoe collect --device cuda` tokens/s on 1 rank, and on 2 ranks sharing the GPU
    (staged MPI), with grouped expert GEMMs and with --exact-ep, with the share of
    rank 0's time in the exchanges;
  - the HF-hooks baseline (tests/bench/baseline_collect.py --device cuda, same
    model, batch and dtype), with and without its LM head;
  - `smoe score --device cuda` tokens/s (eval's forward pass);
  - model FLOP/s of each as a share of the GEMM peak (a lower bound on the expert
    GEMMs' share: they are ~90% of the FLOPs at these shapes).

Prints a Markdown table naming the GPU.
  python3 tests/bench/bench_gpu.py --smoe build-gpu/smoe --workdir DIR [--layers 4] [--docs 32]
`--small` (hidden 256, FFN 512) with `--device cpu` runs the same steps quickly, to
check the script where there is no GPU.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import hf_reference as ref  # noqa: E402

SEQ = 512
MIXTRAL_8X7B = dict(hidden_size=4096, intermediate_size=14336, num_local_experts=8, num_experts_per_tok=2,
                    num_attention_heads=32, num_key_value_heads=8, vocab_size=32000, sliding_window=None,
                    max_position_embeddings=4096, rope_theta=1e6)
SMALL = dict(MIXTRAL_8X7B, hidden_size=256, intermediate_size=512, num_attention_heads=8, num_key_value_heads=2)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def flops_per_token(cfg):
    """2 x multiply-adds of one token through the decoder layers (no LM head)."""
    d, H, Hkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = d // H
    attn = d * H * D + 2 * d * Hkv * D + H * D * d + 2 * SEQ * H * D
    experts = cfg["num_experts_per_tok"] * 3 * d * cfg["intermediate_size"]
    return 2 * cfg["num_hidden_layers"] * (attn + experts + d * cfg["num_local_experts"])


def gemm_peak(device):
    n = 8192 if device.startswith("cuda") else 1024
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.mm(a, b)
    sync()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def make_inputs(w, cfg, docs):
    model = os.path.join(w, "model")
    cached = os.path.join(model, "config.json")
    if not os.path.exists(cached) or json.load(open(cached)) != cfg:
        weights = {k: v.to(torch.bfloat16) for k, v in ref.random_weights(cfg, seed=0).items()}
        ref.save_checkpoint(model, cfg, weights, shards=cfg["num_hidden_layers"])
    g = torch.Generator().manual_seed(1)
    corpus = os.path.join(w, "corpus.jsonl")
    with open(corpus, "w") as f:
        for _ in range(docs):
            f.write(json.dumps({"input_ids": torch.randint(0, cfg["vocab_size"], (SEQ,), generator=g).tolist()}) + "\n")
    return model, corpus


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))}: exit {p.returncode}\n{p.stderr[-3000:]}")
    return p


def smoe_collect(a, model, corpus, ranks, *extra):
    out = os.path.join(a.workdir, f"stats-{ranks}{''.join(extra)}.h5")
    cmd = (["mpirun", "--bind-to", "none", "-n", str(ranks)] if ranks > 1 else []) + [
        a.smoe, "collect", "--model", model, "--task", f"bench={corpus}", "--out", out, "--overwrite",
        "--device", a.device, "--dtype", "bf16", "--context", str(SEQ), "--batch", str(a.batch),
        "--progress-seconds", "0", *extra]
    p = run(cmd)
    m = re.search(r"collect: (\d+) tokens in ([\d.e+-]+) s: ([\d.e+-]+) tokens/s; rank 0 spent ([\d.e+-]+) s "
                  r"\(([\d.e+-]+)%\)", p.stderr)
    return {"tokens_per_s": float(m.group(3)), "exchange_share": float(m.group(5)) / 100}


def baseline(a, model, corpus, lm_head):
    cmd = [sys.executable, os.path.join(HERE, "baseline_collect.py"), "--model", model, "--corpus", corpus,
           "--dtype", "bf16", "--device", a.device, "--batch", str(a.batch)] + ([] if lm_head else ["--no-lm-head"])
    return json.loads(run(cmd).stdout.strip().splitlines()[-1])


def smoe_score(a, model, corpus):
    p = run([a.smoe, "score", "--model", model, "--corpus", corpus, "--device", a.device, "--dtype", "bf16",
             "--context", str(SEQ), "--batch", str(a.batch)])
    return float(re.search(r"tokens_per_second=([\d.e+-]+)", p.stdout).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--layers", type=int, default=4, help="decoder layers of Mixtral-8x7B's shapes")
    ap.add_argument("--docs", type=int, default=32, help="sequences of 512 tokens")
    ap.add_argument("--batch", type=int, default=8, help="sequences per forward pass, smoe and the baseline alike")
    ap.add_argument("--small", action="store_true", help="small shapes, to check the script")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    cfg = ref.tiny_config("mixtral")
    cfg.update(SMALL if a.small else MIXTRAL_8X7B)
    cfg["num_hidden_layers"] = a.layers
    model, corpus = make_inputs(a.workdir, cfg, a.docs)
    device = (torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "CPU") + f" ({a.device})"
    peak = gemm_peak(a.device)
    flops = flops_per_token(cfg)
    rows = [("smoe collect, 1 rank", smoe_collect(a, model, corpus, 1)),
            ("smoe collect, 2 ranks sharing the device", smoe_collect(a, model, corpus, 2)),
            ("smoe collect, 2 ranks sharing the device, --exact-ep", smoe_collect(a, model, corpus, 2, "--exact-ep")),
            ("baseline: HF hooks, causal LM (LM head)", baseline(a, model, corpus, True)),
            ("baseline: HF hooks, decoder stack only", baseline(a, model, corpus, False))]
    score = smoe_score(a, model, corpus)
    base = dict(rows)["baseline: HF hooks, causal LM (LM head)"]["tokens_per_s"]
    print(f"\n{device}: bf16 GEMM peak {peak / 1e12:.1f} TFLOP/s; {cfg['num_hidden_layers']} layers of "
          f"hidden {cfg['hidden_size']}, {cfg['num_local_experts']} experts top-{cfg['num_experts_per_tok']} "
          f"of FFN {cfg['intermediate_size']}; {a.docs} sequences of {SEQ}, batch {a.batch}, bf16\n")
    print("| run | tokens/s | vs baseline (LM head) | model FLOP/s / GEMM peak | exchange share |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        t = r["tokens_per_s"]
        share = f"{r['exchange_share']:.1%}" if "exchange_share" in r else ""
        print(f"| {name} | {t:,.0f} | {t / base:.2f}x | {t * flops / peak:.1%} | {share} |")
    print(f"| smoe score (eval's forward pass, LM head) | {score:,.0f} | {score / base:.2f}x | "
          f"{score * flops / peak:.1%} | |")


if __name__ == "__main__":
    main()
