"""`smoe collect` under mpirun: the statistics do not depend on the rank count or
the schedule, and a killed or signalled run resumes to the same file.

  1, 2 and 4 ranks, default schedule; 1 and 2 ranks, layerwise schedule:
    integer datasets bit-equal, float datasets within 1e-9 relative
  kill -9 after the first checkpoint, then --resume: equal to an uninterrupted run
  kill -9 of one rank (not the launcher) after the first checkpoint: every rank
    gone within 30 s, exit status non-zero; then --resume: equal to an uninterrupted run
  SIGUSR1: checkpoint, exit status 3; then --resume: equal to an uninterrupted run
Every file a run writes carries the complete flag."""

import json
import os
import signal
import struct
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, ".."))
sys.path.insert(0, os.path.join(here, "..", "reference"))
import hf_reference as ref  # noqa: E402
from programs import mpi_env  # noqa: E402

REL = 1e-9
SCHEDULES = ("default", "layerwise")

# The runs to completion, by name (the file is NAME.h5): ranks, extra options, and
# which records they read (the JSONL corpora or the same records as indexed datasets).
RUNS = {
    "p1": (1, (), "jsonl"),
    "p2": (2, (), "jsonl"),
    "p4": (4, (), "jsonl"),
    "lw1": (1, ("--schedule", "layerwise"), "jsonl"),
    "lw2": (2, ("--schedule", "layerwise"), "jsonl"),
    "cap1": (1, ("--max-tokens", "1000"), "jsonl"),
    "cap2": (2, ("--max-tokens", "1000"), "jsonl"),
    "idx1": (1, (), "indexed"),
    "idx3": (3, (), "indexed"),
    "idxcap": (3, ("--max-tokens", "1000"), "indexed"),
}
# The uninterrupted runs the killed and resumed ones are compared with, per schedule.
UNINTERRUPTED = {"default": "p2", "layerwise": "lw2"}

# (id, label, reference run, compared run): float datasets within REL, integers bit-equal.
COMPARISONS = [
    ("2-ranks-vs-1", "2 ranks vs 1 rank (default schedule)", "p1", "p2"),
    ("4-ranks-vs-1", "4 ranks vs 1 rank (default schedule)", "p1", "p4"),
    ("layerwise-1-rank", "1 rank(s), layerwise schedule vs default", "p1", "lw1"),
    ("layerwise-2-ranks", "2 rank(s), layerwise schedule vs default", "p1", "lw2"),
    ("max-tokens-2-ranks-vs-1", "--max-tokens 1000 on 2 ranks vs 1 rank", "cap1", "cap2"),
    ("indexed-1-rank", "indexed datasets vs JSONL, 1 rank(s)", "p1", "idx1"),
    ("indexed-3-ranks", "indexed datasets vs JSONL, 3 rank(s)", "p1", "idx3"),
    ("max-tokens-indexed-3-ranks", "--max-tokens 1000, indexed datasets on 3 ranks vs JSONL on 1", "cap1", "idxcap"),
]


def read_collect(path):
    """The datasets of a statistics file (and the tasks' and layers' token and
    sequence counts as datasets named @...), and its complete flag."""
    out = {}
    with h5py.File(path, "r") as f:
        complete = f.attrs["complete"]
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        for name, g in f["tasks"].items():
            for key in ("tokens", "sequences"):
                out[f"tasks/{name}/@{key}"] = np.array(g.attrs[key])
            for l, lg in g["layers"].items():
                out[f"tasks/{name}/layers/{l}/@tokens"] = np.array(lg.attrs["tokens"])
    return dict(path=path, datasets=out, complete=complete)


def differences(a, b, exact=False):
    """The datasets of `b` that differ from `a`'s (integers, or everything when
    `exact`, bit for bit; floats beyond REL relative), and the largest relative
    float difference."""
    bad, worst = [], 0.0
    if set(a) != set(b):
        bad.append(f"datasets differ: {sorted(set(a) ^ set(b))}")
    for k in sorted(set(a) & set(b)):
        x, y = a[k], b[k]
        if x.shape != y.shape:
            bad.append(f"{k}: shape {x.shape} vs {y.shape}")
        elif x.dtype.kind in "iu" or exact:
            if not np.array_equal(x, y):
                bad.append(k)
        elif x.size:
            rel = float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-300)))
            worst = max(worst, rel)
            if rel > REL:
                bad.append(f"{k}: relative {rel:.3g}")
    return bad, worst


