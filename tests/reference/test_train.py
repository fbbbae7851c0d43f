"""`smoe train` on the synthetic suite (`smoe data synth`):
  the trained model's eval loss is well below the unigram baseline (the suite's byte
  frequencies), measured with `smoe score`;
  its experts specialise: per-task routing distributions (from `smoe collect`)
  differ, by the mean pairwise Jensen-Shannon divergence, more than at init;
  1 and 2 ranks follow the same loss curve for the same global batch, and so do
  experts sharded over 2 ranks (one checkpoint shard per rank, which loads and runs);
  a run killed after a checkpoint and resumed ends where an uninterrupted one does."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
from programs import mpi_env  # noqa: E402

TASKS = ["capitals", "elements", "years", "symbols"]


def curve(folder):
    with open(os.path.join(folder, "train_log.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f]


@pytest.fixture(scope="module")
def suite(workdir, smoe_run):
    """The synthetic suite, and the training options every run shares."""
    path = os.path.join(workdir, "suite")
    smoe_run("data", "synth", "--out", path, "--facts", "50", "--train", "1500", "--eval", "40", "--seed", "1")
    common = ["--suite", path, "--experts", "8", "--hidden", "64", "--layers", "2", "--ffn", "96", "--batch", "16",
              "--context", "48", "--log-every", "50"]
    return dict(path=path, common=common)


@pytest.fixture(scope="module")
def eval_text(suite, workdir):
    """The suite's eval texts (all tasks) as one corpus, and the unigram baseline's loss on them
    (nats/token, byte frequencies of the train texts, add-one)."""
    counts = np.ones(256)
    for t in TASKS:
        with open(f"{suite['path']}/{t}/train.jsonl") as f:
            for line in f:
                for b in json.loads(line)["text"].encode():
                    counts[b] += 1
    p_unigram = counts / counts.sum()
    path = os.path.join(workdir, "eval-text.jsonl")
    nll = n = 0
    with open(path, "w") as out:
        for t in TASKS:
            with open(f"{suite['path']}/{t}/eval.jsonl") as f:
                for line in f:
                    r = json.loads(line)
                    if "text" in r:
                        out.write(line)
                        ids = list(r["text"].encode())
                        nll -= sum(math.log(p_unigram[b]) for b in ids[1:])
                        n += len(ids) - 1
    return dict(path=path, unigram=nll / n)


# ---- train on one rank; eval loss against the unigram baseline

@pytest.fixture(scope="module")
def trained(suite, eval_text, workdir, smoe_run):
    """The model trained for 240 steps on 1 rank, and its eval loss (nats/token) from smoe score."""
    model = os.path.join(workdir, "model")
    smoe_run("train", "--out", model, "--steps", "240", "--threads", "2", *suite["common"])
    p = smoe_run("score", "--model", model, "--corpus", eval_text["path"], "--threads", "2")
    loss, unigram = float(p.stdout.split("nll=")[1].split()[0]), eval_text["unigram"]
    print(f"\neval loss after 240 steps {loss:.3f} nats/token, unigram baseline {unigram:.3f} "
          f"({loss / unigram:.0%} of it)")
    return dict(folder=model, loss=loss)


def test_trained_eval_loss_is_well_below_the_unigram_baseline(trained, eval_text):
    loss, unigram = trained["loss"], eval_text["unigram"]
    assert loss < 0.6 * unigram, f"eval loss {loss:.3f}, unigram baseline {unigram:.3f} ({loss / unigram:.0%} of it)"


# ---- specialisation: per-task routing distributions differ

@pytest.fixture(scope="module")
def divergence(suite, trained, workdir, smoe_run):
    """Mean pairwise Jensen-Shannon divergence (bits) of the per-task routing distributions of the
    trained model and of the model at init."""
    def mean_js(folder, tag):
        stats = os.path.join(workdir, f"stats-{tag}.h5")
        args = ["collect", "--model", folder, "--out", stats, "--threads", "2", "--max-tokens", "4000"]
        for t in TASKS:
            args += ["--task", f"{t}={suite['path']}/{t}/train.jsonl"]
        smoe_run(*args)
        js = []
        with h5py.File(stats) as f:
            for layer in f[f"tasks/{TASKS[0]}/layers"]:
                dists = [f[f"tasks/{t}/layers/{layer}/count"][()].astype(float) for t in TASKS]
                dists = [d / d.sum() for d in dists]
                for i in range(len(dists)):
                    for j in range(i + 1, len(dists)):
                        m = (dists[i] + dists[j]) / 2
                        kl = lambda p, q: float(np.sum(p[p > 0] * np.log2(p[p > 0] / q[p > 0])))  # noqa: E731
                        js.append((kl(dists[i], m) + kl(dists[j], m)) / 2)
        return float(np.mean(js))

    init = os.path.join(workdir, "init")
    smoe_run("train", "--out", init, "--steps", "1", "--lr", "0", "--threads", "2", *suite["common"])
    out = dict(trained=mean_js(trained["folder"], "trained"), init=mean_js(init, "init"))
    print(f"\nexpert specialisation: mean pairwise Jensen-Shannon divergence of per-task routing "
          f"{out['trained']:.3f} bits (at init {out['init']:.3f})")
    return out


def test_trained_experts_specialise_by_task(divergence):
    assert divergence["trained"] > 0.05, f"mean pairwise JS divergence {divergence['trained']:.3f} bits"


def test_trained_experts_specialise_more_than_at_init(divergence):
    assert divergence["trained"] > 2 * divergence["init"], \
        f"mean pairwise JS divergence {divergence['trained']:.3f} bits, at init {divergence['init']:.3f}"


# ---- 1 and 2 ranks, the same global batch: the same loss curve

@pytest.fixture(scope="module")
def curves(suite, workdir, smoe_run):
    one, two = os.path.join(workdir, "one"), os.path.join(workdir, "two")
    smoe_run("train", "--out", one, "--steps", "80", "--threads", "1", *suite["common"])
    smoe_run("train", "--out", two, "--steps", "80", "--threads", "1", *suite["common"], ranks=2)
    c1, c2 = np.array(curve(one)), np.array(curve(two))
    print(f"\n1 and 2 ranks: loss {c1[0]:.3f} -> {c1[-1]:.3f} vs {c2[0]:.3f} -> {c2[-1]:.3f}, "
          f"max gap {float(np.max(np.abs(c1 - c2))):.2g}")
    return dict(one=c1, two=c2)


def test_1_and_2_ranks_log_every_step(curves):
    assert len(curves["one"]) == len(curves["two"]) == 80, \
        f"{len(curves['one'])} steps on 1 rank, {len(curves['two'])} on 2"


def test_2_ranks_follow_the_1_rank_loss_curve(curves):
    c1, c2 = curves["one"], curves["two"]
    gap = float(np.max(np.abs(c1 - c2)))
    assert gap < 0.02 * c1[0], f"max gap {gap:.2g}, first loss {c1[0]:.3f}"


# ---- experts sharded over 2 ranks (expert parallel): the same curve as replicated experts

@pytest.fixture(scope="module")
def sharded(suite, curves, eval_text, workdir, smoe_run):
    folder = os.path.join(workdir, "sharded")
    smoe_run("train", "--out", folder, "--steps", "80", "--threads", "1", "--shard-experts", *suite["common"],
             ranks=2)
    cs = np.array(curve(folder))
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        wm = json.load(f)["weight_map"]
    owners = {wm[f"model.layers.0.block_sparse_moe.experts.{e}.w1.weight"] for e in range(8)}
    p = smoe_run("score", "--model", folder, "--corpus", eval_text["path"], "--threads", "1", ranks=2)
    gap = float(np.max(np.abs(cs - curves["two"])))
    print(f"\nexperts sharded over 2 ranks: loss -> {cs[-1]:.3f} (replicated {curves['two'][-1]:.3f}, "
          f"max gap {gap:.2g}); layer 0's experts in {sorted(owners)}")
    return dict(curve=cs, gap=gap, owners=owners, score=p)


def test_sharded_experts_log_every_step(sharded):
    assert len(sharded["curve"]) == 80, f"{len(sharded['curve'])} steps"


def test_sharded_experts_follow_the_replicated_loss_curve(sharded, curves):
    assert sharded["gap"] < 0.01 * curves["two"][0], \
        f"max gap {sharded['gap']:.2g}, first replicated loss {curves['two'][0]:.3f}"


def test_sharded_experts_checkpoint_one_shard_per_rank(sharded):
    assert len(sharded["owners"]) == 2, f"layer 0's experts in {sorted(sharded['owners'])}"


def test_sharded_checkpoint_loads_and_scores_on_2_ranks(sharded):
    assert "perplexity=" in sharded["score"].stdout, f"smoe score printed {sharded['score'].stdout!r}"


# ---- killed after its first checkpoint, resumed: the same run as an uninterrupted one

@pytest.fixture(scope="module")
def resumed(suite, smoe, workdir, smoe_run):
    whole, killed = os.path.join(workdir, "whole"), os.path.join(workdir, "killed")
    args = ["--steps", "60", "--checkpoint-every", "20", "--threads", "1", *suite["common"]]
    smoe_run("train", "--out", whole, *args)
    # Started in the background (run() waits for the end) to be killed once it has checkpointed.
    proc = subprocess.Popen([smoe, "train", "--out", killed, *args], stderr=subprocess.DEVNULL, env=mpi_env())
    state = os.path.join(killed, "trainer_state.json")
    while proc.poll() is None and not os.path.exists(state):
        time.sleep(0.01)
    stopped = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = None
    if os.path.exists(state):
        with open(state) as f:
            at_kill = json.load(f)["step"]
    smoe_run("train", "--out", killed, "--resume", *args)
    cw, ck = curve(whole), curve(killed)
    print(f"\nkilled after its checkpoint at step {at_kill} and resumed: {len(ck)} steps, "
          f"loss {ck[0]:.3f} -> {ck[-1]:.3f} (uninterrupted {cw[0]:.3f} -> {cw[-1]:.3f})")
    return dict(stopped=stopped, at_kill=at_kill, whole=cw, killed=ck)


def test_run_is_killed_before_its_end(resumed):
    assert resumed["stopped"], "the run had ended before it was killed"


def test_killed_run_left_a_checkpoint_before_its_last_step(resumed):
    assert resumed["at_kill"] is not None and resumed["at_kill"] < 60, \
        f"trainer_state.json step at the kill: {resumed['at_kill']}"


def test_resumed_run_has_the_loss_curve_of_an_uninterrupted_one(resumed):
    cw, ck = resumed["whole"], resumed["killed"]
    first = next((i for i, (a, b) in enumerate(zip(cw, ck)) if a != b), None)
    assert ck == cw, f"{len(ck)} steps resumed vs {len(cw)} uninterrupted; first differing step {first}"
