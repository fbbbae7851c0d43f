#!/usr/bin/python3
"""A scaled-down DeepSeek-V3: the real layer shapes (hidden 7168, 128 heads of MLA
with q_lora 1536 and kv_lora 512, experts of 2048, a dense first layer of 18432,
vocab 129280, FP8 E4M3 with 128 x 128 block scales, group-limited routing) with
fewer layers and experts, written straight to disk; then `smoe collect --schedule
layerwise` on 2 ranks, and each rank's peak RSS against the checkpoint's size.

  deepseek_scaled.py --smoe build/smoe --dir /tmp/ds-scaled [--moe-layers 7] [--experts 128]

The weights are random (codes of a normal sample, one scale per tensor); the run
measures memory and time, not quality. Prints one JSON line with the figures."""

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import hf_reference as ref  # noqa: E402
from programs import mpi_env  # noqa: E402


def fp8_pool(n, rng):
    """n E4M3FN codes of a normal sample scaled so that 4 sigma reaches 448."""
    values = ref.FP8_VALUES[:127].numpy()
    x = rng.standard_normal(n, dtype=np.float32) * (448.0 / 4)
    a = np.minimum(np.abs(x), 448.0)
    hi = np.minimum(np.searchsorted(values, a), 126)
    lo = np.maximum(hi - 1, 0)
    code = np.where(values[hi] - a < a - values[lo], hi, lo).astype(np.uint8)
    return code | (np.signbit(x).astype(np.uint8) << 7)


