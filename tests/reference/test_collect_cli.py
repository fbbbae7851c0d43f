"""`smoe collect` and bad input: each case exits 2 with a message naming the file
or option and the fault, and leaves nothing under the output's final name."""

import json
import os
import signal
import subprocess
import sys

import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.dirname(here))
import hf_reference as ref  # noqa: E402
from programs import mpi_env  # noqa: E402


@pytest.fixture(scope="module")
def setup(workdir):
    """A tiny OLMoE checkpoint, a good corpus, bad corpora, and the output's name."""
    w = workdir
    cfg = ref.tiny_config("olmoe")
    model = os.path.join(w, "model")
    ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=2), shards=1)
    good = os.path.join(w, "good.jsonl")
    with open(good, "w") as f:
        for i in range(6):
            f.write(json.dumps({"text": f"document number {i} of a small corpus"}) + "\n")
    corpora = {}
    for name, text in (("range.jsonl", '{"input_ids": [1, 2]}\n{"input_ids": [5, 320]}\n'), ("empty.jsonl", "\n")):
        corpora[name] = os.path.join(w, name)
        with open(corpora[name], "w") as f:
            f.write(text)
    return dict(w=w, model=model, good=good, corpora=corpora, out=os.path.join(w, "stats.h5"))


def collect_fails(run, smoe, on_ranks, s, args, needles, ranks=0):
    """smoe collect with `args` (on `ranks` ranks under mpirun when given) exits 2,
    its error output holds every needle, and nothing is left under stats.h5."""
    cmd = [smoe, "collect", "--model", s["model"], "--out", s["out"], "--threads", "1"] + args
    if ranks:
        cmd = on_ranks(ranks) + cmd
    p = run(cmd, expect=None, timeout=120)
    # The working file (and its temporary, from the run killed below) is not output.
    left = [f for f in os.listdir(s["w"]) if f.startswith("stats.h5") and not f.startswith("stats.h5.work.h5")]
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    print(f"exit {p.returncode}: {last[:200]}")
    assert p.returncode == 2, f"exit {p.returncode}, expected 2\n{p.stderr[-1500:]}"
    missing = [n for n in needles if n not in p.stderr]
    assert not missing, f"error output lacks {missing}\n{p.stderr[-1500:]}"
    assert not left, f"left under the output's name: {left}"


# name -> (arguments, needles in the error output, ranks); s is the setup fixture's dict.
CASES = {
    "task without a file": lambda s: (["--task", "qa"], ["--task must be NAME=FILE", "'qa'"], 0),
    "task named twice": lambda s: (["--task", f"a={s['good']}", "--task", f"a={s['good']}"], ["given twice"], 0),
    "missing corpus": lambda s: (["--task", f"a={s['w']}/none.jsonl"], [f"{s['w']}/none.jsonl", "cannot open"], 0),
    "bad schedule": lambda s: (["--task", f"a={s['good']}", "--schedule", "fast"], ["--schedule", "fast"], 0),
    "negative sample": lambda s: (["--task", f"a={s['good']}", "--sample", "-3"], ["--sample"], 0),
    "token id out of range on rank 1 of 2": lambda s: (
        ["--task", f"a={s['corpora']['range.jsonl']}"], [f"{s['corpora']['range.jsonl']}:2", "token id 320"], 2),
    "empty corpus": lambda s: (["--task", f"a={s['good']}", "--task", f"b={s['corpora']['empty.jsonl']}"],
                               [s["corpora"]["empty.jsonl"], "no records"], 0),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_exits_2_naming_the_fault_and_writes_nothing(setup, run, smoe, on_ranks, name):
    args, needles, ranks = CASES[name](setup)
    collect_fails(run, smoe, on_ranks, setup, args, needles, ranks)


def test_missing_model_exits_2_naming_it(setup, run, smoe):
    missing_model = os.path.join(setup["w"], "no-model")
    p = run([smoe, "collect", "--model", missing_model, "--task", f"a={setup['good']}", "--out", setup["out"]],
            expect=2)
    assert missing_model in p.stderr, p.stderr[-1500:]


@pytest.fixture(scope="module")
def foreign_work_file(setup, run, smoe):
    """A working file from another run: a run on another corpus, stopped by SIGTERM
    once its working file is there. Returns the working file's path."""
    model, good, out = setup["model"], setup["good"], setup["out"]
    work = out + ".work.h5"
    # Its status is not checked (as before the conversion): the run completes and removes its working file.
    run([smoe, "collect", "--model", model, "--task", f"a={good}", "--out", out, "--threads", "1",
         "--checkpoint-tokens", "1"], expect=None)
    other = os.path.join(setup["w"], "other.jsonl")
    with open(other, "w") as f:
        f.write("".join(json.dumps({"text": "x" * 50}) + "\n" for _ in range(400)))
    proc = subprocess.Popen([smoe, "collect", "--model", model, "--task", f"a={other}", "--out", out,
                             "--threads", "1", "--checkpoint-tokens", "1"], stderr=subprocess.PIPE, text=True,
                            env=mpi_env())
    while not os.path.exists(work) and proc.poll() is None:
        pass
    proc.send_signal(signal.SIGTERM)  # it checkpoints once more and exits 3, its temporaries removed
    proc.wait()
    if os.path.exists(out):
        os.remove(out)
    return dict(work=work, other=other)


def test_a_stopped_run_leaves_its_working_file(foreign_work_file):
    assert os.path.exists(foreign_work_file["work"]), "could not make a working file to resume from"


def test_resume_refuses_another_runs_working_file(setup, foreign_work_file, run, smoe, on_ranks):
    work = foreign_work_file["work"]
    assert os.path.exists(work), "no working file to resume from"
    collect_fails(run, smoe, on_ranks, setup, ["--task", f"a={setup['good']}", "--resume"],
                  [work, "written for another model, corpus or options"])


def test_resume_refuses_another_rank_count(setup, foreign_work_file, run, smoe, on_ranks):
    work = foreign_work_file["work"]
    assert os.path.exists(work), "no working file to resume from"
    collect_fails(run, smoe, on_ranks, setup, ["--task", f"a={foreign_work_file['other']}", "--resume"],
                  [work, "written by 1 ranks"], ranks=2)
