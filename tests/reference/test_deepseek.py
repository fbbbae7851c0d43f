#!/usr/bin/python3
"""Cross-check of the DeepSeek-V2/V3 family (and Kimi-K2, which uses its layout)
against the plain-PyTorch reference of its HF semantics (hf_reference.py) on tiny
random checkpoints: multi-head latent attention with YaRN, dense first layers,
shared experts, group-limited sigmoid routing with a selection-only bias, and FP8
E4M3 weights with block scales (16 x 16 for deepseek_v3, 128 x 128 for kimi_k2;
deepseek_v2 is stored in BF16). `smoe score` runs on 1 rank and on 3 ranks
(expert-parallel, E not divisible by 3), in f32 and bf16.
  f32:  max |dlogit| <= 1e-4 (the FP8 weights decode to the same float32 values),
        routing identical, perplexity within 1e-5 relative
  bf16: max |dlogit| <= BF16_BOUND, routing identical
"""

import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402
from checks import check, finish, mpi_env, script_args  # noqa: E402
from family_runs import CONTEXT, make_corpus, reference_run, routing_agreement  # noqa: E402

F32_BOUND = 1e-4
# Logits are O(1..10). smoe's bf16 path runs the same LibTorch kernels in the
# same order as the reference; the bound leaves room for other kernels' blocking.
BF16_BOUND = 0.05


def run_smoe(a, model, corpus, dtype, out, ranks):
    cmd = [a.smoe, "score", "--model", model, "--corpus", corpus, "--dtype", dtype, "--context", str(CONTEXT),
           "--batch", "3", "--threads", "1" if ranks > 1 else "2", "--logits", out]
    if ranks > 1:
        cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-n", str(ranks)] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env())
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stderr}")
    values = dict(line.split("=", 1) for line in p.stdout.split() if "=" in line)
    tensors, _ = ref.load_safetensors(out)
    return tensors, float(values["perplexity"])


def main():
    a = script_args("--mpirun", fresh=True)
    torch.set_num_threads(2)
    print(f"{'case':40s} {'max|dlogit|':>12s} {'routing':>8s} {'ppl rel':>9s}")
    for family in ("deepseek_v3", "kimi_k2", "deepseek_v2"):
        cfg = ref.tiny_config(family)
        weights = ref.random_weights(cfg, seed=4321)
        if "quantization_config" in cfg:
            stored, decoded = ref.fp8_checkpoint(cfg, weights)
        else:
            stored = {n: t if n.endswith("_bias") or "norm" in n else t.to(torch.bfloat16) for n, t in weights.items()}
            decoded = {n: t.float() for n, t in stored.items()}
        folder = os.path.join(a.workdir, family)
        ref.save_checkpoint(folder, cfg, stored, shards=2)
        corpus = os.path.join(a.workdir, family + ".jsonl")
        seqs = make_corpus(corpus, cfg["vocab_size"], seed=9)
        moe_layers = [l for l in range(cfg["num_hidden_layers"]) if ref._moe_layer(cfg, l)]
        for dt_name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            ref_logits, ref_routing, ref_nll = reference_run(cfg, decoded, seqs, dt)
            check(sorted(ref_routing) == moe_layers, f"{family}: reference routes layers {moe_layers}")
            for ranks in (1, 3):
                label = f"{family} {dt_name} ranks={ranks}"
                out = os.path.join(a.workdir, f"{family}-{dt_name}-{ranks}.safetensors")
                ours, ppl = run_smoe(a, folder, corpus, dt_name, out, ranks)
                diff = (ours["logits"] - ref_logits).abs().max().item()
                agree = min(routing_agreement(ours[f"routing.layer{l}.experts"], c) for l, c in ref_routing.items())
                layers = sorted(int(k[len("routing.layer"):-len(".experts")]) for k in ours if k.startswith("routing."))
                rel = abs(ppl - torch.tensor(ref_nll).exp().item()) / torch.tensor(ref_nll).exp().item()
                print(f"{label:40s} {diff:12.3g} {agree:8.4f} {rel:9.2g}")
                check(layers == moe_layers, f"{label}: routing reported for MoE layers {moe_layers} only, got {layers}")
                check(diff <= (F32_BOUND if dt == torch.float32 else BF16_BOUND),
                      f"{label}: max |dlogit| {diff:.3g} within {F32_BOUND if dt == torch.float32 else BF16_BOUND}")
                check(agree == 1.0, f"{label}: routing choices identical (agreement {agree:.4f})")
                if dt == torch.float32:
                    check(rel < 1e-5, f"{label}: perplexity {ppl} equals the reference's (rel {rel:.2g})")
    finish("reference.deepseek")


if __name__ == "__main__":
    main()
