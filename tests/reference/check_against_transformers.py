#!/usr/bin/env python3
"""Checks hf_reference.py against Hugging Face transformers itself, where it is
installed (not on Debian 12: run it on a machine with pip's transformers). For each
family, writes the same tiny random checkpoint the cross-checks use, loads it with
AutoModelForCausalLM (eager attention, float32), and compares logits and routing
choices with the plain-PyTorch reference.

    python3 tests/reference/check_against_transformers.py [--workdir DIR]"""

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402
import transformers  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp()
    torch.manual_seed(0)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    worst = 0.0
    for family in ["mixtral", "olmoe", "qwen2_moe", "qwen3_moe"]:
        cfg = ref.tiny_config(family)
        w = ref.random_weights(cfg, seed=1234)
        folder = os.path.join(work, family)
        ref.save_checkpoint(folder, cfg, w, shards=3)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32,
                                                                  attn_implementation="eager")
        model.eval()
        g = torch.Generator().manual_seed(3)
        diffs, agree = [], []
        for length in (5, 17, 40):
            tokens = torch.randint(0, cfg["vocab_size"], (2, length), generator=g)
            with torch.no_grad():
                out = model(tokens, output_router_logits=True)
            ours, routing = ref.forward(cfg, w, tokens, torch.float32)
            diffs.append((out.logits.float() - ours).abs().max().item())
            k = cfg["num_experts_per_tok"]
            hf_router = [r for r in out.router_logits if r is not None]
            for (layer, chosen), logits in zip(sorted(routing.items()), hf_router):
                hf_chosen = torch.topk(torch.softmax(logits.float(), -1), k, -1).indices
                agree.append((torch.sort(hf_chosen, 1).values == torch.sort(chosen, 1).values).all(1).float().mean().item())
        print(f"{family:10s} max|dlogit| vs transformers {max(diffs):.3g}, routing agreement {min(agree):.4f}")
        worst = max(worst, max(diffs))
    print(f"worst max|dlogit| {worst:.3g}")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