def compare(label, a, b, exact=False):
    bad, worst = differences(a["datasets"], b["datasets"], exact)
    print(f"\n{'ok  ' if not bad else 'FAIL'} {label}: {len(a['datasets'])} datasets, max relative float "
          f"difference {worst:.3g}" + ("" if not bad else f"; {bad[:5]}"))
    return bad


def write_indexed(prefix, docs):
    """A Megatron-LM indexed dataset (indexed_dataset.py's layout): PREFIX.bin holds
    the ids back to back (int32 here), PREFIX.idx the header, lengths, byte pointers
    and document indices."""
    lengths = np.array([len(d) for d in docs], dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64) * 4]).astype(np.int64)
    with open(prefix + ".bin", "wb") as f:
        f.write(np.concatenate([np.asarray(d, dtype=np.int32) for d in docs]).tobytes())
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, 4, len(docs), len(docs) + 1))
        f.write(lengths.tobytes() + pointers.tobytes() + np.arange(len(docs) + 1, dtype=np.int64).tobytes())


def rank_pids(out):
    """{MPI rank: pid} of the running `smoe collect` processes writing `out`."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if b"collect" not in argv or out.encode() not in argv or b"mpirun" in argv[0]:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
            found[int(env.get(b"OMPI_COMM_WORLD_RANK", b"-1"))] = int(pid)
        except OSError:
            continue
    return found


def remove(*paths):
    for f in paths:
        if os.path.exists(f):
            os.remove(f)


def start(cmd):
    """Starts `cmd` in a session of its own (so that its process group can be
    signalled), stderr piped."""
    return subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=mpi_env())


def wait_for_file(p, path, seconds=120):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture(scope="module")
def inputs(workdir):
    """A tiny qwen2_moe checkpoint (a dense layer, a shared expert, 6 experts) and two
    corpora ("code", "prose"), as JSONL and as Megatron indexed datasets ("code" as
    a folder, "prose" as a prefix)."""
    cfg = ref.tiny_config("qwen2_moe")
    model = os.path.join(workdir, "model")
    ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=8), shards=2)
    rng = np.random.default_rng(0)
    corpora, indexed = {}, {}
    for name, n_docs in (("code", 60), ("prose", 45)):
        path = os.path.join(workdir, f"{name}.jsonl")
        docs = [rng.integers(0, cfg["vocab_size"], int(rng.integers(5, 90))).tolist() for _ in range(n_docs)]
        with open(path, "w") as f:
            for d in docs:
                f.write(json.dumps({"input_ids": d}) + "\n")
        corpora[name] = path
        folder = os.path.join(workdir, f"{name}-indexed")
        os.makedirs(folder, exist_ok=True)
        write_indexed(os.path.join(folder, "tokens"), docs)
        indexed[name] = folder if name == "code" else os.path.join(folder, "tokens")
    return dict(model=model, tasks={"jsonl": corpora, "indexed": indexed})


@pytest.fixture(scope="module")
def collect_cmd(smoe, on_ranks, inputs):
    """collect_cmd(ranks, out, *extra, progress="0.5", tasks="jsonl"): the mpirun
    line of a `smoe collect` run."""
    def cmd(ranks, out, *extra, progress="0.5", tasks="jsonl"):
        c = [smoe, "collect", "--model", inputs["model"], "--out", out, "--context", "32", "--batch", "4",
             "--threads", "1", "--sample", "16", "--out-mean", "--seed", "7", "--progress-seconds", progress]
        for name, path in inputs["tasks"][tasks].items():
            c += ["--task", f"{name}={path}"]
        return on_ranks(ranks) + c + list(extra)
    return cmd


@pytest.fixture(scope="module")
def collect(collect_cmd, run):
    """collect(ranks, out, *extra, tasks="jsonl"): runs `smoe collect` to completion
    (exit status 0) and reads what it wrote."""
    def go(ranks, out, *extra, tasks="jsonl"):
        run(collect_cmd(ranks, out, *extra, tasks=tasks), timeout=300)
        return read_collect(out)
    return go


@pytest.fixture(scope="module")
def collected(collect, workdir):
    """collected(name): the run RUNS[name], made once."""
    done = {}

    def get(name):
        if name not in done:
            ranks, extra, tasks = RUNS[name]
            done[name] = collect(ranks, os.path.join(workdir, f"{name}.h5"), *extra, tasks=tasks)
        return done[name]
    return get


@pytest.mark.parametrize("name", list(RUNS))
def test_collect_marks_its_file_complete(collected, name):
    got = collected(name)
    assert got["complete"] == 1, f"{got['path']}: complete flag {got['complete']}, not 1"


@pytest.mark.parametrize("label,base,other", [c[1:] for c in COMPARISONS], ids=[c[0] for c in COMPARISONS])
def test_statistics_do_not_depend_on_ranks_schedule_or_format(collected, label, base, other):
    bad = compare(label, collected(base), collected(other))
    assert not bad, f"{label}: {bad[:5]}"


@pytest.fixture(scope="module", params=SCHEDULES, ids=[f"schedule={s}" for s in SCHEDULES])
def killed(request, collect_cmd, collect, collected, workdir):
    """A run killed with SIGKILL (its whole process group) as soon as its first
    checkpoint is written, then resumed when it could be killed."""
    schedule = request.param
    out = os.path.join(workdir, f"killed-{schedule}.h5")
    work = out + ".work.h5"
    remove(out, work)
    every = "300" if schedule == "default" else "1"
    p = start(collect_cmd(2, out, "--checkpoint-tokens", every, "--schedule", schedule))
    wait_for_file(p, work)
    running = p.poll() is None
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    result = dict(schedule=schedule, killed=running and not os.path.exists(out), running=running,
                  final_before_resume=os.path.exists(out), resumed=None)
    if result["killed"]:
        result["resumed"] = collect(2, out, "--resume", "--schedule", schedule)
        result["work_left"] = os.path.exists(work)
        result["uninterrupted"] = collected(UNINTERRUPTED[schedule])
    return result


def resumed_of(scenario, what):
    if scenario["resumed"] is None:
        pytest.skip(f"not resumed: {what} failed")
    return scenario["resumed"]


def test_run_is_killed_after_its_first_checkpoint(killed):
    assert killed["killed"], (f"{killed['schedule']} schedule: the run ended before it could be killed after its "
                              f"first checkpoint (running {killed['running']}, final file "
                              f"{killed['final_before_resume']})")


def test_killed_run_resumes_to_the_uninterrupted_statistics(killed):
    got = resumed_of(killed, "the kill after the first checkpoint")
    label = f"killed after a checkpoint and resumed ({killed['schedule']} schedule) vs uninterrupted"
    bad = compare(label, killed["uninterrupted"], got, exact=True)
    assert not bad, f"{label}: {bad[:5]}"


def test_killed_run_resumed_file_is_complete(killed):
    got = resumed_of(killed, "the kill after the first checkpoint")
    assert got["complete"] == 1, f"{got['path']}: complete flag {got['complete']}, not 1"


def test_resumed_run_leaves_no_working_file(killed):
    resumed_of(killed, "the kill after the first checkpoint")
    assert not killed["work_left"], f"{killed['schedule']}: working file left after completion"


@pytest.fixture(scope="module")
def rank_killed(collect_cmd, collect, collected, workdir):
    """One rank dies (the OOM killer, a node lost) after the first checkpoint: its
    peers must not wait for it. Resumed when every rank is gone, the launcher failed
    and no final file was written."""
    out = os.path.join(workdir, "rank-killed.h5")
    work = out + ".work.h5"
    remove(out, work)
    p = start(collect_cmd(2, out, "--checkpoint-tokens", "300"))
    wait_for_file(p, work)
    victim = rank_pids(out).get(1)
    if p.poll() is not None or victim is None:
        p.kill()
        return dict(killable=False, resumed=None)
    os.kill(victim, signal.SIGKILL)
    begin = time.monotonic()
    try:
        code = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    while rank_pids(out) and time.monotonic() - begin < 30:
        time.sleep(0.1)
    elapsed, left = time.monotonic() - begin, rank_pids(out)
    final = os.path.exists(out)
    ok = code not in (None, 0) and not left and not final
    print(f"\n{'ok  ' if ok else 'FAIL'} rank 1 killed with SIGKILL: launcher exit {code}, every rank gone "
          f"after {elapsed:.1f} s (ranks left: {sorted(left)}), no final file")
    err = ""
    if not ok:
        os.killpg(p.pid, signal.SIGKILL)
        err = p.stderr.read()[-2000:]
        print(err)
    result = dict(killable=True, code=code, elapsed=elapsed, left=sorted(left), final=final, err=err, resumed=None)
    if ok:
        result["resumed"] = collect(2, out, "--resume")
        result["uninterrupted"] = collected(UNINTERRUPTED["default"])
    return result


def killable(scenario):
    if not scenario["killable"]:
        pytest.skip("rank 1 could not be killed (test_rank_one_is_killed_after_the_first_checkpoint)")
    return scenario


def test_rank_one_is_killed_after_the_first_checkpoint(rank_killed):
    assert rank_killed["killable"], "one rank killed: the run ended before rank 1 could be killed"


def test_one_rank_killed_fails_the_launcher(rank_killed):
    s = killable(rank_killed)
    assert s["code"] not in (None, 0), f"launcher exit {s['code']} after rank 1 was killed\n{s['err']}"


def test_one_rank_killed_ends_every_rank_within_30s(rank_killed):
    s = killable(rank_killed)
    assert not s["left"], f"ranks {s['left']} still running {s['elapsed']:.1f} s after rank 1 was killed\n{s['err']}"


def test_one_rank_killed_writes_no_final_file(rank_killed):
    s = killable(rank_killed)
    assert not s["final"], f"a final file was written though rank 1 was killed\n{s['err']}"


def test_one_rank_killed_resumes_to_the_uninterrupted_statistics(rank_killed):
    got = resumed_of(rank_killed, "ending the job when one rank was killed")
    label = "one rank killed, then resumed vs uninterrupted"
    bad = compare(label, rank_killed["uninterrupted"], got, exact=True)
    assert not bad, f"{label}: {bad[:5]}"


def test_one_rank_killed_resumed_file_is_complete(rank_killed):
    got = resumed_of(rank_killed, "ending the job when one rank was killed")
    assert got["complete"] == 1, f"{got['path']}: complete flag {got['complete']}, not 1"


@pytest.fixture(scope="module")
def signalled(collect_cmd, collect, collected, workdir):
    """SIGUSR1 (Slurm's warning signal) in the second task: checkpoint and exit 3;
    resumed (the first task's totals kept from the working file) when it did."""
    out = os.path.join(workdir, "signalled.h5")
    work = out + ".work.h5"
    remove(out, work)
    p = start(collect_cmd(2, out, "--checkpoint-minutes", "0", progress="0"))
    buf = ""
    while "collect prose:" not in buf and p.poll() is None:
        buf += p.stderr.readline()
    os.killpg(p.pid, signal.SIGUSR1)
    err = p.stderr.read()
    code = p.wait()
    result = dict(code=code, work=os.path.exists(work), final=os.path.exists(out), task=None, err=err[-2000:],
                  resumed=None)
    if result["work"]:
        with h5py.File(work, "r") as f:
            result["task"] = int(f.attrs["task"])
            print(f"\n     checkpointed at task {f.attrs['task']}, step {f.attrs['phase']}")
    ok = code == 3 and result["work"] and not result["final"] and result["task"] == 1
    print(f"\n{'ok  ' if ok else 'FAIL'} SIGUSR1 in the second task: exit {code}, working file kept, no final file")
    if not ok:
        print(result["err"])
    else:
        result["resumed"] = collect(2, out, "--resume")
        result["uninterrupted"] = collected(UNINTERRUPTED["default"])
    return result


def test_sigusr1_exits_with_status_3(signalled):
    assert signalled["code"] == 3, f"exit {signalled['code']} after SIGUSR1\n{signalled['err']}"


def test_sigusr1_keeps_the_working_file(signalled):
    assert signalled["work"], f"no working file after SIGUSR1\n{signalled['err']}"


def test_sigusr1_writes_no_final_file(signalled):
    assert not signalled["final"], f"a final file was written after SIGUSR1\n{signalled['err']}"


def test_sigusr1_checkpoints_in_the_second_task(signalled):
    if not signalled["work"]:
        pytest.skip("no working file (test_sigusr1_keeps_the_working_file)")
    assert signalled["task"] == 1, f"checkpointed at task {signalled['task']}, not 1 (the second)"


def test_signalled_run_resumes_to_the_uninterrupted_statistics(signalled):
    got = resumed_of(signalled, "the checkpoint on SIGUSR1")
    label = "signalled and resumed vs uninterrupted"
    bad = compare(label, signalled["uninterrupted"], got, exact=True)
    assert not bad, f"{label}: {bad[:5]}"


def test_signalled_run_resumed_file_is_complete(signalled):
    got = resumed_of(signalled, "the checkpoint on SIGUSR1")
    assert got["complete"] == 1, f"{got['path']}: complete flag {got['complete']}, not 1"
