"""The malformed-input corpus: checkpoints, configs, corpora, statistics and plan
files, and options that real users get wrong. Every case must end with exit status
2, a message that names the offending file (or option) and what is wrong with it,
and no file under the job's final output name (and no temporary).

Each case starts from good inputs (a tiny Mixtral checkpoint, a corpus, a stats
file and a plan made by smoe itself), breaks one thing, and runs one job: one
test per case, its id the case's name. The corpus holds at least 25 cases.

  /usr/bin/python3 -m pytest -c tests/pytest.ini --rootdir tests tests/reliability/test_malformed.py \\
      --smoe build/smoe --workdir DIR
(any smoe binary: tests/run also gives it the AddressSanitizer build's)"""

import glob
import json
import os
import shutil
import struct
import sys

import h5py
import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from inputs import edit_config, first_tensor, prepare, rewrite_header, shard, write  # noqa: E402
import hf_reference as ref  # noqa: E402  (on the path through inputs)


# Each case: (name, make(inputs, dir) -> (smoe args, final output path, [words the message must hold])).
# The message must also hold the path of the offending file, given as the first word.

def score(model, corpus, d):
    out = os.path.join(d, "logits.safetensors")
    return ["score", "--model", model, "--corpus", corpus, "--threads", "1", "--logits", out], out


def collect(model, corpus, d, *extra):
    out = os.path.join(d, "stats.h5")
    return ["collect", "--model", model, "--task", f"t={corpus}", "--out", out, "--threads", "1", *extra], out


def cluster(stats, d, factor="2"):
    out = os.path.join(d, "plan.h5")
    return ["cluster", "--stats", stats, "--task", "t", "--method", "frequency", "--factor", factor, "--out", out], out


def prune(model, plan, d):
    out = os.path.join(d, "pruned")
    return ["prune", "--model", model, "--plan", plan, "--out", out], out


def checkpoint_case(breaker, words, job=score):
    def make(g, d):
        m = g.model_copy(d)
        culprit = breaker(m)
        args, out = job(m, g.corpus, d)
        return args, out, [culprit] + words
    return make


def truncate(m):
    p = shard(m)
    os.truncate(p, os.path.getsize(p) - 100)
    return p


def header_too_long(m):
    p = shard(m)
    with open(p, "r+b") as f:
        f.write(struct.pack("<Q", os.path.getsize(p) * 2))
    return p


def header_not_json(m):
    p = shard(m)
    with open(p, "r+b") as f:
        f.seek(8)
        f.write(b"{not json")
    return p


def offsets_past_end(m):
    p = shard(m)
    rewrite_header(p, lambda h: h[first_tensor(h)].__setitem__("data_offsets", [0, 10 ** 9]))
    return p


def unknown_dtype(m):
    p = shard(m)
    rewrite_header(p, lambda h: h[first_tensor(h)].__setitem__("dtype", "Q7"))
    return p


def shape_lies(m):
    p = shard(m)

    def edit(h):
        t = h[first_tensor(h)]
        t["shape"] = [t["shape"][0] + 1] + t["shape"][1:]
    rewrite_header(p, edit)
    return p


def missing_tensor(m):
    p = shard(m, 2)
    rewrite_header(p, lambda h: h.pop("model.norm.weight"))
    return m


def wrong_shape_tensor(m):
    """A gate of the right byte count but transposed shape."""
    def find(h):
        for k, v in h.items():
            if k.endswith("block_sparse_moe.gate.weight"):
                v["shape"] = v["shape"][::-1]
                return
    for i in (1, 2):
        rewrite_header(shard(m, i), find)
    return "gate.weight"


def index_missing_shard(m):
    os.remove(shard(m, 2))
    return os.path.join(m, "model.safetensors.index.json")


def index_not_json(m):
    return write(os.path.join(m, "model.safetensors.index.json"), '{"weight_map": ')


def index_wrong_file(m):
    p = os.path.join(m, "model.safetensors.index.json")
    with open(p) as f:
        idx = json.load(f)
    name = next(iter(idx["weight_map"]))
    idx["weight_map"][name] = os.path.basename(shard(m, 2)) if idx["weight_map"][name].endswith("1-of-00002.safetensors") \
        else os.path.basename(shard(m, 1))
    write(p, json.dumps(idx))
    return name


