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
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

TASKS = ["capitals", "years"]
METRICS = ["perplexity", "bits_per_byte", "acc", "acc_norm", "exact_match"]


@pytest.fixture(scope="module")
def inputs(workdir, smoe, run):
    """A tiny Qwen3-MoE checkpoint (2 shards) and the synthetic suite."""
    cfg = ref.tiny_config("qwen3_moe")
    weights = ref.random_weights(cfg, seed=3)
    model = os.path.join(workdir, "model")
    ref.save_checkpoint(model, cfg, weights, shards=2)
    run([smoe, "data", "synth", "--out", os.path.join(workdir, "suite"), "--facts", "20", "--train", "5",
         "--eval", "6"])
    return dict(cfg=cfg, weights=weights, model=model)


@pytest.fixture(scope="module")
def results(inputs, workdir, smoe, on_ranks, run):
    """smoe eval's results files on 1 rank and on 2 ranks."""
    def evaluate(ranks, out):
        cmd = [smoe, "eval", "--model", inputs["model"], "--out", out, "--threads", "1", "--label", "method=none"]
        for t in TASKS:
            cmd += ["--task", f"{t}={workdir}/suite/{t}/eval.jsonl"]
        if ranks:
            cmd = on_ranks(ranks) + cmd
        run(cmd)
        with open(out) as f:
            return json.load(f)
    return dict(one=evaluate(0, os.path.join(workdir, "r1.json")), two=evaluate(2, os.path.join(workdir, "r2.json")))


@pytest.fixture(scope="module", params=TASKS)
def reference(request, inputs, results, workdir):
    """The reference's metrics and per-example scores of a task's eval.jsonl (printed beside smoe's)."""
    t = request.param
    cfg, weights = inputs["cfg"], inputs["weights"]

    def logprobs(seq):
        with torch.no_grad():
            logits, _ = ref.forward(cfg, weights, torch.tensor([seq]), torch.float32)
        return torch.log_softmax(logits[0].double(), -1)

    nll = tokens = nbytes = 0
    mc = acc = acc_norm = gen = em = 0
    docs, picks, matches = [], [], []  # per example: (line, nll, tokens, bytes), (line, acc, acc_norm), (line, em, tokens)
    with open(f"{workdir}/suite/{t}/eval.jsonl") as f:
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
                matches.append((number, float(out == want), out))
    ppl = math.exp(nll / tokens)
    bpb = nll / nbytes / math.log(2)
    # Standard errors from the reference's per-example scores.
    x, y, b = (np.array([d[i] for d in docs], dtype=float) for i in (1, 2, 3))

    def delta(den, scale):  # se of scale * (sum x / sum den): gradient' Cov gradient / n
        grad = scale * np.array([1 / den.mean(), -x.mean() / den.mean() ** 2])
        return np.sqrt(grad @ np.cov(np.vstack([x, den])) @ grad / len(x))
    se = {"perplexity": delta(y, ppl), "bits_per_byte": delta(b, 1 / math.log(2))}
    for name, col in (("acc", 1), ("acc_norm", 2)):
        v = np.array([p[col] for p in picks])
        se[name] = v.std(ddof=1) / np.sqrt(len(v))
    v = np.array([m[1] for m in matches])
    se["exact_match"] = v.std(ddof=1) / np.sqrt(len(v))
    res = results["one"]["results"][t]
    print(f"\n{t}: perplexity {res['perplexity,none']:.6g} (reference {ppl:.6g}), bits per byte "
          f"{res['bits_per_byte,none']:.6g} (reference {bpb:.6g})")
    print(f"{t}: acc {res['acc,none']:.3f} acc_norm {res['acc_norm,none']:.3f} over {mc} questions (reference "
          f"{acc / mc:.3f}, {acc_norm / mc:.3f}); exact match {res['exact_match,none']:.3f} over {gen} prompts "
          f"(reference {em / gen:.3f})")
    print(f"{t}: standard errors {dict((k, round(res[f'{k}_stderr,none'], 6)) for k in se)} "
          f"(NumPy on the reference's per-example scores {dict((k, round(float(v), 6)) for k, v in se.items())})")
    return dict(task=t, ppl=ppl, bpb=bpb, acc=acc / mc, acc_norm=acc_norm / mc, exact_match=em / gen, se=se,
                docs=docs, picks=picks, matches=matches, nll=x)


