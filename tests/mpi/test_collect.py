#!/usr/bin/python3
"""`smoe collect` under mpirun: the statistics do not depend on the rank count or
the schedule, and a killed or signalled run resumes to the same file.

  1, 2 and 4 ranks, default schedule; 1 and 2 ranks, layerwise schedule:
    integer datasets bit-equal, float datasets within 1e-9 relative
  kill -9 after the first checkpoint, then --resume: equal to an uninterrupted run
  kill -9 of one rank (not the launcher) after the first checkpoint: every rank
    gone within 30 s, exit status non-zero; then --resume: equal to an uninterrupted run
  SIGUSR1: checkpoint, exit status 3; then --resume: equal to an uninterrupted run"""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import struct

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
import hf_reference as ref  # noqa: E402
from checks import script_args  # noqa: E402

failures = []
REL = 1e-9


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        if f.attrs["complete"] != 1:
            failures.append(f"{path}: complete flag not set")
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        for name, g in f["tasks"].items():
            for key in ("tokens", "sequences"):
                out[f"tasks/{name}/@{key}"] = np.array(g.attrs[key])
            for l, lg in g["layers"].items():
                out[f"tasks/{name}/layers/{l}/@tokens"] = np.array(lg.attrs["tokens"])
    return out


def compare(label, a, b, exact=False):
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
    ok = not bad
    print(f"{'ok  ' if ok else 'FAIL'} {label}: {len(a)} datasets, max relative float difference {worst:.3g}"
          + ("" if ok else f"; {bad[:5]}"))
    if not ok:
        failures.append(label)


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


