#!/usr/bin/python3
"""The usual PyTorch way of gathering routing statistics, as the baseline for
`smoe collect` (benchmark, not a test).

This is what MC-SMoE, HC-SMoE and REAP do: an eager model with the HF-transformers
Mixtral module structure and block semantics (router softmax in float32, top-k,
renormalise, a Python loop over experts with index_add_), and forward hooks that
accumulate the statistics smoe writes (docs/stats-h5.md) in float64: count,
gate_sum, prob_sum, coact, logit_sum, logit_gram, act_norm_sum, reap_sum.
Like them it runs the causal LM, LM head included: REAP's record_activations
calls `model(**sample)` on an AutoModelForCausalLM; MC-SMoE's and HC-SMoE's
compute_all_usages call `model(**batch, output_router_logits=True)` on a
MixtralForCausalLM; these forwards compute the logits of every position. `--no-lm-head` runs the decoder stack alone, a leaner
baseline than any of the peers (collecting statistics needs no logits).

  /usr/bin/python3 tests/bench/baseline_collect.py --model DIR --corpus FILE \
      [--dtype f32|bf16] [--threads 2] [--device cpu|cuda] [--batch 1] [--no-lm-head] [--out stats.pt]

Prints one line of JSON: tokens, seconds of the loop over the corpus (model
loading excluded, as in smoe's own figure), tokens/s.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import hf_reference as ref  # noqa: E402


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, self.H, self.Hkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.D = d // self.H
        self.q_proj = nn.Linear(d, self.H * self.D, bias=False)
        self.k_proj = nn.Linear(d, self.Hkv * self.D, bias=False)
        self.v_proj = nn.Linear(d, self.Hkv * self.D, bias=False)
        self.o_proj = nn.Linear(self.H * self.D, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.H, self.D).transpose(1, 2)
        k = self.k_proj(x).view(B, S, self.Hkv, self.D).transpose(1, 2)
        v = self.v_proj(x).view(B, S, self.Hkv, self.D).transpose(1, 2)
        q = q * cos + ref.rotate_half(q) * sin
        k = k * cos + ref.rotate_half(k) * sin
        rep = self.H // self.Hkv
        k = k[:, :, None].expand(B, self.Hkv, rep, S, self.D).reshape(B, self.H, S, self.D)
        v = v[:, :, None].expand(B, self.Hkv, rep, S, self.D).reshape(B, self.H, S, self.D)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.D) + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return self.o_proj(torch.matmul(probs, v).transpose(1, 2).reshape(B, S, self.H * self.D))


class Expert(nn.Module):  # MixtralBlockSparseTop2MLP
    def __init__(self, d, ff):
        super().__init__()
        self.w1 = nn.Linear(d, ff, bias=False)
        self.w2 = nn.Linear(ff, d, bias=False)
        self.w3 = nn.Linear(d, ff, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoeBlock(nn.Module):  # MixtralSparseMoeBlock
    def __init__(self, cfg):
        super().__init__()
        d, self.E, self.k = cfg["hidden_size"], cfg["num_local_experts"], cfg["num_experts_per_tok"]
        self.gate = nn.Linear(d, self.E, bias=False)
        self.experts = nn.ModuleList(Expert(d, cfg["intermediate_size"]) for _ in range(self.E))

    def forward(self, x):
        B, S, d = x.shape
        x = x.view(-1, d)
        logits = self.gate(x)
        weights = F.softmax(logits, dim=1, dtype=torch.float)
        weights, chosen = torch.topk(weights, self.k, dim=-1)
        weights /= weights.sum(dim=-1, keepdim=True)
        weights = weights.to(x.dtype)
        out = torch.zeros((B * S, d), dtype=x.dtype)
        mask = F.one_hot(chosen, num_classes=self.E).permute(2, 1, 0)
        for e in range(self.E):
            idx, top_x = torch.where(mask[e])
            y = self.experts[e](x[None, top_x].reshape(-1, d)) * weights[top_x, idx, None]
            out.index_add_(0, top_x, y.to(x.dtype))
        return out.reshape(B, S, d), logits


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(d, eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.block_sparse_moe = SparseMoeBlock(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        y, _ = self.block_sparse_moe(self.post_attention_layernorm(x))
        return x + y


class Model(nn.Module):  # MixtralModel: the decoder stack
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, tokens):
        B, S = tokens.shape
        x = self.embed_tokens(tokens)
        D = self.cfg["hidden_size"] // self.cfg["num_attention_heads"]
        cos, sin = (t.to(x.device) for t in ref.rope(S, D, self.cfg["rope_theta"], x.dtype))
        i, j = torch.arange(S, device=x.device)[:, None], torch.arange(S, device=x.device)[None, :]
        mask = torch.zeros(S, S, dtype=x.dtype, device=x.device).masked_fill(j > i, torch.finfo(x.dtype).min)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class Statistics:
    """Forward hooks on every router (gate) and every expert, accumulating in float64."""

    def __init__(self, model, device="cpu"):
        self.layers = {}
        for l, layer in enumerate(model.layers):
            moe = layer.block_sparse_moe
            E = moe.E
            z = lambda *shape, dtype=torch.float64: torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
            s = {"count": z(E, dtype=torch.int64), "coact": z(E, E, dtype=torch.int64), "gate_sum": z(E),
                 "prob_sum": z(E), "logit_sum": z(E), "logit_gram": z(E, E), "act_norm_sum": z(E), "reap_sum": z(E)}
            self.layers[l] = s
            moe.gate.register_forward_hook(self._router_hook(moe, s))
            for e, expert in enumerate(moe.experts):
                expert.register_forward_hook(self._expert_hook(moe, s, e))

    @staticmethod
    def _router_hook(moe, s):
        def hook(module, inputs, logits):
            z = logits.double()
            probs = F.softmax(logits, dim=1, dtype=torch.float)
            w, chosen = torch.topk(probs, moe.k, dim=-1)
            w = (w / w.sum(dim=-1, keepdim=True)).to(logits.dtype)
            onehot = F.one_hot(chosen, num_classes=moe.E).sum(1)  # [T, E]
            s["count"] += onehot.sum(0)
            s["coact"] += onehot.T @ onehot
            s["gate_sum"].index_add_(0, chosen.reshape(-1), w.double().reshape(-1))
            s["prob_sum"] += probs.double().sum(0)
            s["logit_sum"] += z.sum(0)
            s["logit_gram"] += z.T @ z
            moe._routing = (chosen, w)  # for the expert hooks of this forward pass
        return hook

    @staticmethod
    def _expert_hook(moe, s, e):
        def hook(module, inputs, out):
            chosen, w = moe._routing
            idx, top_x = torch.where(F.one_hot(chosen, num_classes=moe.E).permute(2, 1, 0)[e])
            norms = out.double().norm(dim=1)
            s["act_norm_sum"][e] += norms.sum()
            s["reap_sum"][e] += (w[top_x, idx].double() * norms).sum()
        return hook


class CausalLM(nn.Module):  # MixtralForCausalLM: the model and its LM head over every position
    def __init__(self, cfg):
        super().__init__()
        self.model = Model(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)

    @property
    def layers(self):
        return self.model.layers

    def forward(self, tokens):
        return self.lm_head(self.model(tokens))


def load_model(folder, dtype, lm_head=True):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    if cfg["model_type"] != "mixtral":
        sys.exit(f"{folder}: the baseline runs the Mixtral layout only")
    files = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    state = {}
    for n in files:
        tensors, _ = ref.load_safetensors(os.path.join(folder, n))
        state.update(tensors if lm_head else {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    model = CausalLM(cfg) if lm_head else Model(cfg)
    model.load_state_dict(state)
    return model.to(dtype).eval(), cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", required=True, help="JSONL with input_ids; each record one batch row")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", help="save the statistics (torch.save) for comparison")
    ap.add_argument("--batch", type=int, default=1, help="documents of equal length per forward pass")
    ap.add_argument("--no-lm-head", dest="lm_head", action="store_false",
                    help="run the decoder stack only (leaner than the peers, which call the causal LM)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, cfg = load_model(a.model, torch.float32 if a.dtype == "f32" else torch.bfloat16, a.lm_head)
    model = model.to(a.device)
    stats = Statistics(model, a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    with open(a.corpus) as f:
        docs = [json.loads(line)["input_ids"] for line in f if line.strip()]
    tokens = 0
    start = time.perf_counter()
    with torch.no_grad():
        i = 0
        while i < len(docs):
            j = i + 1
            while j < len(docs) and j - i < a.batch and len(docs[j]) == len(docs[i]):
                j += 1
            model(torch.tensor(docs[i:j], device=a.device))
            tokens += sum(len(d) for d in docs[i:j])
            i = j
    sync()
    seconds = time.perf_counter() - start
    if a.out:
        torch.save({l: {k: v.cpu() for k, v in s.items()} for l, s in stats.layers.items()}, a.out)
    print(json.dumps({"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}))


if __name__ == "__main__":
    main()