def test_results_file_has_the_harness_sections(results):
    assert set(results["one"]) >= {"results", "config", "n-samples"}, f"sections {sorted(results['one'])}"


def test_results_file_carries_the_labels(results):
    assert results["one"]["smoe"]["labels"] == {"method": "none"}


def test_perplexity_equals_the_references(results, reference):
    got = results["one"]["results"][reference["task"]]["perplexity,none"]
    assert got == pytest.approx(reference["ppl"], rel=1e-5), f"perplexity {got:.6g}, reference {reference['ppl']:.6g}"


def test_bits_per_byte_equal_the_references(results, reference):
    got = results["one"]["results"][reference["task"]]["bits_per_byte,none"]
    assert got == pytest.approx(reference["bpb"], rel=1e-5), \
        f"bits per byte {got:.6g}, reference {reference['bpb']:.6g}"


@pytest.mark.parametrize("metric", ["acc", "acc_norm", "exact_match"])
def test_accuracy_equals_the_references(results, reference, metric):
    got = results["one"]["results"][reference["task"]][f"{metric},none"]
    assert got == reference[metric], f"{metric} {got}, reference {reference[metric]}"


@pytest.mark.parametrize("metric", METRICS)
def test_standard_error_equals_numpys_on_the_references_scores(results, reference, metric):
    got = results["one"]["results"][reference["task"]][f"{metric}_stderr,none"]
    want = reference["se"][metric]
    assert got == pytest.approx(want, rel=1e-4, abs=1e-12), f"{metric} standard error {got}, NumPy {want}"


def test_text_samples_equal_the_references(results, reference):
    """Per document: line, tokens, bytes, nll."""
    smp, docs = results["one"]["samples"][reference["task"]]["text"], reference["docs"]
    assert smp["line"] == [d[0] for d in docs]
    assert smp["tokens"] == [d[2] for d in docs]
    assert smp["bytes"] == [d[3] for d in docs]
    assert np.allclose(smp["nll"], reference["nll"], rtol=1e-5), \
        f"nll {smp['nll']}, reference {reference['nll'].tolist()}"


def test_multiple_choice_samples_equal_the_references(results, reference):
    """Per question: line, acc, acc_norm."""
    smp, picks = results["one"]["samples"][reference["task"]]["multiple_choice"], reference["picks"]
    assert smp["line"] == [p[0] for p in picks]
    assert smp["acc"] == [p[1] for p in picks]
    assert smp["acc_norm"] == [p[2] for p in picks]


def test_generate_samples_equal_the_references(results, reference):
    """Per prompt: line, exact match, and the greedy tokens (smoe generates with a
    key/value cache, the reference runs the whole sequence for each token)."""
    matches = reference["matches"]
    assert results["one"]["samples"][reference["task"]]["generate"] == \
        {"line": [m[0] for m in matches], "exact_match": [m[1] for m in matches],
         "generated": [m[2] for m in matches]}


@pytest.mark.parametrize("task", TASKS)
def test_2_ranks_give_the_same_per_example_scores(results, task):
    one, two = results["one"]["samples"][task], results["two"]["samples"][task]
    assert two["multiple_choice"] == one["multiple_choice"]
    assert two["generate"] == one["generate"]
    assert np.allclose(two["text"]["nll"], one["text"]["nll"], rtol=1e-9), \
        f"nll on 2 ranks {two['text']['nll']}, on 1 rank {one['text']['nll']}"


@pytest.mark.parametrize("task", TASKS)
def test_2_ranks_give_the_same_results(results, task):
    res, r2 = results["one"]["results"][task], results["two"]["results"][task]
    differ = {k: (res[k], r2[k]) for k in res if k.endswith(",none") and not isinstance(res[k], str)
              and r2[k] != pytest.approx(res[k], rel=1e-9, abs=1e-9)}
    assert not differ, f"(1 rank, 2 ranks) differing: {differ}"
