#!/usr/bin/python3
"""`smoe eval` against a plain PyTorch computation of the same metrics on the same
model and data: perplexity and bits per byte (relative 1e-5), multiple-choice acc
and acc_norm and greedy exact match (equal); every metric's standard error against
NumPy on the reference's per-example scores (perplexity and bits per byte by the
delta method over documents, written with np.cov); the per-example scores
themselves; and 2 ranks equal to 1 rank. Also the results file's
lm-evaluation-harness layout."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, mpi_env, script_args  # noqa: E402
import hf_reference as ref  # noqa: E402



def main():
    a = script_args(mpirun=True)
    w = a.workdir
    env = mpi_env()
    cfg = ref.tiny_config("qwen3_moe")
    weights = ref.random_weights(cfg, seed=3)
    model = os.path.join(w, "model")
    ref.save_checkpoint(model, cfg, weights, shards=2)
    subprocess.run([a.smoe, "data", "synth", "--out", os.path.join(w, "suite"), "--facts", "20", "--train", "5", "--eval", "6"],
                   check=True, capture_output=True)
    tasks = ["capitals", "years"]

    def run(ranks, out):
        cmd = [a.smoe, "eval", "--model", model, "--out", out, "--threads", "1", "--label", "method=none"]
        for t in tasks:
            cmd += ["--task", f"{t}={w}/suite/{t}/eval.jsonl"]
        if ranks:
            cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-n", str(ranks)] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(p.stderr)
        with open(out) as f:
            return json.load(f)

    one = run(0, os.path.join(w, "r1.json"))
    two = run(2, os.path.join(w, "r2.json"))
    check(set(one) >= {"results", "config", "n-samples"} and one["smoe"]["labels"] == {"method": "none"},
          "results file: results, config, n-samples, smoe.labels")

    def logprobs(seq):
        with torch.no_grad():
            logits, _ = ref.forward(cfg, weights, torch.tensor([seq]), torch.float32)
        return torch.log_softmax(logits[0].double(), -1)

    for t in tasks:
        nll = tokens = nbytes = 0
        mc = acc = acc_norm = gen = em = 0
        docs, picks, matches = [], [], []  # per example: (line, nll, tokens, bytes), (line, acc, acc_norm), (line, em)
        with open(f"{w}/suite/{t}/eval.jsonl") as f:
            for number, line in enumerate(f, 1):
                r = json.loads(line)
                if "text" in r:
                    ids = list(r["text"].encode())
                    lp = logprobs(ids)
                    doc = -sum(lp[i - 1, ids[i]].item() for i in range(1, len(ids)))
                    docs.append((number, doc, len(ids) - 1, len(ids)))
                    nll += doc
                    tokens += len(ids) - 1
                    nbytes += len(ids)
                elif "choices" in r:
                    ctx = list(r["context"].encode())
                    scores = []
                    for c in r["choices"]:
                        cid = list(c.encode())
                        lp = logprobs(ctx + cid)
                        ll = sum(lp[len(ctx) + i - 1, cid[i]].item() for i in range(len(cid)))
                        scores.append((ll, ll / len(cid)))
                    mc += 1
                    picks.append((number, float(max(range(len(scores)), key=lambda i: scores[i][0]) == r["label"]),
                                  float(max(range(len(scores)), key=lambda i: scores[i][1]) == r["label"])))
                    acc += picks[-1][1]
                    acc_norm += picks[-1][2]
                else:
                    seq = list(r["prompt"].encode())
                    want = list((r["answer"] + "\n").encode())
                    out = []
                    for _ in want:
                        nxt = int(logprobs(seq + out)[-1].argmax())
                        out.append(nxt)
                    gen += 1
                    em += out == want
                    matches.append((number, float(out == want)))
        res = one["results"][t]
        ppl = math.exp(nll / tokens)
        bpb = nll / nbytes / math.log(2)
        check(abs(res["perplexity,none"] - ppl) / ppl < 1e-5 and abs(res["bits_per_byte,none"] - bpb) / bpb < 1e-5,
              f"{t}: perplexity {res['perplexity,none']:.6g} (reference {ppl:.6g}), bits per byte "
              f"{res['bits_per_byte,none']:.6g} (reference {bpb:.6g})")
        check(res["acc,none"] == acc / mc and res["acc_norm,none"] == acc_norm / mc,
              f"{t}: acc {res['acc,none']:.3f} acc_norm {res['acc_norm,none']:.3f} over {mc} questions equal the reference")
        check(res["exact_match,none"] == em / gen, f"{t}: exact match {res['exact_match,none']:.3f} equals the reference")
        # Standard errors from the reference's per-example scores.
        x, y, b = (np.array([d[i] for d in docs], dtype=float) for i in (1, 2, 3))

        def delta(den, scale):  # se of scale * (sum x / sum den): gradient' Cov gradient / n
            grad = scale * np.array([1 / den.mean(), -x.mean() / den.mean() ** 2])
            return np.sqrt(grad @ np.cov(np.vstack([x, den])) @ grad / len(x))
        want_se = {"perplexity": delta(y, ppl), "bits_per_byte": delta(b, 1 / math.log(2))}
        for name, col in (("acc", 1), ("acc_norm", 2)):
            v = np.array([p[col] for p in picks])
            want_se[name] = v.std(ddof=1) / np.sqrt(len(v))
        v = np.array([m[1] for m in matches])
        want_se["exact_match"] = v.std(ddof=1) / np.sqrt(len(v))
        got_se = {k: res[f"{k}_stderr,none"] for k in want_se}
        check(all(abs(got_se[k] - want_se[k]) <= 1e-4 * want_se[k] + 1e-12 for k in want_se),
              f"{t}: standard errors {dict((k, round(v, 6)) for k, v in got_se.items())} equal NumPy's on the "
              f"reference's per-example scores")
        smp = one["samples"][t]
        check(smp["text"]["line"] == [d[0] for d in docs] and smp["text"]["tokens"] == [d[2] for d in docs]
              and np.allclose(smp["text"]["nll"], x, rtol=1e-5) and smp["text"]["bytes"] == [d[3] for d in docs]
              and smp["multiple_choice"]["line"] == [p[0] for p in picks]
              and smp["multiple_choice"]["acc"] == [p[1] for p in picks]
              and smp["multiple_choice"]["acc_norm"] == [p[2] for p in picks]
              and smp["generate"] == {"line": [m[0] for m in matches], "exact_match": [m[1] for m in matches]},
              f"{t}: per-example scores (lines, nll, tokens, bytes, acc, acc_norm, exact match) equal the reference's")
        check(two["samples"][t]["multiple_choice"] == smp["multiple_choice"] and two["samples"][t]["generate"] ==
              smp["generate"] and np.allclose(two["samples"][t]["text"]["nll"], smp["text"]["nll"], rtol=1e-9),
              f"{t}: 2 ranks give the same per-example scores")
        r2 = two["results"][t]
        check(all(abs(r2[k] - res[k]) <= 1e-9 * max(1, abs(res[k])) for k in res if k.endswith(",none")
                  and not isinstance(res[k], str)), f"{t}: 2 ranks give the same results")
    finish("reference.eval")


if __name__ == "__main__":
    main()
