"""Plain-PyTorch references of the Hugging Face semantics of the SMoE families smoe
runs, and a hand-written safetensors reader/writer, for the cross-checks in this
folder. Written from the HF modeling files' behaviour (transformers' Mixtral,
OLMoE, Qwen2-MoE and Qwen3-MoE), not from smoe's code.

Run with Debian's /usr/bin/python3 (python3-torch)."""

import json
import math
import os
import struct

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- safetensors

_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64,
           "I32": torch.int32, "F64": torch.float64, "U8": torch.uint8}
_NAMES = {v: k for k, v in _DTYPES.items()}


# ---------------------------------------------------------------- BF16 matrix products

def _native_bf16_gemm():
    force = os.environ.get("SMOE_BF16_GEMM")
    if force:
        if force not in ("native", "f32"):
            raise SystemExit(f"SMOE_BF16_GEMM must be 'native' or 'f32', found '{force}'")
        return force == "native"
    with open("/proc/cpuinfo") as f:
        flags = set(f.read().split())
    return {"avx512bw", "avx512vl", "avx512dq"} <= flags


NATIVE_BF16_GEMM = _native_bf16_gemm()


def linear(x, w, b=None):
    """F.linear, with BF16 products as BF16 GEMM hardware computes them (exact
    products, float32 sums, rounded once). Where the CPU has no AVX-512, PyTorch
    1.13's BF16 fallback rounds to BF16 while it sums; smoe does not (docs/models.md)."""
    if x.dtype == torch.bfloat16 and not NATIVE_BF16_GEMM:
        return F.linear(x.float(), w.float(), None if b is None else b.float()).to(torch.bfloat16)
    return F.linear(x, w, b)


def matmul(a, b):
    if a.dtype == torch.bfloat16 and not NATIVE_BF16_GEMM:
        return torch.matmul(a.float(), b.float()).to(torch.bfloat16)
    return torch.matmul(a, b)


