#!/usr/bin/python3
"""`smoe collect` and bad input: each case exits 2 with a message naming the file
or option and the fault, and leaves nothing under the output's final name."""

import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402
from checks import script_args  # noqa: E402

failures = []


def main():
    a = script_args(mpirun=True)
    w = a.workdir
    cfg = ref.tiny_config("olmoe")
    model = os.path.join(w, "model")
    ref.save_checkpoint(model, cfg, ref.random_weights(cfg, seed=2), shards=1)
    good = os.path.join(w, "good.jsonl")
    with open(good, "w") as f:
        for i in range(6):
            f.write(json.dumps({"text": f"document number {i} of a small corpus"}) + "\n")
    out = os.path.join(w, "stats.h5")

    def corpus(name, text):
        path = os.path.join(w, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def case(name, args, needles, ranks=0):
        cmd = [a.smoe, "collect", "--model", model, "--out", out, "--threads", "1"] + args
        if ranks:
            cmd = [a.mpirun, "--oversubscribe", "-n", str(ranks)] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        # The working file (and its temporary, from the run killed below) is not output.
        left = [f for f in os.listdir(w) if f.startswith("stats.h5") and not f.startswith("stats.h5.work.h5")]
        ok = p.returncode == 2 and all(n in p.stderr for n in needles) and not left
        last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {p.returncode}: {last[:200]}")
        if not ok:
            failures.append(name)
            print(p.stderr[-1500:])

    case("task without a file", ["--task", "qa"], ["--task must be NAME=FILE", "'qa'"])
    case("task named twice", ["--task", f"a={good}", "--task", f"a={good}"], ["given twice"])
    case("missing corpus", ["--task", f"a={w}/none.jsonl"], [f"{w}/none.jsonl", "cannot open"])
    case("bad schedule", ["--task", f"a={good}", "--schedule", "fast"], ["--schedule", "fast"])
    case("negative sample", ["--task", f"a={good}", "--sample", "-3"], ["--sample"])
    bad = corpus("range.jsonl", '{"input_ids": [1, 2]}\n{"input_ids": [5, 320]}\n')
    case("token id out of range on rank 1 of 2", ["--task", f"a={bad}"], [f"{bad}:2", "token id 320"], ranks=2)
    bad = corpus("empty.jsonl", "\n")
    case("empty corpus", ["--task", f"a={good}", "--task", f"b={bad}"], [bad, "no records"])
    missing_model = os.path.join(w, "no-model")
    p = subprocess.run([a.smoe, "collect", "--model", missing_model, "--task", f"a={good}", "--out", out],
                       capture_output=True, text=True)
    ok = p.returncode == 2 and missing_model in p.stderr
    print(f"{'ok  ' if ok else 'FAIL'} missing model: exit {p.returncode}")
    if not ok:
        failures.append("missing model")

    # A working file from another run is refused on --resume.
    work = out + ".work.h5"
    p = subprocess.run([a.smoe, "collect", "--model", model, "--task", f"a={good}", "--out", out, "--threads", "1",
                        "--checkpoint-tokens", "1"], capture_output=True, text=True)
    # The run completed and removed its working file; make one with another corpus and a stop signal.
    other = corpus("other.jsonl", "".join(json.dumps({"text": "x" * 50}) + "\n" for _ in range(400)))
    proc = subprocess.Popen([a.smoe, "collect", "--model", model, "--task", f"a={other}", "--out", out,
                             "--threads", "1", "--checkpoint-tokens", "1"], stderr=subprocess.PIPE, text=True)
    while not os.path.exists(work) and proc.poll() is None:
        pass
    proc.send_signal(signal.SIGTERM)  # it checkpoints once more and exits 3, its temporaries removed
    proc.wait()
    os.remove(out) if os.path.exists(out) else None
    if os.path.exists(work):
        case("--resume with another run's working file", ["--task", f"a={good}", "--resume"],
             [work, "written for another model, corpus or options"])
        case("--resume with another rank count", ["--task", f"a={other}", "--resume"],
             [work, "written by 1 ranks"], ranks=2)
    else:
        failures.append("could not make a working file to resume from")
    if failures:
        sys.exit(f"{len(failures)} failed")
    print("reference.collect-cli: passed")


if __name__ == "__main__":
    main()
