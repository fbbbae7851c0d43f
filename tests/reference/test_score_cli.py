#!/usr/bin/python3
"""`smoe score` as a user meets it: options from the command line and an INI
file, a SentencePiece tokenizer (checked against Debian's spm_encode), and bad
input, which must give exit status 2, a message naming the file and the fault,
and no file under the output's final name."""

import json
import os
import shutil
import subprocess
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402
from checks import script_args  # noqa: E402

failures = []


def run(smoe, args):
    return subprocess.run([smoe] + args, capture_output=True, text=True)


def expect(cond, what):
    if not cond:
        failures.append(what)
    print(("ok   " if cond else "FAIL ") + what)


def expect_input_error(smoe, name, args, needles, out=None):
    p = run(smoe, args)
    msg = p.stderr
    ok = p.returncode == 2 and all(n in msg for n in needles)
    if out is not None:
        folder = os.path.dirname(out)
        leftovers = [f for f in os.listdir(folder) if f.startswith(os.path.basename(out))]
        ok = ok and not leftovers
    expect(ok, f"{name}: exit {p.returncode}, stderr: {msg.strip().splitlines()[-1] if msg.strip() else ''}")


def main():
    a = script_args()
    w = a.workdir
    smoe = a.smoe

    cfg = ref.tiny_config("mixtral")
    cfg["vocab_size"] = 400
    weights = ref.random_weights(cfg, seed=5)
    model = os.path.join(w, "model")
    ref.save_checkpoint(model, cfg, weights, shards=2)
    corpus = os.path.join(w, "corpus.jsonl")
    with open(corpus, "w") as f:
        for t in ["a small corpus for the command line", "with two records of text"]:
            f.write(json.dumps({"text": t}) + "\n")

    # Help, and the command line against an INI file.
    p = run(smoe, ["score", "--help"])
    expect(p.returncode == 0 and "--model" in p.stdout and "--config" in p.stdout, "score --help")
    p = run(smoe, ["--help"])
    expect(p.returncode == 0 and "score" in p.stdout, "smoe --help lists the jobs")
    base = run(smoe, ["score", "--model", model, "--corpus", corpus])
    expect(base.returncode == 0 and "perplexity=" in base.stdout, "score runs")
    ini = os.path.join(w, "score.ini")
    with open(ini, "w") as f:
        f.write(f"model = {model}\ncorpus = {corpus}\ndtype = bf16\n")
    from_ini = run(smoe, ["score", "--config", ini, "--dtype", "f32"])
    # The figures, not the speed (tokens_per_second differs from run to run).
    figures = lambda out: [x for x in out.split() if not x.startswith("tokens_per_second=")]  # noqa: E731
    # The corpus as a Megatron indexed dataset written by `smoe tokenize`: the same figures.
    indexed = os.path.join(w, "corpus-indexed")
    p = run(smoe, ["tokenize", "--tokenizer", os.path.join(model, "tokenizer.json"), "--corpus", corpus, "--out", indexed,
                   "--format", "megatron", "--overwrite"])
    from_indexed = run(smoe, ["score", "--model", model, "--corpus", indexed])
    expect(p.returncode == 0 and from_indexed.returncode == 0 and figures(from_indexed.stdout) == figures(base.stdout),
           f"score on the indexed dataset equals score on the JSONL: {from_indexed.stdout.split()[:3]} {from_indexed.stderr[-300:]}")
    expect(from_ini.returncode == 0 and figures(from_ini.stdout) == figures(base.stdout),
           "options from --config, command line wins (dtype f32 over the file's bf16)")
    bf16 = run(smoe, ["score", "--config", ini])
    expect(bf16.returncode == 0 and figures(bf16.stdout) != figures(base.stdout),
           "the INI file's dtype applies when not overridden")

    # SentencePiece: train a small model with Debian's spm_train, compare token ids with spm_encode.
    text = os.path.join(w, "spm.txt")
    with open(text, "w") as f:
        for i in range(300):
            f.write(f"expert {i % 7} routes token {i} to layer {i % 3} of the mixture model\n")
    prefix = os.path.join(w, "spm")
    subprocess.run(["spm_train", f"--input={text}", f"--model_prefix={prefix}", "--vocab_size=60",
                    "--model_type=bpe", "--minloglevel=2"], check=True, capture_output=True)
    sentence = "expert 3 routes token 42 to the mixture"
    enc = subprocess.run(["spm_encode", f"--model={prefix}.model", "--output_format=id"], input=sentence + "\n",
                         capture_output=True, text=True, check=True)
    expected = [int(x) for x in enc.stdout.split()]
    spm_corpus = os.path.join(w, "spm.jsonl")
    with open(spm_corpus, "w") as f:
        f.write(json.dumps({"text": sentence}) + "\n")
    out = os.path.join(w, "spm-logits.safetensors")
    p = run(smoe, ["score", "--model", model, "--corpus", spm_corpus, "--tokenizer", prefix + ".model",
                   "--logits", out])
    got = ref.load_safetensors(out)[0]["tokens"].tolist() if p.returncode == 0 else None
    expect(got == expected, f"SentencePiece token ids equal spm_encode's ({len(expected)} ids)")

    # Bad input: exit 2, the file and the fault named, no output left behind.
    out = os.path.join(w, "out.safetensors")
    good = ["--model", model, "--corpus", corpus, "--logits", out]

    def with_corpus(name, lines):
        path = os.path.join(w, name)
        with open(path, "w") as f:
            f.write(lines)
        return path

    expect_input_error(smoe, "missing --model", ["score", "--corpus", corpus], ["model"])
    expect_input_error(smoe, "unknown option", ["score"] + good + ["--bogus", "1"], ["bogus"], out)
    expect_input_error(smoe, "bad --dtype", ["score"] + good + ["--dtype", "fp16"], ["--dtype", "fp16"], out)
    expect_input_error(smoe, "bad --threads value", ["score"] + good + ["--threads", "many"], ["threads"], out)
    expect_input_error(smoe, "missing model folder", ["score", "--model", w + "/nope", "--corpus", corpus,
                                                      "--logits", out], [w + "/nope"], out)
    expect_input_error(smoe, "missing config file", ["score", "--config", w + "/nope.ini"], ["nope.ini"])
    bad = with_corpus("range.jsonl", '{"text": "fine"}\n{"input_ids": [1, 2, 400]}\n')
    expect_input_error(smoe, "token id out of range", ["score", "--model", model, "--corpus", bad, "--logits", out],
                       [bad + ":2", "token id 400"], out)
    bad = with_corpus("empty.jsonl", "")
    expect_input_error(smoe, "empty corpus", ["score", "--model", model, "--corpus", bad, "--logits", out],
                       [bad, "no records"], out)
    bad = with_corpus("broken.jsonl", '{"text": "ok"}\n{"text": \n')
    expect_input_error(smoe, "malformed corpus line", ["score", "--model", model, "--corpus", bad, "--logits", out],
                       [bad + ":2", "not valid JSON"], out)
    bad = with_corpus("short.jsonl", '{"text": "a"}\n')
    expect_input_error(smoe, "nothing to score", ["score", "--model", model, "--corpus", bad, "--logits", out],
                       [bad, "nothing to score"], out)

    broken = os.path.join(w, "broken-model")
    shutil.copytree(model, broken)
    shard = os.path.join(broken, "model-00002-of-00002.safetensors")
    os.truncate(shard, os.path.getsize(shard) - 64)
    expect_input_error(smoe, "truncated shard", ["score", "--model", broken, "--corpus", corpus, "--logits", out],
                       [shard, "truncated"], out)
    with open(os.path.join(broken, "config.json"), "w") as f:
        json.dump(dict(cfg, model_type="llama"), f)
    expect_input_error(smoe, "unsupported model_type", ["score", "--model", broken, "--corpus", corpus],
                       [os.path.join(broken, "config.json"), "llama"])
    with open(os.path.join(broken, "config.json"), "w") as f:
        json.dump(dict(cfg, intermediate_size=97), f)
    os.truncate(shard, 0)
    shutil.copy(os.path.join(model, "model-00002-of-00002.safetensors"), shard)
    expect_input_error(smoe, "config disagrees with tensor shapes",
                       ["score", "--model", broken, "--corpus", corpus, "--logits", out], ["has shape", "implies"], out)

    if failures:
        sys.exit(f"{len(failures)} failed")
    print("reference.score-cli: passed")


if __name__ == "__main__":
    main()
