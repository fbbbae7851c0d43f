"""What the family cross-checks share: the corpus (and the reference's own
tokenisation and windows of it), the reference run, smoe score's run, and the
agreement of two routings. Imported by test_families.py, test_deepseek.py and
mpi/test_expert_parallel.py."""

import json
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.dirname(here))
import hf_reference as ref  # noqa: E402
from programs import run_program  # noqa: E402

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
    p = run_program(cmd)
    values = dict(line.split("=", 1) for line in p.stdout.split() if "=" in line)
    tensors, meta = ref.load_safetensors(out)
    return tensors, meta, float(values["perplexity"]), int(values["tokens"])


def routing_agreement(ours, theirs):
    a = torch.sort(ours, dim=1).values
    b = torch.sort(theirs, dim=1).values
    return (a == b).all(dim=1).float().mean().item()