class Shard:
    """Tensors of one safetensors file, written in order from generator callbacks."""

    def __init__(self):
        self.entries = []  # (name, dtype, shape, nbytes, fill)

    def add(self, name, dtype, shape, fill):
        size = {"F8_E4M3": 1, "BF16": 2, "F32": 4}[dtype] * int(np.prod(shape))
        self.entries.append((name, dtype, list(shape), size, fill))

    def write(self, path):
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, dtype, shape, size, _ in self.entries:
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
        text = json.dumps(header).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for _, _, _, size, fill in self.entries:
                data = fill(size)
                assert len(data) == size
                f.write(data)
        return offset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--moe-layers", type=int, default=7)
    ap.add_argument("--experts", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    pool = fp8_pool(1 << 28, rng)  # 256 MiB of codes; tensors take random windows of it
    bf16_pool = (rng.standard_normal(1 << 26, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)

    def fp8(size):
        start = int(rng.integers(0, len(pool) - size)) if size < len(pool) else 0
        return pool[start:start + size].tobytes() if size <= len(pool) else np.resize(pool, size).tobytes()

    def bf16(scale):
        def fill(size):
            n = size // 2
            x = np.resize(np.roll(bf16_pool, int(rng.integers(0, len(bf16_pool)))), n).view(np.uint16)
            f = (x.astype(np.uint32) << 16).view(np.float32) * np.float32(scale)
            return (f.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        return fill

    def const_f32(value):
        return lambda size: np.full(size // 4, value, dtype=np.float32).tobytes()

    cfg = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "scale",
                                      "deepseek-v3-config.json")))
    L = 1 + a.moe_layers
    cfg.update(num_hidden_layers=L, first_k_dense_replace=1, n_routed_experts=a.experts, num_nextn_predict_layers=0)
    d, H, V = cfg["hidden_size"], cfg["num_attention_heads"], cfg["vocab_size"]
    rq, rkv, dn, dr, dv = cfg["q_lora_rank"], cfg["kv_lora_rank"], 128, 64, 128
    ff, I = cfg["moe_intermediate_size"], cfg["intermediate_size"]

    def linear(shard, name, rows, cols):
        shard.add(name, "F8_E4M3", (rows, cols), fp8)
        sigma = 1.0 / np.sqrt(cols)  # a code's sigma is 448/4: scale = sigma * 4 / 448
        shard.add(name + "_scale_inv", "F32", (-(-rows // 128), -(-cols // 128)), const_f32(sigma * 4 / 448))

    shutil.rmtree(a.dir, ignore_errors=True)
    model = os.path.join(a.dir, "model")
    os.makedirs(model)
    json.dump(cfg, open(os.path.join(model, "config.json"), "w"), indent=1)
    shards = []
    top = Shard()
    top.add("model.embed_tokens.weight", "BF16", (V, d), bf16(1.0))
    top.add("model.norm.weight", "BF16", (d,), bf16(0.0 + 1.0))
    top.add("lm_head.weight", "BF16", (V, d), bf16(1.0 / np.sqrt(d)))
    shards.append(top)
    for l in range(L):
        s = Shard()
        p = f"model.layers.{l}."
        s.add(p + "input_layernorm.weight", "BF16", (d,), bf16(1.0))
        s.add(p + "post_attention_layernorm.weight", "BF16", (d,), bf16(1.0))
        s.add(p + "self_attn.q_a_layernorm.weight", "BF16", (rq,), bf16(1.0))
        s.add(p + "self_attn.kv_a_layernorm.weight", "BF16", (rkv,), bf16(1.0))
        linear(s, p + "self_attn.q_a_proj.weight", rq, d)
        linear(s, p + "self_attn.q_b_proj.weight", H * (dn + dr), rq)
        linear(s, p + "self_attn.kv_a_proj_with_mqa.weight", rkv + dr, d)
        linear(s, p + "self_attn.kv_b_proj.weight", H * (dn + dv), rkv)
        linear(s, p + "self_attn.o_proj.weight", d, H * dv)
        if l == 0:
            for proj, (r, c) in (("gate_proj", (I, d)), ("up_proj", (I, d)), ("down_proj", (d, I))):
                linear(s, p + f"mlp.{proj}.weight", r, c)
        else:
            s.add(p + "mlp.gate.weight", "BF16", (a.experts, d), bf16(3.0 / np.sqrt(d)))
            s.add(p + "mlp.gate.e_score_correction_bias", "F32", (a.experts,), const_f32(0.0))
            for e in ["shared_experts"] + [f"experts.{e}" for e in range(a.experts)]:
                for proj, (r, c) in (("gate_proj", (ff, d)), ("up_proj", (ff, d)), ("down_proj", (d, ff))):
                    linear(s, p + f"mlp.{e}.{proj}.weight", r, c)
        shards.append(s)
    started = time.time()
    weight_map, total = {}, 0
    for i, s in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += s.write(os.path.join(model, fname))
        for e in s.entries:
            weight_map[e[0]] = fname
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(model, "model.safetensors.index.json"), "w"))
    write_seconds = time.time() - started
    corpus = os.path.join(a.dir, "task.jsonl")
    with open(corpus, "w") as f:
        for _ in range(a.tokens // 256):
            f.write(json.dumps({"input_ids": rng.integers(0, V, 256).tolist()}) + "\n")

    plan = json.loads(subprocess.run([a.smoe, "plan-resources", "--model", model, "--json", "--ranks", "2",
                                      "--tokens", str(a.tokens), "--context", "256", "--batch", "1"],
                                     check=True, capture_output=True, text=True).stdout)
    cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-n", "2", a.smoe, "collect", "--model", model,
           "--task", f"t={corpus}", "--out", os.path.join(a.dir, "stats.h5"), "--schedule", "layerwise",
           "--dtype", "bf16", "--threads", "1", "--context", "256"]
    started = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env())
    seconds = time.time() - started
    if p.returncode != 0:
        sys.exit(f"collect failed ({p.returncode}):\n{p.stderr[-3000:]}")
    m = re.search(r"peak resident memory per rank: (.*) \(checkpoint (\d+) MB\)", p.stderr)
    peaks = [int(x) for x in re.findall(r"r\d+ (\d+) MB", m.group(1))]
    ck_mb = int(m.group(2))
    out = {"layers": L, "moe_layers": a.moe_layers, "experts": a.experts, "checkpoint_mb": ck_mb,
           "write_seconds": round(write_seconds, 1), "tokens": a.tokens, "collect_seconds": round(seconds, 1),
           "peak_rss_mb": peaks, "peak_rss_share": [round(x / ck_mb, 4) for x in peaks],
           "planned_per_rank_mb": round(plan["plans"][1]["per_rank"] / 2**20)}
    print(json.dumps(out))
    if not a.keep:
        shutil.rmtree(model)


if __name__ == "__main__":
    main()
