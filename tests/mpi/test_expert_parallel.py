"""`smoe score` expert-parallel under mpirun with 1, 2, 3 and 4 ranks against the
single-process run, for one model family (--family): logits within 1e-5 (F32),
identical token ids and routing choices, the same token count. Includes
placements where the expert count does not divide by the rank count, a placement
map from a file (3 ranks), and a capacity factor (0.6 on 2 ranks: some but not all
routed slots dropped, the perplexity changed)."""

import json
import os
import sys

import pytest
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
import hf_reference as ref  # noqa: E402
from family_runs import make_corpus  # noqa: E402

BOUND = 1e-5
RANKS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def inputs(family, workdir):
    cfg = ref.tiny_config(family)
    model = os.path.join(workdir, "model")
    ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=99), shards=3)
    corpus = os.path.join(workdir, "corpus.jsonl")
    make_corpus(corpus, cfg["vocab_size"], seed=3)
    return dict(model=model, corpus=corpus, experts=cfg[ref._experts_key(cfg)])


@pytest.fixture(scope="module")
def score(smoe, on_ranks, inputs, workdir, run):
    """score(ranks, name, extra): runs `smoe score --logits NAME.safetensors`, under
    mpirun with `ranks` ranks (0: a single process, no mpirun); returns the logits
    file's tensors and the key=value figures it printed."""
    def go(ranks, name, extra=()):
        out = os.path.join(workdir, f"{name}.safetensors")
        # One thread everywhere, so that GEMMs split their sums alike in every run.
        cmd = [smoe, "score", "--model", inputs["model"], "--corpus", inputs["corpus"], "--context", "40",
               "--batch", "3", "--threads", "1", "--logits", out] + list(extra)
        if ranks:
            cmd = on_ranks(ranks) + cmd
        p = run(cmd, timeout=240)
        values = dict(line.split("=", 1) for line in p.stdout.split() if "=" in line)
        return ref.load_safetensors(out)[0], values
    return go


def compare(label, base, got):
    """The largest logit difference and whether every other tensor (tokens, routing)
    is identical, printed."""
    diff = (base["logits"] - got["logits"]).abs().max().item()
    same = all(torch.equal(base[k], got[k]) for k in base if k != "logits") and set(base) == set(got)
    print(f"\n{'ok  ' if diff <= BOUND and same else 'FAIL'} {label:50s} max|dlogit| {diff:.3g}  "
          f"tokens/routing identical: {same}")
    return dict(diff=diff, same=same)


@pytest.fixture(scope="module")
def single(score):
    """The single-process run everything is compared with."""
    return score(0, "single")


@pytest.fixture(scope="module", params=RANKS, ids=[f"ranks={r}" for r in RANKS])
def parallel(request, score, single, family, inputs):
    """--executor expert-parallel on 1..4 ranks, the experts in contiguous blocks."""
    ranks = request.param
    got, values = score(ranks, f"p{ranks}", ["--executor", "expert-parallel"])
    result = compare(f"{family}: {ranks} rank(s), {inputs['experts']} experts in contiguous blocks", single[0], got)
    return dict(result, ranks=ranks, tokens=values["tokens"], base_tokens=single[1]["tokens"])


@pytest.fixture(scope="module")
def placed(score, single, family, inputs, workdir):
    """3 ranks, experts placed by a map from a file (E-1-e mod 3)."""
    placement = os.path.join(workdir, "placement.json")
    E = inputs["experts"]
    with open(placement, "w") as f:
        json.dump({"default": [(E - 1 - e) % 3 for e in range(E)]}, f)
    got, _ = score(3, "placed", ["--placement", placement])
    return compare(f"{family}: 3 ranks, placement map from a file", single[0], got)


@pytest.fixture(scope="module")
def capacity(score, single, family):
    """2 ranks, --capacity-factor 0.6."""
    _, values = score(2, "capacity", ["--capacity-factor", "0.6"])
    dropped, routed = int(values["dropped_slots"]), int(values["routed_slots"])
    ok = 0 < dropped < routed and values["perplexity"] != single[1]["perplexity"]
    print(f"\n{'ok  ' if ok else 'FAIL'} {family}: capacity factor 0.6 dropped {dropped} of {routed} slots")
    return dict(dropped=dropped, routed=routed, perplexity=values["perplexity"],
                base_perplexity=single[1]["perplexity"])


def test_expert_parallel_logits_match_single_process(parallel):
    assert parallel["diff"] <= BOUND, f"{parallel['ranks']} rank(s): max |dlogit| {parallel['diff']:.3g} > {BOUND}"


def test_expert_parallel_tokens_and_routing_identical(parallel):
    assert parallel["same"], f"{parallel['ranks']} rank(s): token ids or routing choices differ"


def test_expert_parallel_token_count_equal(parallel):
    assert parallel["tokens"] == parallel["base_tokens"], (
        f"{parallel['ranks']} ranks: token count {parallel['tokens']} vs {parallel['base_tokens']}")


def test_placement_map_logits_match_single_process(placed):
    assert placed["diff"] <= BOUND, f"max |dlogit| {placed['diff']:.3g} > {BOUND}"


def test_placement_map_tokens_and_routing_identical(placed):
    assert placed["same"], "token ids or routing choices differ"


def test_capacity_factor_drops_some_slots(capacity):
    assert capacity["dropped"] > 0, f"dropped {capacity['dropped']} of {capacity['routed']} slots"


def test_capacity_factor_keeps_some_slots(capacity):
    assert capacity["dropped"] < capacity["routed"], f"dropped {capacity['dropped']} of {capacity['routed']} slots"


def test_capacity_factor_changes_perplexity(capacity):
    assert capacity["perplexity"] != capacity["base_perplexity"], (
        f"perplexity {capacity['perplexity']} equals the uncapped run's")
