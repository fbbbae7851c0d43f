#!/usr/bin/python3
"""Cross-check of `smoe score` against the plain-PyTorch reference of a family's
HF semantics (hf_reference.py) on tiny random checkpoints in HF layout.

For one family: writes the checkpoint sharded in F32 and in BF16, and a corpus;
runs `smoe score --logits`; compares tokens, logits and routing choices.
  F32 weights, f32 compute:   max |dlogit| <= 1e-4, routing identical, perplexity equal
  BF16 weights, f32 compute:  the same bounds (the BF16 load path)
  BF16 weights, bf16 compute: max |dlogit| <= BF16_BOUND, routing agreement reported
"""

import json
import math
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402
from checks import script_args  # noqa: E402

F32_BOUND = 1e-4
# Logits are O(1..10) here. smoe's bf16 path runs the same LibTorch kernels in the
# same order as the reference and has matched it bit for bit (0.0); the bound
# leaves room for kernels that block differently for other batch shapes.
BF16_BOUND = 0.05
BF16_ROUTING_MIN = 0.97
CONTEXT = 40


def make_corpus(path, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    texts = ["The router sends each token to two experts.",
             "Mixture-of-experts layers keep many feed-forward networks; a task uses few of them, "
             "so pruning keeps the ones it needs and merges the rest into fewer experts.",
             "x = 3 * (4 + 5); print(x)  # 27",
             "caf\u00e9 na\u00efve \u00fcber \u2014 unicode bytes",
             "ab"]
    records = [{"text": t} for t in texts]
    records.append({"input_ids": torch.randint(0, vocab, (57,), generator=g).tolist()})
    records.append({"input_ids": torch.randint(0, vocab, (40,), generator=g).tolist()})
    records.append({"input_ids": [vocab - 1, 0, vocab - 1]})
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    # The reference's own tokenisation and splitting: UTF-8 bytes, windows of CONTEXT.
    seqs = []
    for r in records:
        ids = list(r["text"].encode("utf-8")) if "text" in r else r["input_ids"]
        for b in range(0, len(ids), CONTEXT):
            piece = ids[b:b + CONTEXT]
            if len(piece) >= 2:
                seqs.append(piece)
    return seqs


def reference_run(cfg, weights, seqs, dtype):
    logits, routing, nll, n = [], {}, 0.0, 0
    with torch.no_grad():
        for s in seqs:
            tokens = torch.tensor([s])
            lg, rt = ref.forward(cfg, weights, tokens, dtype)
            logits.append(lg[0])
            for l, c in rt.items():
                routing.setdefault(l, []).append(c)
            logp = torch.log_softmax(lg[0, :-1].double(), -1)
            nll -= logp.gather(1, tokens[0, 1:, None]).sum().item()
            n += len(s) - 1
    return torch.cat(logits), {l: torch.cat(c) for l, c in routing.items()}, nll / n


def run_smoe(smoe, model, corpus, dtype, out):
    cmd = [smoe, "score", "--model", model, "--corpus", corpus, "--dtype", dtype, "--context", str(CONTEXT),
           "--batch", "3", "--threads", "2", "--logits", out]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stderr}")
    values = dict(line.split("=", 1) for line in p.stdout.split() if "=" in line)
    tensors, meta = ref.load_safetensors(out)
    return tensors, meta, float(values["perplexity"]), int(values["tokens"])


def routing_agreement(ours, theirs):
    a = torch.sort(ours, dim=1).values
    b = torch.sort(theirs, dim=1).values
    return (a == b).all(dim=1).float().mean().item()


def main():
    a = script_args("--family", fresh=False)
    torch.set_num_threads(2)

    cfg = ref.tiny_config(a.family)
    weights = ref.random_weights(cfg, seed=1234)
    corpus = os.path.join(a.workdir, "corpus.jsonl")
    seqs = make_corpus(corpus, cfg["vocab_size"], seed=7)
    expected_tokens = torch.tensor([t for s in seqs for t in s])

    f32_dir = os.path.join(a.workdir, "f32")
    bf16_dir = os.path.join(a.workdir, "bf16")
    ref.save_checkpoint(f32_dir, cfg, weights, shards=3)
    bf16_weights = {n: t.to(torch.bfloat16) for n, t in weights.items()}
    ref.save_checkpoint(bf16_dir, cfg, bf16_weights, shards=2)

    failures = []
    rows = []
    cases = [("F32", f32_dir, weights, "f32", torch.float32),
             ("BF16", bf16_dir, bf16_weights, "f32", torch.float32),
             ("BF16", bf16_dir, bf16_weights, "bf16", torch.bfloat16)]
    for stored, folder, w, dt_name, dt in cases:
        out = os.path.join(a.workdir, f"logits-{stored}-{dt_name}.safetensors")
        ours, meta, ppl, ntok = run_smoe(a.smoe, folder, corpus, dt_name, out)
        ref_logits, ref_routing, ref_nll = reference_run(cfg, {n: t.float() for n, t in w.items()}, seqs, dt)
        label = f"{a.family} weights={stored} compute={dt_name}"
        if not torch.equal(ours["tokens"], expected_tokens):
            failures.append(f"{label}: token ids differ from the reference tokenisation")
            continue
        diff = (ours["logits"] - ref_logits).abs().max().item()
        agree = min(routing_agreement(ours[f"routing.layer{l}.experts"], c) for l, c in ref_routing.items())
        layers_ok = sorted(int(k[len("routing.layer"):-len(".experts")]) for k in ours if k.startswith("routing.")) \
            == sorted(ref_routing)
        ppl_rel = abs(ppl - math.exp(ref_nll)) / math.exp(ref_nll)
        rows.append((label, diff, agree, ppl, ppl_rel))
        if not layers_ok:
            failures.append(f"{label}: MoE layers with routing {sorted(ref_routing)} expected")
        if dt == torch.float32:
            if diff > F32_BOUND:
                failures.append(f"{label}: max |dlogit| {diff:.3g} > {F32_BOUND}")
            if agree < 1.0:
                failures.append(f"{label}: routing choices differ (agreement {agree:.4f})")
            if ppl_rel > 1e-5:
                failures.append(f"{label}: perplexity {ppl} vs reference {math.exp(ref_nll)}")
        else:
            if diff > BF16_BOUND:
                failures.append(f"{label}: max |dlogit| {diff:.3g} > {BF16_BOUND}")
            if agree < BF16_ROUTING_MIN:
                failures.append(f"{label}: routing agreement {agree:.4f} < {BF16_ROUTING_MIN}")
        if meta.get("dtype") != dt_name:
            failures.append(f"{label}: logits file metadata dtype {meta.get('dtype')!r}")

    print(f"{'case':45s} {'max|dlogit|':>12s} {'routing':>8s} {'perplexity':>12s} {'ppl rel':>9s}")
    for label, diff, agree, ppl, rel in rows:
        print(f"{label:45s} {diff:12.3g} {agree:8.4f} {ppl:12.6g} {rel:9.2g}")
    if failures:
        print("\n".join("FAIL: " + f for f in failures))
        sys.exit(1)
    print(f"reference.{a.family}: passed")


if __name__ == "__main__":
    main()
