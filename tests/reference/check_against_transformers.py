#!/usr/bin/env python3
"""Checks hf_reference.py against Hugging Face transformers itself, where it is
installed (not on Debian 12: run it on a machine with pip's transformers). For each
family, writes the same tiny random checkpoint the cross-checks use, loads it with
AutoModelForCausalLM (eager attention, float32), and compares logits (and, for the
plain softmax routers, routing choices) with the plain-PyTorch reference. FP8
checkpoints are given to transformers decoded (its FP8 path needs a GPU), gpt-oss
with its experts dequantised (as transformers does on a CPU).

    python3 tests/reference/check_against_transformers.py [--workdir DIR] [--family F ...]"""

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402
import transformers  # noqa: E402


FAMILIES = ["mixtral", "olmoe", "qwen2_moe", "qwen3_moe", "deepseek_v3", "kimi_k2", "deepseek_v2", "glm4_moe",
            "minimax_m2", "ernie4_5_moe", "gpt_oss"]


def checkpoint(family, folder):
    """The family's tiny checkpoint as transformers loads it without a GPU: FP8 weights (DeepSeek-V3,
    Kimi-K2, MiniMax-M2) decoded to float32 and the quantization_config dropped; Kimi-K2, whose
    model_type lives in its Hub code, under deepseek_v3. Returns (config, weights)."""
    cfg = ref.tiny_config(family)
    w = ref.random_weights(cfg, seed=1234)
    if cfg["model_type"] == "gpt_oss":
        # transformers dequantises MXFP4 on a CPU anyway: give it the dequantised layout.
        saved_cfg, saved = ref.gpt_oss_dequantized(cfg, w)
        ref.save_checkpoint(folder, saved_cfg, saved, shards=3)
        return cfg, w
    if "quantization_config" in cfg:
        w = ref.fp8_checkpoint(cfg, w)[1]
        cfg = {k: v for k, v in cfg.items() if k != "quantization_config"}
    saved = dict(cfg, model_type="deepseek_v3") if family == "kimi_k2" else cfg
    ref.save_checkpoint(folder, saved, w, shards=3)
    return cfg, w


def routing_agreement(cfg, out, routing):
    """Where transformers' router logits give the choice (softmax, top-k, no selection bias): the
    share of tokens whose experts agree; None elsewhere (the logits carry the routing then)."""
    if cfg["model_type"] not in ("mixtral", "olmoe", "qwen2_moe", "qwen3_moe") or not out.router_logits:
        return None
    hf_router = [r for r in out.router_logits if r is not None]
    agree = []
    for (layer, chosen), logits in zip(sorted(routing.items()), hf_router):
        hf_chosen = torch.topk(torch.softmax(logits.float(), -1), cfg["num_experts_per_tok"], -1).indices
        agree.append((torch.sort(hf_chosen, 1).values == torch.sort(chosen, 1).values).all(1).float().mean().item())
    return min(agree)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--family", action="append", help="only these families (default: all)")
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp()
    torch.manual_seed(0)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    worst = 0.0
    for family in a.family or FAMILIES:
        folder = os.path.join(work, family)
        cfg, w = checkpoint(family, folder)
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32,
                                                                      attn_implementation="eager")
        except Exception as e:  # a family this transformers does not know
            print(f"{family:14s} not loaded by transformers {transformers.__version__}: {type(e).__name__}: {e}")
            worst = float("inf")
            continue
        model.eval()
        g = torch.Generator().manual_seed(3)
        diffs, agree = [], []
        for length in (5, 17, 40):
            tokens = torch.randint(0, cfg["vocab_size"], (2, length), generator=g)
            with torch.no_grad():
                out = model(tokens, output_router_logits=True)
            ours, routing = ref.forward(cfg, w, tokens, torch.float32)
            diffs.append((out.logits.float() - ours).abs().max().item())
            a_ = routing_agreement(cfg, out, routing)
            if a_ is not None:
                agree.append(a_)
        routed = f"routing agreement {min(agree):.4f}" if agree else "routing through the logits"
        print(f"{family:14s} max|dlogit| vs transformers {max(diffs):.3g}, {routed}")
        worst = max(worst, max(diffs))
    print(f"worst max|dlogit| {worst:.3g}")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
