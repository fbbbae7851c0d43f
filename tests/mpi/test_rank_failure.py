#!/usr/bin/python3
"""A failure on one rank ends the whole job: `smoe score` under mpirun with 3
ranks, where only rank 1's share of the corpus holds a malformed record (record i
goes to rank i % 3). The peers are by then waiting in a collective; every rank
must be gone within 30 s, the exit status non-zero, the message from rank 1."""

import json
import os
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
import hf_reference as ref  # noqa: E402
from checks import script_args  # noqa: E402


def main():
    a = script_args(mpirun=True, fresh=False)
    cfg = ref.tiny_config("mixtral")
    model = os.path.join(a.workdir, "model")
    ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=1), shards=2)
    failures = []
    cases = [("malformed record", '{"text": "rank one reads this"', "not valid JSON"),
             ("token id out of range", '{"input_ids": [1, 2, 99999]}', "token id 99999")]
    for name, bad, needle in cases:
        corpus = os.path.join(a.workdir, "corpus.jsonl")
        with open(corpus, "w") as f:
            for i in range(9):
                f.write((bad if i == 4 else json.dumps({"text": f"record {i} of the corpus"})) + "\n")
        out = os.path.join(a.workdir, "out.safetensors")
        cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-n", "3", a.smoe, "score", "--model", model,
               "--corpus", corpus, "--threads", "1", "--logits", out]
        start = time.monotonic()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            code, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired as e:
            code, err = None, (e.stderr or b"").decode()
        elapsed = time.monotonic() - start
        ok = (code not in (None, 0) and f"{corpus}:5" in err and needle in err and "smoe r1]" in err
              and not os.path.exists(out))
        print(f"{'ok  ' if ok else 'FAIL'} {name} on rank 1: exit {code} after {elapsed:.1f} s")
        if not ok:
            print(err[-2000:])
            failures.append(name)
    if failures:
        sys.exit(f"{len(failures)} failed")
    print("mpi.rank-failure: passed")


if __name__ == "__main__":
    main()
