"""A failure on one rank ends the whole job: `smoe score` under mpirun with 3
ranks, where only rank 1's share of the corpus holds a malformed record (record i
goes to rank i % 3). The peers are by then waiting in a collective; every rank
must be gone within 30 s, the exit status non-zero, the message from rank 1 (the
record's file:line and what is wrong with it), and no logits file written.
Two cases: a malformed JSON record, and a token id out of the vocabulary."""

import json
import os
import subprocess
import sys
import time

import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
import hf_reference as ref  # noqa: E402

# (id, what, record 4 of the corpus, what the message says)
CASES = [("malformed-record", "malformed record", '{"text": "rank one reads this"', "not valid JSON"),
         ("token-id-out-of-range", "token id out of range", '{"input_ids": [1, 2, 99999]}', "token id 99999")]


@pytest.fixture(scope="module")
def model(workdir):
    cfg = ref.tiny_config("mixtral")
    path = os.path.join(workdir, "model")
    ref.save_checkpoint(path, cfg, ref.random_weights(cfg, seed=1), shards=2)
    return path


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def failed(request, model, smoe, on_ranks, workdir, run):
    """One run on 3 ranks whose rank 1 meets the bad record (the 5th line), given
    30 s to end."""
    _, name, bad, needle = request.param
    corpus = os.path.join(workdir, "corpus.jsonl")
    with open(corpus, "w") as f:
        for i in range(9):
            f.write((bad if i == 4 else json.dumps({"text": f"record {i} of the corpus"})) + "\n")
    out = os.path.join(workdir, "out.safetensors")
    cmd = on_ranks(3) + [smoe, "score", "--model", model,
           "--corpus", corpus, "--threads", "1", "--logits", out]
    start = time.monotonic()
    try:
        p = run(cmd, expect=None, timeout=30)
        code, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        code, err = None, e.stderr or b""
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
    elapsed = time.monotonic() - start
    ok = (code not in (None, 0) and f"{corpus}:5" in err and needle in err and "smoe r1]" in err
          and not os.path.exists(out))
    print(f"\n{'ok  ' if ok else 'FAIL'} {name} on rank 1: exit {code} after {elapsed:.1f} s")
    if not ok:
        print(err[-2000:])
    return dict(name=name, code=code, err=err, elapsed=elapsed, corpus=corpus, needle=needle,
                logits_written=os.path.exists(out))


def test_job_ends_with_failure_within_30s(failed):
    assert failed["code"] not in (None, 0), (
        f"{failed['name']}: exit {failed['code']} after {failed['elapsed']:.1f} s (None: still running at 30 s)\n"
        f"{failed['err'][-2000:]}")


def test_message_names_the_record(failed):
    where = f"{failed['corpus']}:5"
    assert where in failed["err"], f"{failed['name']}: '{where}' not in the message\n{failed['err'][-2000:]}"


def test_message_says_what_is_wrong(failed):
    assert failed["needle"] in failed["err"], (
        f"{failed['name']}: '{failed['needle']}' not in the message\n{failed['err'][-2000:]}")


def test_message_comes_from_rank_1(failed):
    assert "smoe r1]" in failed["err"], f"{failed['name']}: no 'smoe r1]' in the message\n{failed['err'][-2000:]}"


def test_no_logits_written(failed):
    assert not failed["logits_written"], f"{failed['name']}: the logits file was written"
