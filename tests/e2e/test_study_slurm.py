"""The study through a real Slurm on this machine (env/slurm-up.sh, stopped again
by env/slurm-down.sh when the module ends, whatever the outcome): a reduced study
submitted by slurm/submit must finish with every job COMPLETED and the report
holding the expected rows (20) beside thresholds.csv and the figures; then a
running collect job, sent SIGUSR1 as Slurm's warning signal would be, must
checkpoint, requeue itself, and finish with statistics equal to an uninterrupted
run's; then slurm/nightly must run tonight's study, keep its results per date,
write the trend report after it, and leave tomorrow's run pending for 03:00."""

import getpass
import os
import shutil
import time

import h5py
import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

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

ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def read_text(path, **kw):
    with open(path, **kw) as f:
        return f.read()


def datasets(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def slurm(workdir, smoe, run):
    """A one-node Slurm under WORKDIR/slurm for this module; at the end, even when a
    test or this setup fails, its jobs are cancelled and its daemons stopped. Yields
    the environment the Slurm commands and slurm/ scripts need (SLURM_CONF, SMOE),
    job_state(job) (its state and restart count) and wait_for(job, seconds) (its
    final state, or TIMEOUT_WAITING)."""
    slurm_dir = os.path.join(workdir, "slurm")
    env = {"SLURM_CONF": f"{slurm_dir}/slurm.conf", "SMOE": smoe}
    up = False
    try:
        run(["bash", f"{ROOT}/env/slurm-up.sh", slurm_dir])
        up = True

        def job_state(job):
            out = run(["scontrol", "show", "job", job], expect=None, env=env).stdout
            fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
            return fields.get("JobState", "?"), int(fields.get("Restarts", "0"))

        def wait_for(job, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                state, _ = job_state(job)
                if state in ENDED:
                    return state
                time.sleep(2)
            return "TIMEOUT_WAITING"

        yield dict(env=env, job_state=job_state, wait_for=wait_for)
    finally:
        if up:
            # Jobs a failed test left behind: their steps would outlive slurmd.
            run(["scancel", f"--user={getpass.getuser()}"], expect=None, env=env)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and run(["squeue", "-h"], expect=None, env=env).stdout.strip():
                time.sleep(1)
        down = run(["bash", f"{ROOT}/env/slurm-down.sh", slurm_dir], expect=None)
        print(f"\n{down.stderr.strip()}")


@pytest.fixture(scope="module")
def submitted(slurm, workdir, run):
    """The reduced study (200 training records, 2000 collected tokens) submitted
    by slurm/submit."""
    study = os.path.join(workdir, "study.ini")
    with open(study, "w") as f:
        f.write(STUDY.format(train=200, max_tokens=2000))
    work = os.path.join(workdir, "study")
    p = run(["bash", f"{ROOT}/slurm/submit", study, "--workdir", work], expect=None, env=slurm["env"])
    return dict(p=p, study=study, work=work)


@pytest.fixture(scope="module")
def finished(submitted, slurm):
    """The study's jobs once the last (the report) has ended, and the report."""
    work = submitted["work"]
    jobs_file = os.path.join(work, "jobs.txt")
    assert os.path.exists(jobs_file), f"slurm/submit wrote no {jobs_file}\n{submitted['p'].stderr[-2000:]}"
    jobs = read_text(jobs_file).split()
    state = slurm["wait_for"](jobs[-1], 900)
    states = [slurm["job_state"](j)[0] for j in jobs]
    report = os.path.join(work, "report")
    csv = os.path.join(report, "report.csv")
    rows = read_text(csv).strip().splitlines()[1:] if os.path.exists(csv) else None
    print(f"\n{len(jobs)} jobs (train, collect, cluster array, prune+eval array, report): {sorted(set(states))}; "
          f"the last {state}; report.csv: {'missing' if rows is None else len(rows)} rows")
    return dict(jobs=jobs, state=state, states=states, rows=rows, report=report)


@pytest.fixture(scope="module")
def requeued(finished, submitted, slurm, smoe, run):
    """Requeue: a longer collect (2000 training records, no token cap: about 20 s of
    work, ample time for the signal to land mid-run) submitted with sbatch
    --requeue, sent SIGUSR1 once smoe collect runs; then the same job script run
    here (SMOE_LOCAL=1) without interruption."""
    study, work, env = submitted["study"], submitted["work"], slurm["env"]
    with open(study, "w") as f:
        f.write(STUDY.format(train=2000, max_tokens=0))
    shutil.rmtree(os.path.join(work, "suite"), ignore_errors=True)
    run([smoe, "data", "synth", "--out", os.path.join(work, "suite"), "--train", "2000", "--eval", "5"])
    stats = os.path.join(work, "stats", "e4.h5")
    os.remove(stats)
    job_env = dict(env, SMOE_ROOT=ROOT, STUDY=study, WORK=work, EXPERTS="4")
    job = run(["sbatch", "--parsable", "--export=ALL", "--requeue", "--open-mode=append", "-n", "2",
               "--cpus-per-task=1", "--mem-per-cpu=1G", f"--output={work}/logs/requeue-%j.out",
               f"{ROOT}/slurm/collect.sbatch"], env=job_env).stdout.strip()
    # The signal goes to the job once smoe collect itself runs (its first log line).
    deadline = time.monotonic() + 300
    log_path = f"{work}/logs/requeue-{job}.out"
    while time.monotonic() < deadline and not (
            os.path.exists(log_path) and "collect: " in read_text(log_path, errors="replace")):
        time.sleep(0.2)
    run(["scancel", "--batch", "--signal=USR1", job], env=env)
    state = slurm["wait_for"](job, 600)
    _, restarts = slurm["job_state"](job)
    log = read_text(log_path) if os.path.exists(log_path) else ""
    print(f"\ncollect job {job} sent SIGUSR1: {state}, restarts {restarts}, "
          f"{'resumed' if 'resuming from' in log else 'no resume in its log'}")
    stats_requeued = datasets(stats) if os.path.exists(stats) else None
    if stats_requeued is not None:
        os.rename(stats, stats + ".requeued")
    local = run(["bash", f"{ROOT}/slurm/collect.sbatch"], expect=None, env=dict(job_env, SMOE_LOCAL="1"))
    stats_local = datasets(stats) if local.returncode == 0 else None
    return dict(job=job, state=state, restarts=restarts, log=log, requeued=stats_requeued, local=local,
                uninterrupted=stats_local)


@pytest.fixture(scope="module")
def nightly(requeued, submitted, slurm, workdir, run):
    """slurm/nightly with the reduced study at 03:00: tonight's study and the trend
    report after it, then tomorrow's run (cancelled once looked at)."""
    study, env = submitted["study"], slurm["env"]
    with open(study, "w") as f:
        f.write(STUDY.format(train=200, max_tokens=2000))
    nights = os.path.join(workdir, "nightly")
    p = run(["bash", f"{ROOT}/slurm/nightly", study, "--workdir", nights, "--at", "03:00"], expect=None, env=env)
    next_file = os.path.join(nights, "next.jobid")
    nxt = read_text(next_file).strip() if os.path.exists(next_file) else ""
    shown = run(["scontrol", "show", "job", nxt], expect=None, env=env).stdout if nxt else ""
    tomorrow = run(["date", "-d", "tomorrow", "+%Y-%m-%d"]).stdout.strip()
    if nxt:
        run(["scancel", nxt], expect=None, env=env)
    tonight = [d for d in os.listdir(nights) if d[:2] == "20"] if os.path.isdir(nights) else []
    report = read_text(os.path.join(nights, tonight[0], "report.jobid")).strip() if tonight else ""
    slurm["wait_for"](report, 900)
    trend = os.path.join(nights, "trend", "report.md")
    deadline = time.monotonic() + 120
    while not os.path.exists(trend) and time.monotonic() < deadline:
        time.sleep(2)
    print(f"\nnightly: next run {nxt or '(none)'}, results per date {tonight}, trend report "
          f"{'written' if os.path.exists(trend) else 'missing'}")
    return dict(p=p, next=nxt, shown=shown, tomorrow=tomorrow, tonight=tonight, trend=os.path.exists(trend))


def test_submit_submits_the_study(submitted):
    p = submitted["p"]
    assert p.returncode == 0, f"slurm/submit exited {p.returncode}\n{p.stderr[-2000:]}"


def test_last_study_job_completes(finished):
    assert finished["state"] == "COMPLETED", f"the last job (the report) ended {finished['state']}"


def test_every_study_job_completes(finished):
    assert all(s == "COMPLETED" for s in finished["states"]), (
        f"{len(finished['jobs'])} jobs: {dict(zip(finished['jobs'], finished['states']))}")


def test_report_has_a_row_per_task_and_model(finished):
    # (4 tasks and all tasks pooled) x (4 experts scratch, 2 experts scratch, frequency and uncurl at factor 2)
    rows = finished["rows"]
    assert rows is not None and len(rows) == 20, (
        f"report.csv: {'missing' if rows is None else f'{len(rows)} rows'} (20 rows expected)")


def test_report_writes_thresholds_and_figures(finished):
    figures = [f"{n}.{x}" for n in ("quality", "thresholds", "pareto") for x in ("png", "svg")]
    missing = [f for f in figures + ["thresholds.csv"] if not os.path.exists(os.path.join(finished["report"], f))]
    assert not missing, f"missing from {finished['report']}: {missing}"


def test_signalled_collect_job_completes(requeued):
    assert requeued["state"] == "COMPLETED", f"collect job {requeued['job']} ended {requeued['state']}"


def test_signalled_collect_job_is_requeued(requeued):
    assert requeued["restarts"] >= 1, f"collect job {requeued['job']}: restarts {requeued['restarts']}"


def test_requeued_collect_job_resumes_from_its_checkpoint(requeued):
    assert "resuming from" in requeued["log"], f"no 'resuming from' in the log\n{requeued['log'][-2000:]}"


def test_uninterrupted_collect_runs_here(requeued):
    local = requeued["local"]
    assert local.returncode == 0, (f"slurm/collect.sbatch with SMOE_LOCAL=1 exited {local.returncode}\n"
                                   f"{local.stderr[-2000:]}")


def test_requeued_statistics_equal_an_uninterrupted_run(requeued):
    a, b = requeued["requeued"], requeued["uninterrupted"]
    if b is None:
        pytest.skip("no uninterrupted run (test_uninterrupted_collect_runs_here)")
    assert a is not None, f"the requeued job wrote no statistics (it ended {requeued['state']})"
    differ = sorted(set(a) ^ set(b)) + [k for k in sorted(set(a) & set(b)) if not np.array_equal(a[k], b[k])]
    assert set(a) == set(b) and all(np.array_equal(a[k], v) for k, v in b.items()), (
        f"the requeued job's statistics differ from an uninterrupted run's: {differ[:10]}")


def test_nightly_submits_tonights_study(nightly):
    p = nightly["p"]
    assert p.returncode == 0, f"slurm/nightly exited {p.returncode}\n{p.stderr[-2000:]}"


def test_next_nights_run_is_pending(nightly):
    assert "JobState=PENDING" in nightly["shown"], f"next night's job {nightly['next']!r}:\n{nightly['shown']}"


def test_next_nights_run_begins_tomorrow_at_3(nightly):
    when = f"StartTime={nightly['tomorrow']}T03:00:00"
    assert when in nightly["shown"], f"no {when} (sbatch --begin) in job {nightly['next']!r}:\n{nightly['shown']}"


def test_nightly_keeps_results_per_date(nightly):
    assert len(nightly["tonight"]) == 1, f"results per date: {nightly['tonight']}"


def test_nightly_writes_the_trend_report_after_tonights_run(nightly):
    assert nightly["trend"], "no trend/report.md within 120 s of tonight's report job"
