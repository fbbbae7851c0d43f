#!/usr/bin/python3
"""The study through a real Slurm on this machine (env/slurm-up.sh): a reduced
study submitted by slurm/submit must finish with every job COMPLETED and the
report holding the expected rows; then a running collect job, sent SIGUSR1 as
Slurm's warning signal would be, must checkpoint, requeue itself, and finish with
statistics equal to an uninterrupted run's."""

import argparse
import os
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from checks import check, finish  # noqa: E402

STUDY = """
[study]
name = e2e
seed = 0
[data]
train = {train}
eval = 5
[train]
experts = 4
top_k = 2
hidden = 32
layers = 2
heads = 4
kv_heads = 2
ffn = 48
context = 32
batch = 8
steps = 20
ranks = 2
[collect]
max_tokens = {max_tokens}
sample = 16
ranks = 2
[cluster]
methods = frequency, uncurl
factors = 2
[eval]
ranks = 1
[slurm]
time = 00:20:00
cpus_per_rank = 1
mem_per_cpu = 1G
array_throttle = 4
signal_seconds = 30
"""


def job_state(env, job):
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=env).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return fields.get("JobState", "?"), int(fields.get("Restarts", "0"))


def wait_for(env, job, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, _ = job_state(env, job)
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return state
        time.sleep(2)
    return "TIMEOUT_WAITING"


def datasets(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    w = os.path.abspath(a.workdir)
    subprocess.run(["rm", "-rf", w], check=True)
    os.makedirs(w)
    slurm_dir = os.path.join(w, "slurm")
    up = subprocess.run(["bash", f"{root}/env/slurm-up.sh", slurm_dir], capture_output=True, text=True)
    if up.returncode != 0:
        sys.exit(f"FAIL: env/slurm-up.sh\n{up.stderr[-2000:]}")
    env = dict(os.environ, SLURM_CONF=f"{slurm_dir}/slurm.conf", SMOE=os.path.abspath(a.smoe))
    try:
        study = os.path.join(w, "study.ini")
        with open(study, "w") as f:
            f.write(STUDY.format(train=200, max_tokens=2000))
        work = os.path.join(w, "study")
        p = subprocess.run(["bash", f"{root}/slurm/submit", study, "--workdir", work], capture_output=True, text=True,
                           env=env)
        check(p.returncode == 0, "slurm/submit submits the study")
        jobs = open(os.path.join(work, "jobs.txt")).read().split()
        state = wait_for(env, jobs[-1], 900)
        states = [job_state(env, j)[0] for j in jobs]
        check(state == "COMPLETED" and all(s == "COMPLETED" for s in states),
              f"{len(jobs)} jobs (train, collect, cluster array, prune+eval array, report): {sorted(set(states))}")
        rows = open(os.path.join(work, "report", "report.csv")).read().strip().splitlines()[1:]
        # (4 tasks and all tasks pooled) x (4 experts scratch, 2 experts scratch, frequency and uncurl at factor 2)
        figures = [f"{n}.{x}" for n in ("quality", "thresholds", "pareto") for x in ("png", "svg")]
        check(len(rows) == 20 and all(os.path.exists(os.path.join(work, "report", f)) for f in figures + ["thresholds.csv"]),
              f"report.csv has {len(rows)} rows (20 expected); thresholds.csv and the figures exist")

        # Requeue: a longer collect, signalled while it runs.
        with open(study, "w") as f:
            f.write(STUDY.format(train=8000, max_tokens=0))
        subprocess.run(["rm", "-rf", os.path.join(work, "suite")], check=True)
        subprocess.run([a.smoe, "data", "synth", "--out", os.path.join(work, "suite"), "--train", "8000", "--eval", "5"],
                       check=True, capture_output=True)
        stats = os.path.join(work, "stats", "e4.h5")
        os.remove(stats)
        job = subprocess.run(["sbatch", "--parsable", "--export=ALL", "--requeue", "--open-mode=append", "-n", "2", "--cpus-per-task=1",
                              "--mem-per-cpu=1G", f"--output={work}/logs/requeue-%j.out", f"{root}/slurm/collect.sbatch"],
                             capture_output=True, text=True, check=True,
                             env=dict(env, SMOE_ROOT=root, STUDY=study, WORK=work, EXPERTS="4")).stdout.strip()
        # The signal goes to the job once smoe collect itself runs (its first log line).
        deadline = time.monotonic() + 300
        log_path = f"{work}/logs/requeue-{job}.out"
        while time.monotonic() < deadline and not (
                os.path.exists(log_path) and "collect: " in open(log_path, errors="replace").read()):
            time.sleep(0.2)
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True, env=env)
        state = wait_for(env, job, 600)
        _, restarts = job_state(env, job)
        log = open(f"{work}/logs/requeue-{job}.out").read() if os.path.exists(f"{work}/logs/requeue-{job}.out") else ""
        check(state == "COMPLETED" and restarts >= 1 and "resuming from" in log,
              f"collect job sent SIGUSR1: checkpointed, requeued (restarts {restarts}), resumed, {state}")
        requeued = datasets(stats)
        os.rename(stats, stats + ".requeued")
        local = subprocess.run(["bash", f"{root}/slurm/collect.sbatch"], capture_output=True, text=True,
                               env=dict(env, SMOE_ROOT=root, STUDY=study, WORK=work, EXPERTS="4", SMOE_LOCAL="1"))
        same = local.returncode == 0 and set(requeued) == set(datasets(stats)) and all(
            np.array_equal(requeued[k], v) for k, v in datasets(stats).items())
        check(same, "the requeued job's statistics equal an uninterrupted run's")

        # Nightly: tonight's study, a trend report after it, and the same again tomorrow.
        with open(study, "w") as f:
            f.write(STUDY.format(train=200, max_tokens=2000))
        nights = os.path.join(w, "nightly")
        p = subprocess.run(["bash", f"{root}/slurm/nightly", study, "--workdir", nights, "--at", "03:00"],
                           capture_output=True, text=True, env=env)
        check(p.returncode == 0, "slurm/nightly submits tonight's study")
        nxt = open(os.path.join(nights, "next.jobid")).read().strip()
        out = subprocess.run(["scontrol", "show", "job", nxt], capture_output=True, text=True, env=env).stdout
        tomorrow = subprocess.run(["date", "-d", "tomorrow", "+%Y-%m-%d"], capture_output=True, text=True).stdout.strip()
        check("JobState=PENDING" in out and f"StartTime={tomorrow}T03:00:00" in out,
              f"the next night's run waits for {tomorrow}T03:00 (sbatch --begin)")
        subprocess.run(["scancel", nxt], env=env)
        tonight = [d for d in os.listdir(nights) if d[:2] == "20"]
        report = open(os.path.join(nights, tonight[0], "report.jobid")).read().strip() if tonight else ""
        wait_for(env, report, 900)
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(nights, "trend", "report.md")) and time.monotonic() < deadline:
            time.sleep(2)
        check(len(tonight) == 1 and os.path.exists(os.path.join(nights, "trend", "report.md")),
              f"results kept per date ({tonight}), the trend report written after tonight's run")
    finally:
        subprocess.run(["bash", f"{root}/env/slurm-down.sh", slurm_dir], capture_output=True)
    finish("e2e.study-slurm")


if __name__ == "__main__":
    main()