FP8_WEIGHT = "model.layers.0.self_attn.q_a_proj.weight"  # [24, 64] in 16 x 16 blocks: scales [2, 4]


def fp8_case(breaker, words):
    def make(g, d):
        m = os.path.join(d, "model")
        shutil.copytree(g.fp8_model, m)
        culprit = breaker(os.path.join(m, "model.safetensors"))
        args, out = score(m, g.corpus, d)
        return args, out, [culprit] + words
    return make


def fp8_nan(p):
    with open(p, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        f.seek(8 + n + header[FP8_WEIGHT]["data_offsets"][0] + 70)  # row 1, column 6
        f.write(b"\x7f")
    return p


def family_case(family, breaker, words, job=score):
    """A tiny checkpoint of `family`, stored as the family publishes it, broken by
    breaker(folder), which returns the file to be named."""
    def make(g, d):
        m = os.path.join(d, "model")
        cfg = ref.tiny_config(family)
        ref.save_checkpoint(m, cfg, ref.stored_checkpoint(cfg, ref.random_weights(cfg, 5))[0], shards=1)
        culprit = breaker(m)
        args, out = job(m, g.corpus, d)
        return args, out, [culprit] + words
    return make


def mxfp4_nan_scale(m):
    """Writes E8M0's NaN byte 0xFF as expert 2's scale of row 5, group 1, in layer 0's gate_up."""
    p = os.path.join(m, "model.safetensors")
    with open(p, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        entry = json.loads(f.read(n))["model.layers.0.mlp.experts.gate_up_proj_scales"]
        _, rows, groups = entry["shape"]
        f.seek(8 + n + entry["data_offsets"][0] + (2 * rows + 5) * groups + 1)
        f.write(b"\xff")
    return p


def config_edit(edit):
    """A breaker that edits config.json."""
    def breaker(m):
        edit_config(m, edit)
        return os.path.join(m, "config.json")
    return breaker


def header_edit(edit):
    """A breaker that edits the one shard's header."""
    def breaker(m):
        p = os.path.join(m, "model.safetensors")
        rewrite_header(p, edit)
        return p
    return breaker


def config_case(edit, words, job=score):
    def make(g, d):
        m = g.model_copy(d)
        if callable(edit):
            edit_config(m, edit)
        else:
            write(os.path.join(m, "config.json"), edit)
        args, out = job(m, g.corpus, d)
        return args, out, [os.path.join(m, "config.json")] + words
    return make


def corpus_case(text, words, job=collect):
    def make(g, d):
        c = write(os.path.join(d, "corpus.jsonl"), text)
        args, out = job(g.model, c, d)
        return args, out, [c] + words
    return make


def corpus_case_bytes(data, words, job=score):
    def make(g, d):
        c = write(os.path.join(d, "corpus.jsonl"), data, "wb")
        args, out = job(g.model, c, d)
        return args, out, [c] + words
    return make


def tokenizer_case(edit, words, option=False):
    """The model folder's tokenizer.json (or, with `option`, one given by
    --tokenizer) changed by `edit` (a function of the JSON, or the file's text)."""
    def make(g, d):
        m = g.model_copy(d)
        path = os.path.join(m if not option else d, "tokenizer.json")
        if callable(edit):
            with open(os.path.join(g.model, "tokenizer.json"), encoding="utf-8") as f:
                j = json.load(f)
            edit(j)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(j, f, ensure_ascii=False)
        else:
            write(path, edit)
        args, out = score(m, g.corpus, d)
        return args + (["--tokenizer", path] if option else []), out, [path] + words
    return make


def tiktoken_case(text, words):
    def make(g, d):
        m = g.model_copy(d)
        os.remove(os.path.join(m, "tokenizer.json"))
        path = write(os.path.join(m, "tiktoken.model"), text)
        args, out = score(m, g.corpus, d)
        return args, out, [path] + words
    return make


def indexed_case(breaker, words):
    """A Megatron indexed dataset of the good corpus (smoe tokenize), broken."""
    def make(g, d):
        folder = os.path.join(d, "tokens")
        g.job(["tokenize", "--tokenizer", "byte", "--corpus", g.corpus, "--out", folder, "--format", "megatron"])
        idx, binf = os.path.join(folder, "tokens.idx"), os.path.join(folder, "tokens.bin")
        breaker(idx, binf)
        args, out = score(g.model, folder, d)
        return args, out, [idx] + words
    return make


def file_case(good, name, job):
    """A copy of a good file (`good(inputs)`), broken by `breaker`, given to `job`."""
    def case(breaker, words):
        def make(g, d):
            path = os.path.join(d, name)
            shutil.copy(good(g), path)
            breaker(path)
            args, out = job(g, path, d)
            return args, out, [path] + words
        return make
    return case


stats_case = file_case(lambda g: g.stats, "stats.h5", lambda g, path, d: cluster(path, d))
plan_case = file_case(lambda g: g.plan, "plan.h5", lambda g, path, d: prune(g.model, path, d))


def h5_edit(fn):
    def breaker(path):
        with h5py.File(path, "r+") as f:
            fn(f)
    return breaker


def first_layer(f, group):
    return f[group][sorted(f[group].keys(), key=int)[0]]


def replace_dataset(group, name, data):
    del group[name]
    group[name] = data


def option_case(args_of, words):
    def make(g, d):
        args, out = args_of(g, d)
        return args, out, words
    return make


CASES = [
    # ---- checkpoints
    ("safetensors truncated", checkpoint_case(truncate, ["bytes"])),
    ("safetensors header length past the end", checkpoint_case(header_too_long, ["header"])),
    ("safetensors header not JSON", checkpoint_case(header_not_json, ["header"])),
    ("safetensors offsets past the data", checkpoint_case(offsets_past_end, ["offsets"])),
    ("safetensors unknown dtype", checkpoint_case(unknown_dtype, ["dtype", "Q7"])),
    ("safetensors shape disagrees with its bytes", checkpoint_case(shape_lies, ["shape"])),
    ("checkpoint tensor missing", checkpoint_case(missing_tensor, ["model.norm.weight"])),
    ("checkpoint tensor of the wrong shape", checkpoint_case(wrong_shape_tensor, ["shape"])),
    ("checkpoint shard missing", checkpoint_case(index_missing_shard, ["00002-of-00002", "missing"])),
    ("checkpoint index not JSON", checkpoint_case(index_not_json, ["JSON"])),
    ("checkpoint index names the wrong shard", checkpoint_case(index_wrong_file, [])),
    ("checkpoint (collect) truncated", checkpoint_case(truncate, ["bytes"], job=collect)),
    ("FP8 weight without its block scales", fp8_case(
        lambda p: (rewrite_header(p, lambda h: h.pop(FP8_WEIGHT + "_scale_inv")), p)[1],
        [FP8_WEIGHT + "_scale_inv", "no block scales"])),
    ("FP8 block scales of the wrong shape", fp8_case(
        lambda p: (rewrite_header(p, lambda h: h[FP8_WEIGHT + "_scale_inv"].__setitem__("shape", [4, 2])), p)[1],
        ["[4, 2]", "needs [2, 4]"])),
    ("FP8 weight holding a NaN", fp8_case(fp8_nan, [FP8_WEIGHT, "NaN", "[1, 6]"])),
    ("FP8 config with another quantisation", fp8_case(
        lambda p: (edit_config(os.path.dirname(p), lambda c: c.update(quantization_config={"quant_method": "awq"})),
                   os.path.join(os.path.dirname(p), "config.json"))[1], ["quant_method", "awq"])),
    # ---- the families' own faults
    ("GLM-4.5 expert count not divisible by the groups", family_case(
        "glm4_moe", config_edit(lambda c: c.update(n_group=3)), ["n_routed_experts (8)", "n_group (3)"])),
    ("GLM-4.5 partial rotary factor of zero", family_case(
        "glm4_moe", config_edit(lambda c: c.update(partial_rotary_factor=0)), ["partial_rotary_factor"])),
    ("GLM-4.5 q/k norm over the projection, not per head", family_case(
        "glm4_moe", header_edit(lambda h: h["model.layers.0.self_attn.q_norm.weight"].update(shape=[2, 12])),
        ["model.layers.0.self_attn.q_norm.weight", "[2, 12]", "[24]"])),
    ("MiniMax-M2 rotary_dim beyond head_dim", family_case(
        "minimax_m2", config_edit(lambda c: c.update(rotary_dim=64)), ["'rotary_dim' (64)", "head_dim (32)"])),
    ("MiniMax-M2 expert block scales of the wrong shape", family_case(
        "minimax_m2", header_edit(lambda h: h["model.layers.1.block_sparse_moe.experts.3.w2.weight_scale_inv"].update(
            shape=[4, 1])), ["model.layers.1.block_sparse_moe.experts.3.w2.weight_scale_inv", "[4, 1]", "[2, 2]"])),
    ("MiniMax-M2 selection bias missing", family_case(
        "minimax_m2", lambda m: (header_edit(lambda h: h.pop("model.layers.0.block_sparse_moe.e_score_correction_bias"))(m),
                                 m)[1], ["model.layers.0.block_sparse_moe.e_score_correction_bias", "minimax_m2"])),
    ("ERNIE-4.5 selection bias as [E], not [1, E]", family_case(
        "ernie4_5_moe", header_edit(lambda h: h["model.layers.1.mlp.moe_statics.e_score_correction_bias"].update(
            shape=[8])), ["model.layers.1.mlp.moe_statics.e_score_correction_bias", "[8]", "[1, 8]"])),
    ("ERNIE-4.5 MoE layers past the last layer", family_case(
        "ernie4_5_moe", config_edit(lambda c: c.update(moe_layer_start_index=5)), ["leave no MoE layer"])),
    ("gpt-oss MXFP4 blocks mis-shaped", family_case(
        "gpt_oss", header_edit(lambda h: h["model.layers.0.mlp.experts.gate_up_proj_blocks"].update(shape=[8, 128, 4, 8])),
        ["model.layers.0.mlp.experts.gate_up_proj_blocks", "[8, 128, 4, 8]", "[8, 128, 2, 16]"])),
    ("gpt-oss MXFP4 scales mis-shaped", family_case(
        "gpt_oss", header_edit(lambda h: h["model.layers.1.mlp.experts.down_proj_scales"].update(shape=[8, 32, 4])),
        ["model.layers.1.mlp.experts.down_proj_scales", "[8, 32, 4]", "[8, 64, 2]"])),
    ("gpt-oss MXFP4 scale holding E8M0's NaN", family_case(
        "gpt_oss", mxfp4_nan_scale, ["model.layers.0.mlp.experts.gate_up_proj_scales", "0xFF", "[2, 5, 1]"])),
    ("gpt-oss layer types of the wrong length", family_case(
        "gpt_oss", config_edit(lambda c: c.update(layer_types=["full_attention"] * 3)),
        ["'layer_types'", "each of the 4 layers", "found 3 entries"])),
    # ---- configs
    ("config not JSON", config_case("{\"model_type\": \"mixtral\",", ["JSON"])),
    ("config without hidden_size", config_case(lambda c: c.pop("hidden_size"), ["hidden_size"])),
    ("config top-k above the expert count", config_case(lambda c: c.update(num_experts_per_tok=9),
                                                         ["num_experts_per_tok"])),
    ("config unknown model_type", config_case(lambda c: c.update(model_type="gpt2"), ["gpt2"])),
    ("config heads do not divide hidden size", config_case(lambda c: c.update(num_attention_heads=5),
                                                            ["num_attention_heads"])),
    ("config negative vocabulary", config_case(lambda c: c.update(vocab_size=-4), ["vocab_size"])),
    ("config field of the wrong type", config_case(lambda c: c.update(num_hidden_layers="three"),
                                                    ["num_hidden_layers"])),
    # ---- corpora
    ("corpus empty", corpus_case("", ["no records"])),
    ("corpus malformed record", corpus_case('{"text": "fine"}\n{"text": \n', [":2", "JSON"])),
    ("corpus token id out of range", corpus_case('{"input_ids": [1, 2, 320]}\n', [":1", "320"])),
    ("corpus record without text or input_ids", corpus_case('{"title": "x"}\n', [":1", "text"])),
    ("corpus (score) token id negative", corpus_case('{"input_ids": [3, -1]}\n', [":1", "-1"], job=score)),
    ("corpus bad UTF-8 in a text", corpus_case_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n', [":2", "UTF-8"])),
    # ---- tokenizers (a model folder's own tokenizer.json, or --tokenizer)
    ("tokenizer.json without a model", tokenizer_case(lambda j: j.pop("model"), ["model"])),
    ("tokenizer.json merge naming an unknown token",
     tokenizer_case(lambda j: j["model"].update(merges=[["a", "no-such-token"]]), ["merge 0", "no-such-token"])),
    ("tokenizer.json regex that does not compile", tokenizer_case(lambda j: j.update(pre_tokenizer={
        "type": "Split", "pattern": {"Regex": "(?<x"}, "behavior": "Isolated", "invert": False}), ["does not compile"])),
    ("tokenizer.json unsupported component", tokenizer_case(lambda j: j.update(normalizer={"type": "BertNormalizer"}),
                                                            ["BertNormalizer", "not supported"])),
    ("tokenizer.json vocabulary id out of range", tokenizer_case(
        lambda j: j["model"]["vocab"].update({"zz": 2 ** 40}), ["out of range"])),
    ("tokenizer.json not JSON", tokenizer_case('{"model": {"type": "BPE", "vocab": {', ["not valid JSON"])),
    ("tokenizer (--tokenizer) ids beyond the model's vocabulary", tokenizer_case(
        lambda j: (j["model"]["vocab"].update(quick=400),
                   j["added_tokens"].append({"id": 400, "content": "quick", "special": False, "normalized": False})),
        ["400", "vocabulary"], option=True)),
    ("tiktoken.model line not base64", tiktoken_case("IQ== 0\nnot base64! 1\n", [":2"])),
    ("tiktoken.model ranks with a gap", tiktoken_case("".join(f"{b} {i}\n" for i, b in enumerate(
        ["IQ==", "Ig==", "Iw=="])) + "JA== 7\n", ["rank 7"])),
    ("indexed dataset without MMIDIDX", indexed_case(lambda idx, binf: write(idx, "not an index"), ["MMIDIDX"])),
    ("indexed dataset pointer beyond .bin", indexed_case(
        lambda idx, binf: os.truncate(binf, 2), ["beyond"])),
    # ---- statistics files
    ("stats not HDF5", stats_case(lambda p: write(p, "not an HDF5 file"), ["HDF5"])),
    ("stats truncated", stats_case(lambda p: os.truncate(p, os.path.getsize(p) // 2), [])),
    ("stats not complete", stats_case(h5_edit(lambda f: f.attrs.__setitem__("complete", 0)), ["complete"])),
    ("stats count of the wrong length", stats_case(
        h5_edit(lambda f: replace_dataset(first_layer(f, "tasks/t/layers"), "count", [1, 2, 3])), ["count"])),
    ("stats without the task", stats_case(h5_edit(lambda f: f.move("tasks/t", "tasks/u")), ["'t'"])),
    ("stats of another format", stats_case(h5_edit(lambda f: f.attrs.__setitem__("format", "other")), ["not a smoe statistics file"])),
    # ---- plan files
    ("plan not HDF5", plan_case(lambda p: write(p, "plan"), ["HDF5"])),
    ("plan group out of range", plan_case(
        h5_edit(lambda f: first_plan_layer(f, lambda g: g["group"].__setitem__(0, 99))), ["99"])),
    ("plan weights do not sum to 1", plan_case(
        h5_edit(lambda f: first_plan_layer(f, lambda g: g["weight"].__setitem__(0, 7.0))), ["weight"])),
    ("plan missing a layer", plan_case(h5_edit(lambda f: drop_plan_layer(f)), ["layer"])),
    # ---- options
    ("unknown option", option_case(lambda g, d: (score(g.model, g.corpus, d)[0] + ["--colour"],
                                                 os.path.join(d, "logits.safetensors")), ["--colour"])),
    ("bad dtype", option_case(lambda g, d: (collect(g.model, g.corpus, d, "--dtype", "f16")),
                              ["--dtype", "f16"])),
    ("factor below 1", option_case(lambda g, d: cluster(g.stats, d, factor="0.5"), ["--factor"])),
    ("unknown method", option_case(lambda g, d: (["cluster", "--stats", g.stats, "--task", "t", "--method", "magic",
                                                  "--factor", "2", "--out", os.path.join(d, "plan.h5")],
                                                 os.path.join(d, "plan.h5")), ["magic"])),
    ("task without a file", option_case(lambda g, d: (["collect", "--model", g.model, "--task", "t",
                                                       "--out", os.path.join(d, "stats.h5")],
                                                      os.path.join(d, "stats.h5")), ["--task"])),
    ("config INI missing", option_case(lambda g, d: (["collect", "--config", os.path.join(d, "none.ini"),
                                                      "--out", os.path.join(d, "stats.h5")],
                                                     os.path.join(d, "stats.h5")), ["none.ini"])),
    ("config INI with a bad value", option_case(
        lambda g, d: (collect(g.model, g.corpus, d, "--config", write(os.path.join(d, "job.ini"), "context = many\n"))),
        ["context", "many"])),
    ("corpus file missing", option_case(
        lambda g, d: collect(g.model, os.path.join(d, "absent.jsonl"), d), ["absent.jsonl"])),
    ("model folder missing", option_case(
        lambda g, d: score(os.path.join(d, "no-model"), g.corpus, d), ["no-model"])),
    ("plan-resources with a bad rank list", option_case(
        lambda g, d: (["plan-resources", "--model", g.fp8_model, "--ranks", "8,zero"], os.path.join(d, "none")),
        ["--ranks", "8,zero"])),
    ("plan-resources for an unknown GPU", option_case(
        lambda g, d: (["plan-resources", "--model", g.fp8_model, "--gpu", "tpu"], os.path.join(d, "none")),
        ["--gpu", "tpu"])),
    ("SMOE_BF16_GEMM of an unknown value", option_case(
        lambda g, d: with_args(score(g.model, g.corpus, d), "--dtype", "bf16"), ["SMOE_BF16_GEMM", "fast"])),
    ("SMOE_CPU_GEMM of an unknown value", option_case(
        lambda g, d: score(g.model, g.corpus, d), ["SMOE_CPU_GEMM", "blas"])),
]

BAD_ENV = {"SMOE_BF16_GEMM of an unknown value": {"SMOE_BF16_GEMM": "fast"},
           "SMOE_CPU_GEMM of an unknown value": {"SMOE_CPU_GEMM": "blas"}}


def with_args(job, *extra):
    args, out = job
    return args + list(extra), out


def first_plan_layer(f, fn):
    fn(first_layer(f, "layers"))


def drop_plan_layer(f):
    del f["layers"][sorted(f["layers"].keys(), key=int)[0]]


@pytest.fixture(scope="module")
def good(smoe, workdir):
    """The good inputs every case starts from, made once."""
    return prepare(smoe, workdir)


def test_corpus_holds_at_least_25_cases():
    assert len(CASES) >= 25, f"{len(CASES)} malformed inputs (at least 25)"


@pytest.mark.parametrize("index,name,make", [pytest.param(i, name, make, id=name)
                                             for i, (name, make) in enumerate(CASES)])
def test_malformed_input_exits_2_naming_the_fault_and_leaves_nothing(good, smoe, workdir, run, index, name, make):
    d = os.path.join(workdir, f"case{index:02d}")
    os.makedirs(d)
    args, out, words = make(good, d)
    p = run([smoe] + args, expect=None, env=BAD_ENV.get(name), timeout=120, errors="replace")
    err = p.stderr
    missing = [w for w in words if w not in err]
    left = os.path.exists(out)
    temps = glob.glob(os.path.join(d, "**", "*.tmp.*"), recursive=True)
    last = [line for line in err.splitlines() if "error" in line][-1:] or err.splitlines()[-1:]
    print(f"       {last[0] if last else '(no message)'}")
    refused = p.returncode == 2 and not missing and not left and not temps
    assert refused, (
        f"{name}: exit {p.returncode}" + (f", message lacks {missing}" if missing else "")
        + (f", {out} left behind" if left else "") + (f", temporaries {temps}" if temps else "")
        + f"\n--- stderr\n{err[-4000:]}")
