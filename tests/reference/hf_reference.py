"""Plain-PyTorch references of the Hugging Face semantics of the SMoE families smoe
runs, and a hand-written safetensors reader/writer, for the cross-checks in this
folder. Written from the HF modeling files' behaviour (transformers' Mixtral,
OLMoE, Qwen2-MoE, Qwen3-MoE, DeepSeek-V2/V3, whose layout Kimi-K2 uses) and
DeepSeek's FP8 checkpoint format, not from smoe's code (docs/research/deepseek-v3.md
gathers the DeepSeek facts).

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


# ---------------------------------------------------------------- FP8 E4M3FN

class Fp8:
    """FP8 E4M3FN codes (a uint8 tensor) to be written with dtype F8_E4M3."""

    def __init__(self, codes):
        self.codes = codes


def _e4m3_value(b):
    # Bits S EEEE MMM, exponent bias 7, no infinities, NaN only for S.1111.111;
    # a normal value is put together as IEEE single-precision bits.
    s, e, m = b >> 7, (b >> 3) & 15, b & 7
    if e == 15 and m == 7:
        v = float("nan")
    elif e == 0:
        v = m * 2.0 ** -9
    else:
        v = struct.unpack("<f", struct.pack("<I", ((e - 7 + 127) << 23) | (m << 20)))[0]
    return -v if s else v


FP8_VALUES = torch.tensor([_e4m3_value(b) for b in range(256)], dtype=torch.float32)


def _block_scales(scale, shape, block):
    rows, cols = shape
    return scale.repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)[:rows, :cols]


def quantize_fp8(w, block):
    """w [rows, cols] -> (Fp8 codes, float32 scales [ceil(rows/br), ceil(cols/bc)]):
    each block's scale is its largest |w| / 448; codes are the nearest E4M3FN value
    of w / scale, ties to the even code."""
    rows, cols = w.shape
    br, bc = block
    sr, sc = -(-rows // br), -(-cols // bc)
    padded = torch.zeros(sr * br, sc * bc)
    padded[:rows, :cols] = w.abs()
    amax = padded.view(sr, br, sc, bc).amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / 448.0, torch.ones_like(amax))
    x = w.float() / _block_scales(scale, w.shape, block)
    a = x.abs().clamp(max=448.0)
    positive = FP8_VALUES[:127]  # codes 0x00..0x7E, increasing
    hi = torch.searchsorted(positive, a).clamp(max=126)
    lo = (hi - 1).clamp(min=0)
    d_lo, d_hi = a - positive[lo], positive[hi] - a
    code = torch.where((d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0)), hi, lo)
    code = torch.where(positive[hi] == a, hi, code)
    code = code + 128 * (torch.signbit(x)).long()
    return Fp8(code.to(torch.uint8)), scale


def dequantize_fp8(codes, scale, block):
    return FP8_VALUES[codes.long()] * _block_scales(scale, codes.shape, block)


def stored_checkpoint(cfg, weights):
    """(what a family's checkpoint stores, the float32 weights that decodes to): FP8 where the
    config has an FP8 quantization_config, else BF16 with the selection biases in F32, as published
    (gpt-oss's MXFP4 blocks and scales stay as they are)."""
    if cfg.get("quantization_config", {}).get("quant_method") == "fp8":
        return fp8_checkpoint(cfg, weights)
    stored = {n: t if n.endswith("e_score_correction_bias") or not t.is_floating_point() else t.to(torch.bfloat16)
              for n, t in weights.items()}
    return stored, {n: t.float() if t.is_floating_point() else t for n, t in stored.items()}


def dequantize_checkpoint(tensors, block):
    """Every FP8 tensor (uint8 here, with a `<name>_scale_inv` partner) as float32;
    the scale tensors dropped."""
    out = {}
    for n, t in tensors.items():
        if n.endswith("_scale_inv"):
            continue
        scale = tensors.get(n + "_scale_inv")
        out[n] = dequantize_fp8(t, scale, block) if scale is not None else t
    return out


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
        dtype = "F8_E4M3" if isinstance(t, Fp8) else None
        t = (t.codes if dtype else t).detach().contiguous().cpu()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": dtype or _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
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
        dtype = torch.uint8 if e["dtype"] == "F8_E4M3" else _DTYPES[e["dtype"]]  # FP8: its codes
        if dtype == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if raw else torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def byte_level_tokenizer():
    """A tokenizer.json whose ids are the text's UTF-8 bytes (id = byte value): the
    ByteLevel pre-tokenizer without its regex, and BPE without merges over the 256
    byte characters of GPT-2's table."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    char, extra = {}, 0
    for b in range(256):
        if b in printable:
            char[b] = chr(b)
        else:
            char[b] = chr(256 + extra)
            extra += 1
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": byte_level, "post_processor": byte_level, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "vocab": {char[b]: b for b in range(256)}, "merges": []}}


def save_checkpoint(folder, config, tensors, shards):
    """Writes config.json, a byte-level tokenizer.json and the tensors in HF
    layout, over `shards` files with an index."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(byte_level_tokenizer(), f, ensure_ascii=False)
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
            t = tensors[n].codes if isinstance(tensors[n], Fp8) else tensors[n]
            total += t.numel() * t.element_size()
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
    elif family in ("deepseek_v3", "kimi_k2", "deepseek_v2"):
        base.update(num_key_value_heads=4, rms_norm_eps=1e-6, kv_lora_rank=16, qk_nope_head_dim=8,
                    qk_rope_head_dim=8, v_head_dim=12, moe_intermediate_size=24, intermediate_size=96,
                    first_k_dense_replace=1, moe_layer_freq=1, hidden_act="silu", attention_bias=False)
        if family == "deepseek_v3":
            # Group-limited (4 groups of 2, the best 2 kept), FP8 in 16 x 16 blocks, one MTP layer stored.
            base.update(model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"], q_lora_rank=24,
                        n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=3, n_group=4, topk_group=2,
                        topk_method="noaux_tc", scoring_func="sigmoid", routed_scaling_factor=2.5,
                        norm_topk_prob=True, num_nextn_predict_layers=1,
                        rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32,
                                      "beta_fast": 32, "beta_slow": 1, "mscale": 0.9, "mscale_all_dim": 1.0},
                        quantization_config={"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                             "weight_block_size": [16, 16]})
        elif family == "kimi_k2":
            # One group, FP8 in 128 x 128 blocks (one ragged block per tensor here), YaRN with beta 1/1.
            base.update(model_type="kimi_k2", architectures=["DeepseekV3ForCausalLM"], q_lora_rank=24,
                        n_routed_experts=12, n_shared_experts=1, num_experts_per_tok=4, n_group=1, topk_group=1,
                        topk_method="noaux_tc", scoring_func="sigmoid", routed_scaling_factor=2.827,
                        norm_topk_prob=True, num_nextn_predict_layers=0, rope_theta=50000.0,
                        rope_scaling={"type": "yarn", "factor": 32.0, "original_max_position_embeddings": 64,
                                      "beta_fast": 1.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
                        quantization_config={"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                             "weight_block_size": [128, 128]})
        else:
            # V2-Lite's choices: no q compression, softmax, two shared experts; group-limited here.
            base.update(model_type="deepseek_v2", architectures=["DeepseekV2ForCausalLM"], q_lora_rank=None,
                        n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2, n_group=2, topk_group=1,
                        topk_method="group_limited_greedy", scoring_func="softmax", routed_scaling_factor=1.5,
                        norm_topk_prob=False,
                        rope_scaling={"type": "yarn", "factor": 40, "original_max_position_embeddings": 32,
                                      "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707})
    elif family == "glm4_moe":
        # GLM-4.5's layout: head_dim apart from hidden/heads, half of each head rotated, q/k/v biases,
        # per-head q/k norm, a dense first layer, a shared expert, DeepSeek-V3's router (two groups here),
        # one MTP layer stored; BF16 as published.
        base.update(model_type="glm4_moe", architectures=["Glm4MoeForCausalLM"], head_dim=24,
                    partial_rotary_factor=0.5, attention_bias=True, use_qk_norm=True, n_routed_experts=8,
                    n_shared_experts=1, num_experts_per_tok=3, n_group=2, topk_group=1, routed_scaling_factor=2.5,
                    norm_topk_prob=True, moe_intermediate_size=24, intermediate_size=96, first_k_dense_replace=1,
                    num_nextn_predict_layers=1, rope_theta=1e6, rms_norm_eps=1e-5, hidden_act="silu")
    elif family == "minimax_m2":
        # MiniMax-M2's layout: every layer MoE, block_sparse_moe with w1/w3/w2, a sigmoid router with a
        # selection bias on the block, q/k norm over the whole projection, rotary_dim < head_dim,
        # FP8 E4M3 in 32 x 32 blocks with the router kept in F32.
        base.update(model_type="minimax_m2", architectures=["MiniMaxM2ForCausalLM"], num_hidden_layers=2,
                    head_dim=32, rotary_dim=16, num_local_experts=8, num_experts_per_tok=2, intermediate_size=40,
                    shared_intermediate_size=0, use_qk_norm=True, qk_norm_type="per_layer", scoring_func="sigmoid",
                    use_routing_bias=True, rope_theta=5e6, rms_norm_eps=1e-6, use_mtp=True, num_mtp_modules=3,
                    quantization_config={"quant_method": "fp8", "fmt": "float8_e4m3fn",
                                         "activation_scheme": "dynamic", "weight_block_size": [32, 32],
                                         "modules_to_not_convert": ["gate", "e_score_correction_bias", "lm_head"]})
    elif family == "ernie4_5_moe":
        # ERNIE-4.5's layout: a dense first layer, softmax router with the selection bias in
        # moe_statics ([1, E], F32), two shared experts, tied embeddings (an lm_head.weight stored
        # anyway, which transformers ignores), interleaved RoPE in float32.
        base.update(model_type="ernie4_5_moe", architectures=["Ernie4_5_MoeForCausalLM"], moe_num_experts=8,
                    moe_k=3, moe_intermediate_size=32, moe_num_shared_experts=2, intermediate_size=96,
                    moe_layer_start_index=1, moe_layer_end_index=-1, moe_layer_interval=1, moe_norm_min=1e-12,
                    tie_word_embeddings=True, use_bias=False, rope_theta=500000.0, rms_norm_eps=1e-5,
                    hidden_act="silu")
    elif family == "gpt_oss":
        # gpt-oss's layout: experts stacked in MXFP4 with BF16 biases, a router with a bias, attention
        # with biases on q/k/v/o and a sink per head, sliding (window 8 here) and full layers
        # alternating, YaRN with truncate false, head_dim apart from hidden/heads.
        base.update(model_type="gpt_oss", architectures=["GptOssForCausalLM"], num_hidden_layers=4, head_dim=32,
                    num_local_experts=8, num_experts_per_tok=2, experts_per_token=2, intermediate_size=64,
                    sliding_window=8, layer_types=["sliding_attention", "full_attention"] * 2, attention_bias=True,
                    swiglu_limit=7.0, rope_theta=150000.0, rms_norm_eps=1e-5, hidden_act="silu",
                    rope_scaling={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                                  "original_max_position_embeddings": 4096, "truncate": False},
                    quantization_config={"quant_method": "mxfp4", "modules_to_not_convert": [
                        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]})
    else:
        raise ValueError(family)
    return base


def is_deepseek(cfg):
    return cfg["model_type"] in ("deepseek_v2", "deepseek_v3", "kimi_k2")


def _moe_layer(cfg, layer):
    if cfg["model_type"] == "ernie4_5_moe":
        end = cfg.get("moe_layer_end_index", -1)
        end = cfg["num_hidden_layers"] - 1 if end == -1 else end
        return (layer + 1) % cfg.get("moe_layer_interval", 1) == 0 and cfg.get("moe_layer_start_index", 0) <= layer <= end
    if cfg["model_type"] == "glm4_moe":
        return layer >= cfg.get("first_k_dense_replace", 1)
    if is_deepseek(cfg):
        return layer >= cfg.get("first_k_dense_replace", 0) and layer % cfg.get("moe_layer_freq", 1) == 0
    if cfg["model_type"] in ("qwen2_moe", "qwen3_moe"):
        step = cfg.get("decoder_sparse_step", 1)
        return layer not in cfg.get("mlp_only_layers", []) and (layer + 1) % step == 0
    return True


def _names(cfg):
    if cfg["model_type"] in ("mixtral", "minimax_m2"):
        return "block_sparse_moe", "w1", "w3", "w2"
    return "mlp", "gate_proj", "up_proj", "down_proj"


def _experts_key(cfg):
    if cfg["model_type"] == "gpt_oss":
        return "num_local_experts"
    if cfg["model_type"] == "ernie4_5_moe":
        return "moe_num_experts"
    if is_deepseek(cfg) or cfg["model_type"] == "glm4_moe":
        return "n_routed_experts"
    return "num_local_experts" if cfg["model_type"] in ("mixtral", "minimax_m2") else "num_experts"


def _head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def _rotary_dim(cfg):
    """The rotated part of each head: GLM's head_dim * partial_rotary_factor (0.5 when absent),
    MiniMax-M2's rotary_dim, the whole head elsewhere."""
    D = _head_dim(cfg)
    if cfg["model_type"] == "glm4_moe":
        return int(D * cfg.get("partial_rotary_factor", 0.5))
    if cfg["model_type"] == "minimax_m2":
        return cfg.get("rotary_dim", D)
    return D


def _qk_norm(cfg):
    """'projection' (RMSNorm over the whole q and k projections), 'head' (over each head) or None."""
    mt = cfg["model_type"]
    if mt == "olmoe" or (mt == "minimax_m2" and cfg.get("use_qk_norm", True)):
        return "projection"
    if mt == "qwen3_moe" or (mt == "glm4_moe" and cfg.get("use_qk_norm")):
        return "head"
    return None


def _router_bias(cfg, prefix):
    """The name of a layer's selection-only bias, or None where the family has none."""
    mt = cfg["model_type"]
    if mt == "minimax_m2":
        return prefix + "block_sparse_moe.e_score_correction_bias" if cfg.get("use_routing_bias", True) else None
    if mt == "ernie4_5_moe":
        return prefix + "mlp.moe_statics.e_score_correction_bias"
    if mt == "glm4_moe" or cfg.get("topk_method") == "noaux_tc":
        return prefix + "mlp.gate.e_score_correction_bias"
    return None


def _sampler(seed):
    """(generator, lin, norm) of a seed: lin(o, i, scale) a [o, i] weight of std scale / sqrt(i),
    norm(n) a norm weight near one; every checkpoint's draws come from the one generator."""
    g = torch.Generator().manual_seed(seed)

    def lin(o, i, scale=1.0):
        return torch.randn(o, i, generator=g) * scale / math.sqrt(i)

    def norm(n):
        return 1.0 + 0.1 * torch.randn(n, generator=g)

    return g, lin, norm


def random_weights(cfg, seed):
    if is_deepseek(cfg):
        return deepseek_random_weights(cfg, seed)
    if cfg["model_type"] == "gpt_oss":
        return gpt_oss_random_weights(cfg, seed)
    g, lin, norm = _sampler(seed)

    d, V, H, Hkv, D = cfg["hidden_size"], cfg["vocab_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], _head_dim(cfg)
    mt = cfg["model_type"]
    moe, gp, up, dp = _names(cfg)
    # A tied head reads the embedding: a smaller one keeps logits O(1..5), as in the untied families.
    embed_std = 0.15 if cfg.get("tie_word_embeddings") else 0.5
    w = {"model.embed_tokens.weight": embed_std * torch.randn(V, d, generator=g)}
    mtp = cfg.get("num_nextn_predict_layers", 0) if mt == "glm4_moe" else 0
    for l in range(cfg["num_hidden_layers"] + mtp):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm(d)
        w[p + "post_attention_layernorm.weight"] = norm(d)
        w[p + "self_attn.q_proj.weight"] = lin(H * D, d)
        w[p + "self_attn.k_proj.weight"] = lin(Hkv * D, d)
        w[p + "self_attn.v_proj.weight"] = lin(Hkv * D, d)
        w[p + "self_attn.o_proj.weight"] = lin(d, H * D)
        if mt == "qwen2_moe" or cfg.get("attention_bias"):
            for x, n in (("q", H * D), ("k", Hkv * D), ("v", Hkv * D)):
                w[p + f"self_attn.{x}_proj.bias"] = 0.1 * torch.randn(n, generator=g)
        if _qk_norm(cfg) == "projection":
            w[p + "self_attn.q_norm.weight"] = norm(H * D)
            w[p + "self_attn.k_norm.weight"] = norm(Hkv * D)
        if _qk_norm(cfg) == "head":
            w[p + "self_attn.q_norm.weight"] = norm(D)
            w[p + "self_attn.k_norm.weight"] = norm(D)
        if l >= cfg["num_hidden_layers"]:
            # GLM's multi-token-prediction module: its own projections, never run for scoring.
            w[p + "enorm.weight"] = norm(d)
            w[p + "hnorm.weight"] = norm(d)
            w[p + "eh_proj.weight"] = lin(d, 2 * d)
            w[p + "embed_tokens.weight"] = 0.5 * torch.randn(V, d, generator=g)
            w[p + "shared_head.norm.weight"] = norm(d)
            w[p + "shared_head.head.weight"] = lin(V, d)
        if not _moe_layer(cfg, l):
            ff = cfg["intermediate_size"]
            w[p + "mlp.gate_proj.weight"] = lin(ff, d)
            w[p + "mlp.up_proj.weight"] = lin(ff, d)
            w[p + "mlp.down_proj.weight"] = lin(d, ff)
            continue
        E = cfg[_experts_key(cfg)]
        ff = cfg.get("moe_intermediate_size", cfg["intermediate_size"])
        w[p + f"{moe}.gate.weight"] = lin(E, d, 3.0)
        bias = _router_bias(cfg, p)
        if bias:
            # Some negative, so that selection by score + bias differs from selection by score.
            w[bias] = 0.3 * torch.randn(E, generator=g)
            if mt == "ernie4_5_moe":
                w[bias] = 0.1 * w[bias].view(1, E)  # [1, E]; softmax probabilities are smaller than sigmoids
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
        shared = cfg.get("n_shared_experts", 0) if mt == "glm4_moe" else cfg.get("moe_num_shared_experts", 0)
        if mt in ("glm4_moe", "ernie4_5_moe") and shared:
            sff = shared * ff
            w[p + "mlp.shared_experts.gate_proj.weight"] = lin(sff, d)
            w[p + "mlp.shared_experts.up_proj.weight"] = lin(sff, d)
            w[p + "mlp.shared_experts.down_proj.weight"] = lin(d, sff)
    w["model.norm.weight"] = norm(d)
    if not cfg.get("tie_word_embeddings", False) or mt == "ernie4_5_moe":
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
    if _qk_norm(cfg) == "projection":
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], cfg["rms_norm_eps"])
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], cfg["rms_norm_eps"])
    if mt == "olmoe" and cfg.get("clip_qkv") is not None:
        c = cfg["clip_qkv"]
        q, k, v = q.clamp(-c, c), k.clamp(-c, c), v.clamp(-c, c)
    q = q.view(B, S, H, D)
    k = k.view(B, S, Hkv, D)
    v = v.view(B, S, Hkv, D)
    if _qk_norm(cfg) == "head":
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], cfg["rms_norm_eps"])
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], cfg["rms_norm_eps"])
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if mt == "ernie4_5_moe":
        # Pairs (2i, 2i+1) rotate together, in float32 with float32 tables, cast back.
        q, k = _rope_pairs_f32(q, cfg, S), _rope_pairs_f32(k, cfg, S)
    else:
        # The first r elements of each head rotate (NeoX halves within them), the rest pass.
        r = cos.shape[-1]
        q = torch.cat((q[..., :r] * cos + rotate_half(q[..., :r]) * sin, q[..., r:]), dim=-1)
        k = torch.cat((k[..., :r] * cos + rotate_half(k[..., :r]) * sin, k[..., r:]), dim=-1)
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


def _routed_experts(w, prefix, names, x, mask, weights, out, trace):
    """The HF loop over experts: each runs on its tokens, its output times the
    combine weight is added into `out` (in out's dtype); with `trace`, each routed
    slot's output norm. mask: one-hot choices [E, k, T]."""
    for e in range(mask.shape[0]):
        idx, top_x = torch.where(mask[e])
        if top_x.numel() == 0:
            continue
        f = mlp(w, prefix + f"{e}.", names, x[top_x])
        if trace is not None:
            trace["norms"][top_x, idx] = f.double().norm(dim=1)
        out.index_add_(0, top_x, (f * weights[top_x, idx, None]).to(out.dtype))


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
    _routed_experts(w, p + f"{moe}.experts.", names, x, mask, weights, out, trace)
    if cfg["model_type"] == "qwen2_moe":
        s = mlp(w, p + "mlp.shared_expert.", ("", "gate_proj", "up_proj", "down_proj"), x)
        s = torch.sigmoid(linear(x, w[p + "mlp.shared_expert_gate.weight"])) * s
        out = out + s
    return out


def forward(cfg, w, tokens, dtype, traces=None):
    """tokens: [B, S] -> (logits [B, S, V] float32, {layer: chosen experts [B*S, k]}).
    With `traces` (a dict), traces[layer] gets the MoE block's trace and the layer input.
    The DeepSeek layout runs MLA and its own MoE block; its MTP layers (after
    num_hidden_layers) are not run, and its selection bias stays float32 (HF keeps
    e_score_correction_bias in float32)."""
    deepseek = is_deepseek(cfg)
    if cfg["model_type"] == "gpt_oss":
        return gpt_oss_forward(cfg, w, tokens, dtype, traces)
    w = {n: t if n.endswith("e_score_correction_bias") else t.to(dtype) for n, t in w.items()}
    B, S = tokens.shape
    d, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
    cos, sin = deepseek_rope(cfg, S, dtype) if deepseek else rope(S, _rotary_dim(cfg), cfg["rope_theta"], dtype)
    attend = mla_attention if deepseek else attention
    moe_block = {"glm4_moe": deepseek_moe, "minimax_m2": minimax_moe, "ernie4_5_moe": ernie_moe}.get(
        cfg["model_type"], deepseek_moe if deepseek else sparse_moe)
    h = F.embedding(tokens, w["model.embed_tokens.weight"])
    routing = {}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = h + attend(cfg, w, p, rms_norm(h, w[p + "input_layernorm.weight"], eps), cos, sin)
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        if not _moe_layer(cfg, l):
            h = h + mlp(w, p + "mlp.", ("", "gate_proj", "up_proj", "down_proj"), x)
            continue
        chosen = []
        trace = None if traces is None else {"input": x.reshape(B * S, d)}
        h = h + moe_block(cfg, w, p, x.reshape(B * S, d), chosen, trace).view(B, S, d)
        if traces is not None:
            traces[l] = trace
        routing[l] = chosen[0]
    h = rms_norm(h, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return linear(h, head).float(), routing


# ---------------------------------------------------------------- DeepSeek-V2/V3, Kimi-K2

def deepseek_random_weights(cfg, seed):
    """Float32 weights of a DeepSeek-layout model, the HF tensor names; with
    quantization_config, use fp8_checkpoint() to turn them into what is stored."""
    g, lin, norm = _sampler(seed)

    d, V, H = cfg["hidden_size"], cfg["vocab_size"], cfg["num_attention_heads"]
    dn, dr, dv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    rq, rkv = cfg.get("q_lora_rank"), cfg["kv_lora_rank"]
    E, ff, sff = cfg["n_routed_experts"], cfg["moe_intermediate_size"], cfg["moe_intermediate_size"] * cfg["n_shared_experts"]
    w = {"model.embed_tokens.weight": 0.5 * torch.randn(V, d, generator=g)}
    for l in range(cfg["num_hidden_layers"] + cfg.get("num_nextn_predict_layers", 0)):
        p = f"model.layers.{l}."
        a = p + "self_attn."
        w[p + "input_layernorm.weight"] = norm(d)
        w[p + "post_attention_layernorm.weight"] = norm(d)
        if rq:
            w[a + "q_a_proj.weight"] = lin(rq, d)
            w[a + "q_a_layernorm.weight"] = norm(rq)
            w[a + "q_b_proj.weight"] = lin(H * (dn + dr), rq)
        else:
            w[a + "q_proj.weight"] = lin(H * (dn + dr), d)
        w[a + "kv_a_proj_with_mqa.weight"] = lin(rkv + dr, d)
        w[a + "kv_a_layernorm.weight"] = norm(rkv)
        w[a + "kv_b_proj.weight"] = lin(H * (dn + dv), rkv)
        w[a + "o_proj.weight"] = lin(d, H * dv)
        if l >= cfg["num_hidden_layers"]:
            # A multi-token-prediction module: its own projections, never run for scoring.
            w[p + "enorm.weight"] = norm(d)
            w[p + "hnorm.weight"] = norm(d)
            w[p + "eh_proj.weight"] = lin(d, 2 * d)
            w[p + "embed_tokens.weight"] = 0.5 * torch.randn(V, d, generator=g)
            w[p + "shared_head.norm.weight"] = norm(d)
            w[p + "shared_head.head.weight"] = lin(V, d)
        if not _moe_layer(cfg, l):
            w[p + "mlp.gate_proj.weight"] = lin(cfg["intermediate_size"], d)
            w[p + "mlp.up_proj.weight"] = lin(cfg["intermediate_size"], d)
            w[p + "mlp.down_proj.weight"] = lin(d, cfg["intermediate_size"])
            continue
        w[p + "mlp.gate.weight"] = lin(E, d, 3.0)
        if cfg.get("topk_method") == "noaux_tc":
            # Some negative, so that masking rejected groups with -inf rather than 0 matters.
            w[p + "mlp.gate.e_score_correction_bias"] = 0.3 * torch.randn(E, generator=g)
        for e in range(E):
            ep = p + f"mlp.experts.{e}."
            w[ep + "gate_proj.weight"] = lin(ff, d)
            w[ep + "up_proj.weight"] = lin(ff, d)
            w[ep + "down_proj.weight"] = lin(d, ff)
        if sff:
            w[p + "mlp.shared_experts.gate_proj.weight"] = lin(sff, d)
            w[p + "mlp.shared_experts.up_proj.weight"] = lin(sff, d)
            w[p + "mlp.shared_experts.down_proj.weight"] = lin(d, sff)
    w["model.norm.weight"] = norm(d)
    w["lm_head.weight"] = lin(V, d)
    return w


_FP8_PROJECTIONS = ("q_a_proj", "q_b_proj", "q_proj", "k_proj", "v_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
                    "gate_proj", "up_proj", "down_proj", "w1", "w2", "w3")


def fp8_checkpoint(cfg, weights):
    """What a DeepSeek (or MiniMax-M2) FP8 checkpoint stores: every attention, dense-MLP and expert
    projection as E4M3FN codes with `<name>_scale_inv` block scales; the router (MiniMax-M2: F32),
    embeddings, heads and the MTP layer's eh_proj in BF16; norms and the selection
    bias in F32. Returns (tensors to
    save, the float32 weights they decode to)."""
    block = cfg["quantization_config"]["weight_block_size"]
    stored, decoded = {}, {}
    for n, t in weights.items():
        if n.endswith(".weight") and n.split(".")[-2] in _FP8_PROJECTIONS:
            codes, scale = quantize_fp8(t, block)
            stored[n], stored[n + "_scale_inv"] = codes, scale
            decoded[n] = dequantize_fp8(codes.codes, scale, block)
        elif n.endswith("gate.weight") and cfg["model_type"] == "minimax_m2":
            stored[n] = decoded[n] = t.float()  # MiniMax-M2 keeps its router in F32
        elif n.endswith(("gate.weight", "eh_proj.weight", "head.weight")) or "embed_tokens" in n:
            stored[n] = t.to(torch.bfloat16)
            decoded[n] = stored[n].float()
        else:
            stored[n] = decoded[n] = t.float()
    return stored, decoded


def _yarn_mscale(scale, m):
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0


def deepseek_rope(cfg, seq, dtype):
    """cos, sin [seq, dr] from YaRN's blended inverse frequencies, times the
    attention factor mscale(mscale) / mscale(mscale_all_dim)."""
    dim, base = cfg["qk_rope_head_dim"], cfg["rope_theta"]
    rs = cfg.get("rope_scaling")
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)
    inv_freq, factor = 1.0 / pos_freqs, 1.0
    if rs:
        f = rs["factor"]

        def corr_dim(rotations):
            return dim * math.log(rs["original_max_position_embeddings"] / (rotations * 2 * math.pi)) / (2 * math.log(base))

        low = max(math.floor(corr_dim(rs.get("beta_fast", 32))), 0)
        high = min(math.ceil(corr_dim(rs.get("beta_slow", 1))), dim - 1)
        if low == high:
            high += 0.001
        extrapolation = 1 - ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        inv_freq = (1.0 / (f * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
        if rs.get("mscale") and rs.get("mscale_all_dim"):
            factor = _yarn_mscale(f, rs["mscale"]) / _yarn_mscale(f, rs["mscale_all_dim"])
        else:
            factor = _yarn_mscale(f, 1.0)
    pos = torch.arange(seq, dtype=torch.int64).float()
    freqs = (inv_freq[:, None] @ pos[None, :]).transpose(0, 1)
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * factor).to(dtype), (emb.sin() * factor).to(dtype)


def _rope_interleaved(x, cos, sin):
    # HF's layout: pairs (2i, 2i+1) de-interleaved to [evens | odds], then rotate-half.
    b, h, s, d = x.shape
    x = x.view(b, h, s, d // 2, 2).transpose(4, 3).reshape(b, h, s, d)
    return x * cos + rotate_half(x) * sin


def mla_attention(cfg, w, p, x, cos, sin):
    B, S, _ = x.shape
    H = cfg["num_attention_heads"]
    dn, dr, dv, rkv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    a = p + "self_attn."
    if cfg.get("q_lora_rank"):
        q = linear(rms_norm(linear(x, w[a + "q_a_proj.weight"]), w[a + "q_a_layernorm.weight"], 1e-6),
                   w[a + "q_b_proj.weight"])
    else:
        q = linear(x, w[a + "q_proj.weight"])
    q = q.view(B, S, H, dn + dr).transpose(1, 2)
    q_nope, q_pe = torch.split(q, [dn, dr], dim=-1)
    compressed, k_pe = torch.split(linear(x, w[a + "kv_a_proj_with_mqa.weight"]), [rkv, dr], dim=-1)
    k_pe = k_pe.view(B, S, 1, dr).transpose(1, 2)
    kv = linear(rms_norm(compressed, w[a + "kv_a_layernorm.weight"], 1e-6), w[a + "kv_b_proj.weight"])
    kv = kv.view(B, S, H, dn + dv).transpose(1, 2)
    k_nope, v = torch.split(kv, [dn, dv], dim=-1)
    q_pe, k_pe = _rope_interleaved(q_pe, cos, sin), _rope_interleaved(k_pe, cos, sin)
    query = torch.cat((q_nope, q_pe), dim=-1)
    key = torch.cat((k_nope, k_pe.expand(B, H, S, dr)), dim=-1)
    scale = (dn + dr) ** -0.5
    rs = cfg.get("rope_scaling")
    if rs and rs.get("mscale_all_dim"):
        m = _yarn_mscale(rs["factor"], rs["mscale_all_dim"])
        scale = scale * m * m
    scores = matmul(query, key.transpose(2, 3)) * scale
    i, j = torch.arange(S)[:, None], torch.arange(S)[None, :]
    mask = torch.zeros(S, S, dtype=scores.dtype).masked_fill(j > i, torch.finfo(scores.dtype).min)
    probs = F.softmax(scores + mask, dim=-1, dtype=torch.float32).to(query.dtype)
    out = matmul(probs, v).transpose(1, 2).reshape(B, S, H * dv)
    return linear(out, w[a + "o_proj.weight"])


def deepseek_route(cfg, w, p, x):
    """-> (logits, chosen [T, K], weights [T, K] float32), as DeepseekV3TopkRouter
    (noaux_tc: sigmoid, bias for selection only, groups scored by their best two,
    rejected groups masked with -inf) and V2's MoEGate (softmax; groups scored by
    their best; renormalisation and scaling exclusive)."""
    T = x.shape[0]
    E, K = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    logits = F.linear(x.float(), w[p + "mlp.gate.weight"].float())
    # GLM-4.5 has neither key: sigmoid and noaux_tc, as DeepSeek-V3.
    scores = logits.sigmoid() if cfg.get("scoring_func", "sigmoid") == "sigmoid" else logits.softmax(dim=-1)
    method = cfg.get("topk_method", "noaux_tc")
    choice = scores + w[p + "mlp.gate.e_score_correction_bias"].float() if method == "noaux_tc" else scores
    G = cfg.get("n_group", 1)
    if method != "greedy" and G > 1:
        grouped = choice.view(T, G, E // G)
        group_scores = grouped.topk(2, dim=-1)[0].sum(-1) if method == "noaux_tc" else grouped.max(dim=-1).values
        best = group_scores.topk(cfg["topk_group"], dim=-1, sorted=False)[1]
        keep = torch.zeros_like(group_scores).scatter_(1, best, 1).bool()
        keep = keep.unsqueeze(-1).expand(T, G, E // G).reshape(T, E)
        choice = choice.masked_fill(~keep, float("-inf"))
    chosen = choice.topk(K, dim=-1, sorted=False)[1]
    weights = scores.gather(1, chosen)
    if cfg["model_type"] == "deepseek_v2":
        if K > 1 and cfg.get("norm_topk_prob"):
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        else:
            weights = weights * cfg["routed_scaling_factor"]
    else:
        if cfg.get("norm_topk_prob"):
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        weights = weights * cfg["routed_scaling_factor"]
    return logits, chosen, weights


def deepseek_moe(cfg, w, p, x, routing_out, trace=None):
    """Routed experts summed in float32 (HF's DeepseekV3MoE), cast back, plus the
    shared experts (no gate)."""
    names = ("mlp", "gate_proj", "up_proj", "down_proj")
    T, d = x.shape
    logits, chosen, weights = deepseek_route(cfg, w, p, x)
    routing_out.append(chosen)
    out = torch.zeros((T, d), dtype=torch.float32)
    mask = F.one_hot(chosen, num_classes=cfg["n_routed_experts"]).permute(2, 1, 0)
    if trace is not None:
        trace["logits"], trace["weights"] = logits, weights
        trace["norms"] = torch.zeros(chosen.shape, dtype=torch.float64)
    _routed_experts(w, p + "mlp.experts.", names, x, mask, weights, out, trace)
    out = out.to(x.dtype)
    if cfg.get("n_shared_experts"):
        out = out + mlp(w, p + "mlp.shared_experts.", names, x)
    return out



# ---------------------------------------------------------------- MiniMax-M2

def minimax_moe(cfg, w, p, x, routing_out, trace=None):
    """MiniMax-M2's sparse MoE block: logits in the compute dtype (the F32 router cast to it, as HF
    does), sigmoid in float32, top-k of sigmoid + the block's e_score_correction_bias, weights the
    unbiased sigmoids renormalised without an epsilon, cast back; no scaling, no groups, no shared
    expert; the routed sum in the compute dtype."""
    names = _names(cfg)
    T, d = x.shape
    E, K = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    logits = linear(x, w[p + "block_sparse_moe.gate.weight"])
    scores = torch.sigmoid(logits.float())
    choice = scores + w[p + "block_sparse_moe.e_score_correction_bias"].float()
    chosen = choice.topk(K, dim=-1, sorted=False)[1]
    weights = scores.gather(1, chosen)
    weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
    routing_out.append(chosen)
    out = torch.zeros((T, d), dtype=x.dtype)
    mask = F.one_hot(chosen, num_classes=E).permute(2, 1, 0)
    if trace is not None:
        trace["logits"], trace["weights"] = logits.float(), weights
        trace["norms"] = torch.zeros(chosen.shape, dtype=torch.float64)
    _routed_experts(w, p + "block_sparse_moe.experts.", names, x, mask, weights, out, trace)
    return out


# ---------------------------------------------------------------- ERNIE-4.5-MoE

def _rope_pairs_f32(x, cfg, seq):
    """ERNIE's rotary embedding: cos and sin of cat(freqs, freqs), the first half repeated
    element-wise, rotate_half mapping (x0, x1, ...) to (-x1, x0, ...); in float32, cast back."""
    D = x.shape[-1]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = torch.outer(torch.arange(seq, dtype=torch.int64).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = emb.cos()[..., :D // 2].repeat_interleave(2, dim=-1)
    sin = emb.sin()[..., :D // 2].repeat_interleave(2, dim=-1)
    rotated = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def ernie_moe(cfg, w, p, x, routing_out, trace=None):
    """ERNIE-4.5's sparse MoE block: float32 logits from float32 operands, softmax, top-k of the
    probabilities plus moe_statics' bias, weights the unbiased probabilities over
    max(their sum, moe_norm_min), cast to the compute dtype; the routed sum in the compute dtype;
    the shared experts (one MLP) added ungated."""
    names = _names(cfg)
    T, d = x.shape
    E, K = cfg["moe_num_experts"], cfg["moe_k"]
    logits = F.linear(x.float(), w[p + "mlp.gate.weight"].float())
    probs = F.softmax(logits, dim=-1, dtype=torch.float)
    chosen = torch.topk(probs + w[p + "mlp.moe_statics.e_score_correction_bias"].float().squeeze(0), K, dim=-1)[1]
    weights = probs.gather(-1, chosen)
    weights = (weights / torch.clamp(weights.sum(-1, keepdim=True), min=cfg.get("moe_norm_min", 1e-12))).to(x.dtype)
    routing_out.append(chosen)
    out = torch.zeros((T, d), dtype=x.dtype)
    mask = F.one_hot(chosen, num_classes=E).permute(2, 1, 0)
    if trace is not None:
        trace["logits"], trace["weights"] = logits, weights
        trace["norms"] = torch.zeros(chosen.shape, dtype=torch.float64)
    _routed_experts(w, p + "mlp.experts.", names, x, mask, weights, out, trace)
    if cfg.get("moe_num_shared_experts"):
        out = out + mlp(w, p + "mlp.shared_experts.", names, x)
    return out


# ---------------------------------------------------------------- MXFP4 and gpt-oss

E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def dequantize_mxfp4(blocks, scales):
    """blocks uint8 [..., G, 16], scales uint8 [..., G] -> float32 [..., G * 32]: byte j of a group holds
    element 2j in its low nibble and 2j + 1 in its high nibble, a nibble is an E2M1 code, the scale
    byte s multiplies the group by 2^(s - 127)."""
    b = blocks.long()
    values = torch.stack((E2M1_VALUES[b & 15], E2M1_VALUES[b >> 4]), dim=-1).flatten(-2)  # [..., G, 32]
    values = values * torch.pow(2.0, scales.float() - 127)[..., None]
    return values.flatten(-2)


def quantize_mxfp4(w):
    """w float [..., G * 32] -> (blocks uint8 [..., G, 16], scales uint8 [..., G]): each group's scale
    the smallest power of two with max |w| / scale <= 6 (127 for an all-zero group), each value the
    nearest E2M1 value of w / scale, ties to the even code."""
    groups = w.double().reshape(*w.shape[:-1], -1, 32)
    amax = groups.abs().amax(-1)
    exponent = torch.where(amax > 0, torch.ceil(torch.log2(amax / 6.0)), torch.zeros_like(amax))
    exponent = torch.where(6.0 * torch.pow(2.0, exponent - 1) >= amax, exponent - 1, exponent)  # log2's rounding
    exponent = torch.where(amax > 0, torch.where(6.0 * torch.pow(2.0, exponent) < amax, exponent + 1, exponent),
                           torch.zeros_like(amax))
    x = groups / torch.pow(2.0, exponent)[..., None]
    a = x.abs().clamp(max=6.0)
    magnitudes = E2M1_VALUES[:8].double()
    hi = torch.searchsorted(magnitudes, a).clamp(1, 7)
    lo = hi - 1
    d_lo, d_hi = a - magnitudes[lo], magnitudes[hi] - a
    code = torch.where((d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0)), hi, lo)
    code = code + 8 * torch.signbit(x).long()
    blocks = (code[..., 0::2] | (code[..., 1::2] << 4)).to(torch.uint8)
    return blocks, (exponent + 127).to(torch.uint8)


def gpt_oss_random_weights(cfg, seed):
    """What a gpt-oss checkpoint stores: experts stacked per layer in MXFP4 ([E, out, in/32, 16] blocks,
    [E, out, in/32] scales) with float biases, gate and up interleaved by row; the rest float."""
    g, lin, norm = _sampler(seed)

    d, V, H, Hkv, D = cfg["hidden_size"], cfg["vocab_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], _head_dim(cfg)
    E, F = cfg["num_local_experts"], cfg["intermediate_size"]
    w = {"model.embed_tokens.weight": 0.5 * torch.randn(V, d, generator=g)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm(d)
        w[p + "post_attention_layernorm.weight"] = norm(d)
        for x, o, i in (("q", H * D, d), ("k", Hkv * D, d), ("v", Hkv * D, d), ("o", d, H * D)):
            w[p + f"self_attn.{x}_proj.weight"] = lin(o, i)
            w[p + f"self_attn.{x}_proj.bias"] = 0.1 * torch.randn(o, generator=g)
        w[p + "self_attn.sinks"] = torch.randn(H, generator=g)
        w[p + "mlp.router.weight"] = lin(E, d, 3.0)
        w[p + "mlp.router.bias"] = 0.3 * torch.randn(E, generator=g)
        # gate_up's biases push some gates and ups past the clamp at 7.
        for name, o, i, bias_scale in (("gate_up_proj", 2 * F, d, 4.0), ("down_proj", d, F, 0.1)):
            blocks, scales = quantize_mxfp4(torch.stack([lin(o, i, 2.0) for _ in range(E)]))
            w[p + f"mlp.experts.{name}_blocks"] = blocks
            w[p + f"mlp.experts.{name}_scales"] = scales
            w[p + f"mlp.experts.{name}_bias"] = bias_scale * torch.randn(E, o, generator=g)
    w["model.norm.weight"] = norm(d)
    w["lm_head.weight"] = lin(V, d)
    return w


def gpt_oss_rope(cfg, seq, dtype):
    """cos, sin [seq, head_dim] (NeoX halves) from YaRN's blended inverse frequencies, the correction
    range kept fractional where truncate is false, both times 0.1 ln(factor) + 1; cast to dtype."""
    dim, base, rs = _head_dim(cfg), cfg["rope_theta"], cfg["rope_scaling"]
    f = rs["factor"]
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)

    def corr_dim(rotations):
        return dim * math.log(rs["original_max_position_embeddings"] / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = corr_dim(rs.get("beta_fast", 32)), corr_dim(rs.get("beta_slow", 1))
    if rs.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    extrapolation = 1 - ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    inv_freq = (1.0 / (f * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    factor = 0.1 * math.log(f) + 1.0
    freqs = torch.outer(torch.arange(seq, dtype=torch.int64).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * factor).to(dtype), (emb.sin() * factor).to(dtype)


def gpt_oss_rms_norm(x, weight, eps):
    """gpt-oss's RMSNorm: normalised in float32, times the float32 weight, then cast."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (weight.float() * xf).to(x.dtype)


def gpt_oss_attention(cfg, w, p, x, cos, sin, layer):
    """GQA with biases on q/k/v/o; a sliding window (i - j < window) on sliding layers; each head's sink
    logit appended to every row, the row's largest logit subtracted, the softmax over the row in the
    compute dtype, the sink's column dropped."""
    B, S, _ = x.shape
    H, Hkv, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], _head_dim(cfg)
    a = p + "self_attn."
    q = linear(x, w[a + "q_proj.weight"], w[a + "q_proj.bias"]).view(B, S, H, D).transpose(1, 2)
    k = linear(x, w[a + "k_proj.weight"], w[a + "k_proj.bias"]).view(B, S, Hkv, D).transpose(1, 2)
    v = linear(x, w[a + "v_proj.weight"], w[a + "v_proj.bias"]).view(B, S, Hkv, D).transpose(1, 2)
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    rep = H // Hkv
    k = k[:, :, None].expand(B, Hkv, rep, S, D).reshape(B, H, S, D)
    v = v[:, :, None].expand(B, Hkv, rep, S, D).reshape(B, H, S, D)
    scores = matmul(q, k.transpose(2, 3)) * D ** -0.5
    i, j = torch.arange(S)[:, None], torch.arange(S)[None, :]
    allowed = j <= i
    if cfg["layer_types"][layer] == "sliding_attention":
        allowed &= (i - j) < cfg["sliding_window"]
    scores = scores.masked_fill(~allowed, float("-inf"))
    sinks = w[a + "sinks"].to(scores.dtype).view(1, H, 1, 1).expand(B, H, S, 1)
    combined = torch.cat([scores, sinks], dim=-1)
    combined = combined - combined.max(dim=-1, keepdim=True).values
    probs = F.softmax(combined, dim=-1, dtype=combined.dtype)[..., :-1]
    out = matmul(probs, v).transpose(1, 2).reshape(B, S, H * D)
    return linear(out, w[a + "o_proj.weight"], w[a + "o_proj.bias"])


def gpt_oss_experts(cfg, w, p):
    """Every expert of a layer decoded: (gate_up [E, 2F, d], gate_up bias, down [E, d, F], down bias)."""
    e = p + "mlp.experts."
    return (dequantize_mxfp4(w[e + "gate_up_proj_blocks"], w[e + "gate_up_proj_scales"]), w[e + "gate_up_proj_bias"],
            dequantize_mxfp4(w[e + "down_proj_blocks"], w[e + "down_proj_scales"]), w[e + "down_proj_bias"])


def gpt_oss_moe(cfg, w, p, x, routing_out, trace=None):
    """gpt-oss's MoE block: router logits with a bias, the top-k of the logits, a softmax over those k in
    the logits' dtype; per expert gate_up = x W + b split by parity (gate even, up odd), gate clamped
    above at the limit, up on both sides, (up + 1) * gate * sigmoid(1.702 gate), down with its bias,
    times the weight, summed in the compute dtype."""
    T, d = x.shape
    K, limit = cfg["num_experts_per_tok"], cfg.get("swiglu_limit", 7.0)
    logits = linear(x, w[p + "mlp.router.weight"], w[p + "mlp.router.bias"])
    top, chosen = torch.topk(logits, K, dim=-1)
    weights = F.softmax(top, dim=1, dtype=top.dtype)
    routing_out.append(chosen)
    gate_up, gate_up_bias, down, down_bias = gpt_oss_experts(cfg, w, p)
    out = torch.zeros((T, d), dtype=x.dtype)
    if trace is not None:
        trace["logits"], trace["weights"] = logits.float(), weights
        trace["norms"] = torch.zeros(chosen.shape, dtype=torch.float64)
    for e in range(cfg["num_local_experts"]):
        token, slot = torch.where(chosen == e)
        if token.numel() == 0:
            continue
        gu = matmul(x[token], gate_up[e].t().to(x.dtype)) + gate_up_bias[e].to(x.dtype)
        gate, up = gu[..., 0::2].clamp(max=limit), gu[..., 1::2].clamp(-limit, limit)
        y = matmul((up + 1) * (gate * torch.sigmoid(gate * 1.702)), down[e].t().to(x.dtype)) + down_bias[e].to(x.dtype)
        if trace is not None:
            trace["norms"][token, slot] = y.double().norm(dim=1)
        out.index_add_(0, token, (y * weights[token, slot, None]).to(out.dtype))
    return out


def gpt_oss_forward(cfg, w, tokens, dtype, traces=None):
    w = {n: t.to(dtype) if t.is_floating_point() else t for n, t in w.items()}
    B, S = tokens.shape
    d, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
    cos, sin = gpt_oss_rope(cfg, S, dtype)
    h = F.embedding(tokens, w["model.embed_tokens.weight"])
    routing = {}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = h + gpt_oss_attention(cfg, w, p, gpt_oss_rms_norm(h, w[p + "input_layernorm.weight"], eps), cos, sin, l)
        x = gpt_oss_rms_norm(h, w[p + "post_attention_layernorm.weight"], eps).reshape(B * S, d)
        chosen = []
        trace = None if traces is None else {"input": x}
        h = h + gpt_oss_moe(cfg, w, p, x, chosen, trace).view(B, S, d)
        if traces is not None:
            traces[l] = trace
        routing[l] = chosen[0]
    h = gpt_oss_rms_norm(h, w["model.norm.weight"], eps)
    return linear(h, w["lm_head.weight"]).float(), routing


def gpt_oss_dequantized(cfg, weights):
    """The same gpt-oss model as transformers writes it dequantised (and as BF16 releases store it):
    no quantization_config, each stacked projection [E, in, out] under its plain name
    (mlp.experts.gate_up_proj, mlp.experts.down_proj). Returns (config, weights)."""
    out = {}
    for n, t in weights.items():
        if n.endswith("_scales"):
            continue
        if n.endswith("_blocks"):
            base = n[:-len("_blocks")]
            out[base] = dequantize_mxfp4(t, weights[base + "_scales"]).transpose(1, 2).contiguous()
        else:
            out[n] = t
    return {k: v for k, v in cfg.items() if k != "quantization_config"}, out
