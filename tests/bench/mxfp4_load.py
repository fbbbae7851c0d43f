#!/usr/bin/python3
"""What gpt-oss's MXFP4 experts cost at load: one decoder layer of gpt-oss-20b's shapes
(hidden 2880, 64 heads of 64, 32 experts of 2880, the real vocabulary) written twice,
with its experts in MXFP4 (as published) and dequantised to BF16 [E, in, out] (as
transformers writes them); then `smoe score --dtype bf16` of a short corpus on each,
in turns, best of `--runs`: wall time and peak RSS, MXFP4 against BF16 in the same
session. Both load the same values (the BF16 layout scores identically).

  mxfp4_load.py --smoe build/smoe --dir /tmp/mxfp4-bench [--runs 2] [--threads 2]

The weights are random codes with scales near 2^-5; the run measures loading, not
quality. Prints one JSON line with the figures."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import hf_reference as ref  # noqa: E402

D, F, E, V, H, HKV, HD = 2880, 2880, 32, 201088, 64, 8, 64


def config():
    cfg = ref.tiny_config("gpt_oss")
    cfg.update(hidden_size=D, intermediate_size=F, num_local_experts=E, num_experts_per_tok=4, vocab_size=V,
               num_attention_heads=H, num_key_value_heads=HKV, head_dim=HD, num_hidden_layers=1,
               layer_types=["sliding_attention"], sliding_window=128)
    return cfg


def weights(seed):
    g = torch.Generator().manual_seed(seed)

    def small(*shape):
        return (0.02 * torch.randn(*shape, generator=g)).to(torch.bfloat16)

    p = "model.layers.0."
    w = {"model.embed_tokens.weight": small(V, D), "model.norm.weight": torch.ones(D, dtype=torch.bfloat16),
         "lm_head.weight": small(V, D), p + "input_layernorm.weight": torch.ones(D, dtype=torch.bfloat16),
         p + "post_attention_layernorm.weight": torch.ones(D, dtype=torch.bfloat16),
         p + "self_attn.sinks": small(H), p + "mlp.router.weight": small(E, D), p + "mlp.router.bias": small(E)}
    for x, o, i in (("q", H * HD, D), ("k", HKV * HD, D), ("v", HKV * HD, D), ("o", D, H * HD)):
        w[p + f"self_attn.{x}_proj.weight"] = small(o, i)
        w[p + f"self_attn.{x}_proj.bias"] = small(o)
    for name, o, i in (("gate_up_proj", 2 * F, D), ("down_proj", D, F)):
        w[p + f"mlp.experts.{name}_blocks"] = torch.randint(0, 256, (E, o, i // 32, 16), generator=g, dtype=torch.uint8)
        w[p + f"mlp.experts.{name}_scales"] = torch.randint(120, 124, (E, o, i // 32), generator=g, dtype=torch.uint8)
        w[p + f"mlp.experts.{name}_bias"] = small(E, o)
    return w


def score(smoe, model, corpus, threads):
    cmd = ["/usr/bin/time", "-v", smoe, "score", "--model", model, "--corpus", corpus, "--dtype", "bf16",
           "--threads", str(threads), "--context", "32"]
    start = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - start
    if p.returncode != 0:
        sys.exit(f"smoe score failed on {model}:\n{p.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    ppl = re.search(r"perplexity=(\S+)", p.stdout).group(1)
    return wall, rss, ppl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    shutil.rmtree(a.dir, ignore_errors=True)
    os.makedirs(a.dir)
    cfg, w = config(), weights(7)
    models = {"mxfp4": os.path.join(a.dir, "mxfp4"), "bf16": os.path.join(a.dir, "bf16")}
    ref.save_checkpoint(models["mxfp4"], cfg, w, shards=1)
    plain_cfg, plain = ref.gpt_oss_dequantized(cfg, w)
    ref.save_checkpoint(models["bf16"], plain_cfg, {n: t.to(torch.bfloat16) if t.is_floating_point() else t
                                                   for n, t in plain.items()}, shards=1)
    del w, plain
    corpus = os.path.join(a.dir, "corpus.jsonl")
    with open(corpus, "w") as f:
        f.write(json.dumps({"input_ids": list(range(100, 164))}) + "\n")
    best = {k: (float("inf"), 0.0, "") for k in models}
    for _ in range(a.runs):
        for k, m in models.items():  # in turns
            wall, rss, ppl = score(a.smoe, m, corpus, a.threads)
            if wall < best[k][0]:
                best[k] = (wall, rss, ppl)
    size = {k: sum(os.path.getsize(os.path.join(m, f)) for f in os.listdir(m) if f.endswith(".safetensors"))
            for k, m in models.items()}
    print(json.dumps({"threads": a.threads, "runs": a.runs,
                      **{f"{k}_{what}": v for k in models for what, v in
                         zip(("seconds", "peak_rss_mb", "perplexity"), best[k])},
                      **{f"{k}_checkpoint_mb": size[k] / 2**20 for k in models},
                      "seconds_ratio": best["mxfp4"][0] / best["bf16"][0],
                      "rss_ratio": best["mxfp4"][1] / best["bf16"][1]}))


if __name__ == "__main__":
    main()