def main():
    a = script_args(mpirun=True, fresh=False)
    w = a.workdir
    cfg = ref.tiny_config("qwen2_moe")  # a dense layer, a shared expert, 6 experts
    model = os.path.join(w, "model")
    ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=8), shards=2)
    rng = np.random.default_rng(0)
    corpora, indexed = {}, {}
    for name, n_docs in (("code", 60), ("prose", 45)):
        path = os.path.join(w, f"{name}.jsonl")
        docs = [rng.integers(0, cfg["vocab_size"], int(rng.integers(5, 90))).tolist() for _ in range(n_docs)]
        with open(path, "w") as f:
            for d in docs:
                f.write(json.dumps({"input_ids": d}) + "\n")
        corpora[name] = path
        # The same records as a Megatron indexed dataset: "code" as a folder, "prose" as a prefix.
        folder = os.path.join(w, f"{name}-indexed")
        os.makedirs(folder, exist_ok=True)
        write_indexed(os.path.join(folder, "tokens"), docs)
        indexed[name] = folder if name == "code" else os.path.join(folder, "tokens")

    def cmd(ranks, out, *extra, progress="0.5", tasks=corpora):
        c = [a.smoe, "collect", "--model", model, "--out", out, "--context", "32", "--batch", "4", "--threads", "1",
             "--sample", "16", "--out-mean", "--seed", "7", "--progress-seconds", progress]
        for name, path in tasks.items():
            c += ["--task", f"{name}={path}"]
        return [a.mpirun, "--oversubscribe", "--bind-to", "none", "-n", str(ranks)] + c + list(extra)

    def run(ranks, out, *extra, tasks=corpora):
        p = subprocess.run(cmd(ranks, out, *extra, tasks=tasks), capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            sys.exit(f"FAIL: collect with {ranks} ranks exited {p.returncode}\n{p.stderr[-3000:]}")
        return datasets(out)

    base = run(1, os.path.join(w, "p1.h5"))
    for ranks in (2, 4):
        compare(f"{ranks} ranks vs 1 rank (default schedule)", base, run(ranks, os.path.join(w, f"p{ranks}.h5")))
    for ranks in (1, 2):
        compare(f"{ranks} rank(s), layerwise schedule vs default", base,
                run(ranks, os.path.join(w, f"lw{ranks}.h5"), "--schedule", "layerwise"))
    cap1 = run(1, os.path.join(w, "cap1.h5"), "--max-tokens", "1000")
    compare("--max-tokens 1000 on 2 ranks vs 1 rank", cap1, run(2, os.path.join(w, "cap2.h5"), "--max-tokens", "1000"))
    # The same records as Megatron indexed datasets (a folder, a prefix): the same statistics.
    for ranks in (1, 3):
        compare(f"indexed datasets vs JSONL, {ranks} rank(s)", base,
                run(ranks, os.path.join(w, f"idx{ranks}.h5"), tasks=indexed))
    compare("--max-tokens 1000, indexed datasets on 3 ranks vs JSONL on 1", cap1,
            run(3, os.path.join(w, "idxcap.h5"), "--max-tokens", "1000", tasks=indexed))

    # Kill -9 after the first checkpoint, then resume.
    uninterrupted = run(2, os.path.join(w, "whole.h5"))
    for schedule in ("default", "layerwise"):
        out = os.path.join(w, f"killed-{schedule}.h5")
        work = out + ".work.h5"
        for f in (out, work):
            if os.path.exists(f):
                os.remove(f)
        every = "300" if schedule == "default" else "1"
        p = subprocess.Popen(cmd(2, out, "--checkpoint-tokens", every, "--schedule", schedule),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 120
        while not os.path.exists(work) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        killed = p.poll() is None
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        if not killed or os.path.exists(out):
            failures.append(f"{schedule}: the run ended before it could be killed after its first checkpoint")
            continue
        got = run(2, out, "--resume", "--schedule", schedule)
        ref_run = uninterrupted if schedule == "default" else run(2, os.path.join(w, "whole-lw.h5"),
                                                                  "--schedule", "layerwise")
        compare(f"killed after a checkpoint and resumed ({schedule} schedule) vs uninterrupted", ref_run, got,
                exact=True)
        if os.path.exists(work):
            failures.append(f"{schedule}: working file left after completion")

    # One rank dies (the OOM killer, a node lost): its peers must not wait for it.
    out = os.path.join(w, "rank-killed.h5")
    work = out + ".work.h5"
    for f in (out, work):
        if os.path.exists(f):
            os.remove(f)
    p = subprocess.Popen(cmd(2, out, "--checkpoint-tokens", "300"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(work) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = rank_pids(out).get(1)
    if p.poll() is not None or victim is None:
        failures.append("one rank killed: the run ended before rank 1 could be killed")
        p.kill()
    else:
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        try:
            code = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        while rank_pids(out) and time.monotonic() - start < 30:
            time.sleep(0.1)
        elapsed, left = time.monotonic() - start, rank_pids(out)
        ok = code not in (None, 0) and not left and not os.path.exists(out)
        print(f"{'ok  ' if ok else 'FAIL'} rank 1 killed with SIGKILL: launcher exit {code}, every rank gone "
              f"after {elapsed:.1f} s (ranks left: {sorted(left)}), no final file")
        if not ok:
            os.killpg(p.pid, signal.SIGKILL)
            print(p.stderr.read()[-2000:])
            failures.append("one rank killed")
        else:
            compare("one rank killed, then resumed vs uninterrupted", uninterrupted, run(2, out, "--resume"),
                    exact=True)

    # SIGUSR1 (Slurm's warning signal) in the second task: checkpoint and exit 3;
    # resume, the first task's totals kept from the working file.
    out = os.path.join(w, "signalled.h5")
    for f in (out, out + ".work.h5"):
        if os.path.exists(f):
            os.remove(f)
    p = subprocess.Popen(cmd(2, out, "--checkpoint-minutes", "0", progress="0"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    buf = ""
    while "collect prose:" not in buf and p.poll() is None:
        buf += p.stderr.readline()
    os.killpg(p.pid, signal.SIGUSR1)
    err = p.stderr.read()
    code = p.wait()
    ok = code == 3 and os.path.exists(out + ".work.h5") and not os.path.exists(out)
    if ok:
        with h5py.File(out + ".work.h5", "r") as f:
            ok = f.attrs["task"] == 1
            print(f"     checkpointed at task {f.attrs['task']}, step {f.attrs['phase']}")
    print(f"{'ok  ' if ok else 'FAIL'} SIGUSR1 in the second task: exit {code}, working file kept, no final file")
    if not ok:
        print(err[-2000:])
        failures.append("SIGUSR1")
    else:
        compare("signalled and resumed vs uninterrupted", uninterrupted, run(2, out, "--resume"), exact=True)

    if failures:
        sys.exit(f"{len(failures)} failed: {failures}")
    print("mpi.collect: passed")


if __name__ == "__main__":
    main()