def save_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        raw = bytearray(data[8 + n + b:8 + n + end])
        dtype = _DTYPES[e["dtype"]]
        if dtype == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if raw else torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def save_checkpoint(folder, config, tensors, shards):
    """Writes config.json and the tensors in HF layout, over `shards` files with an index."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    names = list(tensors)
    if shards == 1:
        save_safetensors(os.path.join(folder, "model.safetensors"), tensors, {"format": "pt"})
        return
    per = math.ceil(len(names) / shards)
    weight_map, total = {}, 0
    for s in range(shards):
        part = names[s * per:(s + 1) * per]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_safetensors(os.path.join(folder, fname), {n: tensors[n] for n in part}, {"format": "pt"})
        for n in part:
            weight_map[n] = fname
            total += tensors[n].numel() * tensors[n].element_size()
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


# ---------------------------------------------------------------- configs

def tiny_config(family):
    base = {"vocab_size": 320, "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
            "max_position_embeddings": 4096}
    if family == "mixtral":
        base.update(model_type="mixtral", architectures=["MixtralForCausalLM"], num_local_experts=8,
                    num_experts_per_tok=2, intermediate_size=96, sliding_window=16, rope_theta=1e6)
    elif family == "olmoe":
        base.update(model_type="olmoe", architectures=["OlmoeForCausalLM"], num_experts=8, num_experts_per_tok=2,
                    intermediate_size=64, norm_topk_prob=False, clip_qkv=1.5, tie_word_embeddings=True)
    elif family == "qwen2_moe":
        base.update(model_type="qwen2_moe", architectures=["Qwen2MoeForCausalLM"], num_experts=6,
                    num_experts_per_tok=2, moe_intermediate_size=48, shared_expert_intermediate_size=80,
                    intermediate_size=128, decoder_sparse_step=1, mlp_only_layers=[1], norm_topk_prob=False,
                    rms_norm_eps=1e-6, use_sliding_window=False)
    elif family == "qwen3_moe":
        base.update(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], num_experts=8,
                    num_experts_per_tok=3, moe_intermediate_size=40, intermediate_size=128, head_dim=32,
                    decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True, rms_norm_eps=1e-6)
    else:
        raise ValueError(family)
    return base


def _moe_layer(cfg, layer):
    if cfg["model_type"] in ("qwen2_moe", "qwen3_moe"):
        step = cfg.get("decoder_sparse_step", 1)
        return layer not in cfg.get("mlp_only_layers", []) and (layer + 1) % step == 0
    return True


def _names(cfg):
    if cfg["model_type"] == "mixtral":
        return "block_sparse_moe", "w1", "w3", "w2"
    return "mlp", "gate_proj", "up_proj", "down_proj"


def _experts_key(cfg):
    return "num_local_experts" if cfg["model_type"] == "mixtral" else "num_experts"


def _head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def random_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)

    def lin(o, i, scale=1.0):
        return torch.randn(o, i, generator=g) * scale / math.sqrt(i)

    def norm(n):
        return 1.0 + 0.1 * torch.randn(n, generator=g)

    d, V, H, Hkv, D = cfg["hidden_size"], cfg["vocab_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], _head_dim(cfg)
    mt = cfg["model_type"]
    moe, gp, up, dp = _names(cfg)
    # A tied head reads the embedding: a smaller one keeps logits O(1..5), as in the untied families.
    embed_std = 0.15 if cfg.get("tie_word_embeddings") else 0.5
    w = {"model.embed_tokens.weight": embed_std * torch.randn(V, d, generator=g)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm(d)
        w[p + "post_attention_layernorm.weight"] = norm(d)
        w[p + "self_attn.q_proj.weight"] = lin(H * D, d)
        w[p + "self_attn.k_proj.weight"] = lin(Hkv * D, d)
        w[p + "self_attn.v_proj.weight"] = lin(Hkv * D, d)
        w[p + "self_attn.o_proj.weight"] = lin(d, H * D)
        if mt == "qwen2_moe":
            for x, n in (("q", H * D), ("k", Hkv * D), ("v", Hkv * D)):
                w[p + f"self_attn.{x}_proj.bias"] = 0.1 * torch.randn(n, generator=g)
        if mt == "olmoe":
            w[p + "self_attn.q_norm.weight"] = norm(H * D)
            w[p + "self_attn.k_norm.weight"] = norm(Hkv * D)
        if mt == "qwen3_moe":
            w[p + "self_attn.q_norm.weight"] = norm(D)
            w[p + "self_attn.k_norm.weight"] = norm(D)
        if not _moe_layer(cfg, l):
            ff = cfg["intermediate_size"]
            w[p + "mlp.gate_proj.weight"] = lin(ff, d)
            w[p + "mlp.up_proj.weight"] = lin(ff, d)
            w[p + "mlp.down_proj.weight"] = lin(d, ff)
            continue
        E = cfg[_experts_key(cfg)]
        ff = cfg.get("moe_intermediate_size", cfg["intermediate_size"])
        w[p + f"{moe}.gate.weight"] = lin(E, d, 3.0)
        for e in range(E):
            ep = p + f"{moe}.experts.{e}."
            w[ep + f"{gp}.weight"] = lin(ff, d)
            w[ep + f"{up}.weight"] = lin(ff, d)
            w[ep + f"{dp}.weight"] = lin(d, ff)
        if mt == "qwen2_moe":
            sff = cfg["shared_expert_intermediate_size"]
            w[p + "mlp.shared_expert.gate_proj.weight"] = lin(sff, d)
            w[p + "mlp.shared_expert.up_proj.weight"] = lin(sff, d)
            w[p + "mlp.shared_expert.down_proj.weight"] = lin(d, sff)
            w[p + "mlp.shared_expert_gate.weight"] = lin(1, d)
    w["model.norm.weight"] = norm(d)
    if not cfg.get("tie_word_embeddings", False):
        w["lm_head.weight"] = lin(V, d)
    return w


# ---------------------------------------------------------------- the forward pass

def rms_norm(x, weight, eps):
    dtype = x.dtype
    x = x.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope(seq, dim, base, dtype):
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    pos = torch.arange(seq, dtype=torch.int64).float()
    freqs = (inv_freq[:, None] @ pos[None, :]).transpose(0, 1)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def attention(cfg, w, p, x, cos, sin):
    B, S, _ = x.shape
    H, Hkv, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], _head_dim(cfg)
    mt = cfg["model_type"]

    def proj(n):
        b = w.get(p + f"self_attn.{n}_proj.bias")
        return linear(x, w[p + f"self_attn.{n}_proj.weight"], b)

    q, k, v = proj("q"), proj("k"), proj("v")
    if mt == "olmoe":
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], cfg["rms_norm_eps"])
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], cfg["rms_norm_eps"])
        if cfg.get("clip_qkv") is not None:
            c = cfg["clip_qkv"]
            q, k, v = q.clamp(-c, c), k.clamp(-c, c), v.clamp(-c, c)
    q = q.view(B, S, H, D)
    k = k.view(B, S, Hkv, D)
    v = v.view(B, S, Hkv, D)
    if mt == "qwen3_moe":
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], cfg["rms_norm_eps"])
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], cfg["rms_norm_eps"])
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    rep = H // Hkv
    k = k[:, :, None].expand(B, Hkv, rep, S, D).reshape(B, H, S, D)
    v = v[:, :, None].expand(B, Hkv, rep, S, D).reshape(B, H, S, D)
    scores = matmul(q, k.transpose(2, 3)) * D ** -0.5
    i = torch.arange(S)[:, None]
    j = torch.arange(S)[None, :]
    allowed = j <= i
    if cfg.get("sliding_window"):
        allowed &= (i - j) < cfg["sliding_window"]
    mask = torch.zeros(S, S, dtype=scores.dtype).masked_fill(~allowed, torch.finfo(scores.dtype).min)
    probs = F.softmax(scores + mask, dim=-1, dtype=torch.float32).to(q.dtype)
    out = matmul(probs, v).transpose(1, 2).reshape(B, S, H * D)
    return linear(out, w[p + "self_attn.o_proj.weight"])


def mlp(w, prefix, names, x):
    _, gp, up, dp = names
    return linear(F.silu(linear(x, w[prefix + gp + ".weight"])) * linear(x, w[prefix + up + ".weight"]),
                    w[prefix + dp + ".weight"])


def sparse_moe(cfg, w, p, x, routing_out, trace=None):
    """The HF sparse MoE block: softmax in float32, top-k, optional renormalisation,
    a loop over experts with index_add_; returns [T, d]. With `trace` (a dict), also
    records the router logits, combine weights, each routed slot's expert output
    norm, and every expert's output summed over all tokens."""
    names = _names(cfg)
    moe = names[0]
    T, d = x.shape
    E, k = cfg[_experts_key(cfg)], cfg["num_experts_per_tok"]
    logits = linear(x, w[p + f"{moe}.gate.weight"])
    weights = F.softmax(logits, dim=1, dtype=torch.float)
    weights, chosen = torch.topk(weights, k, dim=-1)
    if cfg["model_type"] == "mixtral" or cfg.get("norm_topk_prob", False):
        weights /= weights.sum(dim=-1, keepdim=True)
    weights = weights.to(x.dtype)
    routing_out.append(chosen)
    out = torch.zeros((T, d), dtype=x.dtype)
    mask = F.one_hot(chosen, num_classes=E).permute(2, 1, 0)
    if trace is not None:
        trace["logits"] = logits.float()
        trace["weights"] = weights
        trace["norms"] = torch.zeros(T, k, dtype=torch.float64)
        trace["out_sum"] = torch.stack([mlp(w, p + f"{moe}.experts.{e}.", names, x).double().sum(0)
                                        for e in range(E)])
    for e in range(E):
        idx, top_x = torch.where(mask[e])
        if top_x.numel() == 0:
            continue
        f = mlp(w, p + f"{moe}.experts.{e}.", names, x[top_x])
        if trace is not None:
            trace["norms"][top_x, idx] = f.double().norm(dim=1)
        y = f * weights[top_x, idx, None]
        out.index_add_(0, top_x, y.to(x.dtype))
    if cfg["model_type"] == "qwen2_moe":
        s = mlp(w, p + "mlp.shared_expert.", ("", "gate_proj", "up_proj", "down_proj"), x)
        s = torch.sigmoid(linear(x, w[p + "mlp.shared_expert_gate.weight"])) * s
        out = out + s
    return out


def forward(cfg, w, tokens, dtype, traces=None):
    """tokens: [B, S] -> (logits [B, S, V] float32, {layer: chosen experts [B*S, k]}).
    With `traces` (a dict), traces[layer] gets sparse_moe's trace and the layer input."""
    w = {n: t.to(dtype) for n, t in w.items()}
    B, S = tokens.shape
    d = cfg["hidden_size"]
    cos, sin = rope(S, _head_dim(cfg), cfg["rope_theta"], dtype)
    h = F.embedding(tokens, w["model.embed_tokens.weight"])
    routing = {}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = h + attention(cfg, w, p, rms_norm(h, w[p + "input_layernorm.weight"], cfg["rms_norm_eps"]), cos, sin)
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], cfg["rms_norm_eps"])
        if not _moe_layer(cfg, l):
            h = h + mlp(w, p + "mlp.", ("", "gate_proj", "up_proj", "down_proj"), x)
            continue
        chosen = []
        trace = None if traces is None else {"input": x.reshape(B * S, d)}
        h = h + sparse_moe(cfg, w, p, x.reshape(B * S, d), chosen, trace).view(B, S, d)
        if traces is not None:
            traces[l] = trace
        routing[l] = chosen[0]
    h = rms_norm(h, w["model.norm.weight"], cfg["rms_norm_eps"])
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return linear(h, head).float(), routing
