#!/usr/bin/python3
"""Hostile inputs: what a malicious or careless user throws at every job. No input
may run a command, overwrite or delete what the job did not create, crash, hang,
or leave a temporary behind.

Every case runs one job in a folder of its own and checks:
- the exit status (2 for bad input, 0 where the input is odd but fine, 3 when stopped);
- the message names the file or option and the fault, and stays short;
- nothing is left under the output's name (failures) and no temporary (*.tmp.*) anywhere;
- the inputs are byte for byte what they were;
- no file named PWNED appeared (the injected commands would create one).

  /usr/bin/python3 tests/reliability/test_hostile.py --smoe build/smoe --workdir DIR"""

import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "reference"))
from checks import check, finish  # noqa: E402
from inputs import first_tensor, prepare, rewrite_header, shard, write  # noqa: E402

DEEP = 1_000_000  # JSON nesting that used to overflow the stack


def deep_json(n=DEEP):
    return "[" * n + "]" * n


def tree_digest(paths):
    """sha256 of every file under the given files and folders (symlinks by their target name)."""
    out = {}
    for p in paths:
        items = [p] if not os.path.isdir(p) or os.path.islink(p) else \
            [os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs]
        for f in items:
            if os.path.islink(f):
                out[f] = "link:" + os.readlink(f)
            elif os.path.isfile(f):
                with open(f, "rb") as fh:
                    out[f] = hashlib.sha256(fh.read()).hexdigest()
            elif os.path.exists(f):
                out[f] = "special"
    return out


class Case:
    def __init__(self, name, args, status=2, words=(), out=None, inputs=(), env=None, after=None, signal_after=None,
                 out_kept=False):
        self.name, self.args, self.status, self.words = name, args, status, list(words)
        self.out, self.inputs, self.env, self.after = out, list(inputs), env or {}, after
        self.signal_after, self.out_kept = signal_after, out_kept


def cases(g, d, smoe):
    """Yields the cases; `d(name)` makes a fresh folder for one."""
    # ---- 1. no shell: data never reaches a shell or gnuplot as code
    c = d("report-quote-in-out")
    res = os.path.join(c, "results")
    os.makedirs(res)
    results = {"results": {"t": {"perplexity,none": 3.0}},
               "samples": {"t": {"text": {"line": [1, 2, 3], "nll": [3.0, 4.0, 2.0], "tokens": [2, 2, 2],
                                          "bytes": [3, 3, 3]}}},
               "smoe": {"job": "eval", "experts_per_layer": [4], "labels": {"experts": "4", "factor": "1"}}}
    for i, method in enumerate(["x'.system('touch PWNED').'", "`touch PWNED`", "a\nsystem 'touch PWNED'", "scratch"]):
        r = json.loads(json.dumps(results))
        r["smoe"]["labels"].update(method=method, experts=str(4 if method != "scratch" else 2),
                                   factor="2" if method != "scratch" else "1")
        write(os.path.join(res, f"r{i}.results.json"), json.dumps(r))
    out = os.path.join(c, "it's $(touch PWNED) `touch PWNED`")
    yield Case("report: quote and $( ) in --out, gnuplot code in labels", ["report", "--results", res, "--out", out],
               status=0, out=out, inputs=[res], out_kept=True,
               after=lambda: [check_file(os.path.join(out, f"{n}.png"), b"\x89PNG")
                              for n in ("quality", "thresholds", "pareto")])

    # ---- 2. outputs that cannot destroy inputs
    c = d("prune-over-folder")
    other = os.path.join(c, "precious")
    os.makedirs(other)
    write(os.path.join(other, "thesis.tex"), "years of work")
    yield Case("prune --out an unrelated folder", ["prune", "--model", g.model, "--plan", g.plan, "--out", other],
               words=["--out", other, "exists", "--overwrite"], inputs=[other, g.model, g.plan])
    yield Case("prune --out the model itself", ["prune", "--model", g.model, "--plan", g.plan, "--out", g.model + "/"],
               words=["--out", "input", g.model], inputs=[g.model, g.plan])
    yield Case("prune --out a parent of the inputs", ["prune", "--model", g.model, "--plan", g.plan,
                                                      "--out", os.path.dirname(g.model)],
               words=["--out", "holds the input"], inputs=[g.model, g.plan])
    yield Case("prune --out inside the model", ["prune", "--model", g.model, "--plan", g.plan,
                                                "--out", os.path.join(g.model, "pruned")],
               words=["--out", "lies inside the input"], inputs=[g.model, g.plan], out=os.path.join(g.model, "pruned"))
    c = d("collect-over-corpus")
    corpus = shutil.copy(g.corpus, os.path.join(c, "corpus.jsonl"))
    yield Case("collect --out the corpus", ["collect", "--model", g.model, "--task", f"t={corpus}", "--out", corpus,
                                            "--threads", "1"], words=["--out", corpus, "input"], inputs=[corpus])
    c = d("collect-work-file")
    theirs = write(os.path.join(c, "stats.h5.work.h5"), "someone else's file")
    yield Case("collect whose working file name holds a file of another program", [
        "collect", "--model", g.model, "--task", f"t={g.corpus}", "--out", os.path.join(c, "stats.h5"), "--threads", "1"],
        words=[theirs, "not a working file"], inputs=[theirs], out=os.path.join(c, "stats.h5"))
    c = d("cluster-over-stats")
    stats = shutil.copy(g.stats, os.path.join(c, "stats.h5"))
    yield Case("cluster --out the statistics", ["cluster", "--stats", stats, "--task", "t", "--method", "frequency",
                                                "--factor", "2", "--out", stats], words=["--out", "input"],
               inputs=[stats])
    c = d("logits-symlink")
    target = write(os.path.join(c, "target.txt"), "keep me")
    link = os.path.join(c, "logits.safetensors")
    os.symlink(target, link)
    yield Case("score --logits onto a symlink", ["score", "--model", g.model, "--corpus", g.corpus, "--threads", "1",
                                                 "--logits", link], words=["--logits", "symbolic link"],
               inputs=[target, link], out_kept=True)
    yield Case("score --logits onto a device", ["score", "--model", g.model, "--corpus", g.corpus, "--threads", "1",
                                                "--logits", "/dev/null"], words=["--logits", "/dev/null", "special"],
               out_kept=True)
    c = d("collect-unwritable")
    blocker = write(os.path.join(c, "a-file"), "x")
    yield Case("collect --out under a regular file (fails before the work)",
               ["collect", "--model", g.model, "--task", f"t={g.corpus}", "--out", os.path.join(blocker, "stats.h5"),
                "--threads", "1"], words=["--out", "cannot create"], inputs=[blocker])
    c = d("eval-unwritable")
    yield Case("eval --out under a regular file", ["eval", "--model", g.model, "--task", f"t={g.corpus}",
                                                   "--out", os.path.join(blocker, "r.json"), "--threads", "1"],
               words=["--out", "cannot create"], inputs=[g.corpus, blocker])
    c = d("prune-trailing-slash")
    out = os.path.join(c, "pruned")
    yield Case("prune --out DIR/ (trailing slash)", ["prune", "--model", g.model, "--plan", g.plan, "--out", out + "/"],
               status=0, out=out, out_kept=True, inputs=[g.model, g.plan],
               after=lambda: check_file(os.path.join(out, "config.json"), b"{"))
    yield Case("prune again over its own output", ["prune", "--model", g.model, "--plan", g.plan, "--out", out],
               status=0, out=out, out_kept=True, inputs=[g.model, g.plan])
    yield Case("prune --overwrite an unrelated folder", ["prune", "--model", g.model, "--plan", g.plan, "--out", other,
                                                         "--overwrite"], status=0, out=other, out_kept=True,
               after=lambda: check(not os.path.exists(os.path.join(other, "thesis.tex")) and
                                   os.path.exists(os.path.join(other, "config.json")),
                                   "  --overwrite replaced the folder with the pruned checkpoint"))
    c = d("train-trailing-slash")
    suite = os.path.join(c, "data.jsonl")
    write(suite, "".join(json.dumps({"text": "abcdefghij" * 8}) + "\n" for _ in range(20)))
    tout = os.path.join(c, "model")
    train = ["train", "--data", suite, "--steps", "2", "--batch", "2", "--context", "16", "--hidden", "16",
             "--heads", "2", "--kv-heads", "1", "--ffn", "16", "--experts", "2", "--layers", "1", "--threads", "1"]
    yield Case("train --out DIR/ (trailing slash)", train + ["--out", tout + "/"], status=0, out=tout, out_kept=True,
               inputs=[suite], after=lambda: check(not os.path.exists(os.path.join(tout, ".tmp")) and
                                                   os.path.exists(os.path.join(tout, "trainer_state.json")),
                                                   "  a checkpoint, no DIR/.tmp"))

    # ---- 3. crashes
    c = d("deep-config")
    m = g.model_copy(c)
    write(os.path.join(m, "config.json"), '{"model_type": ' + deep_json() + "}")
    yield Case("config.json nested a million deep", ["score", "--model", m, "--corpus", g.corpus, "--threads", "1"],
               words=[os.path.join(m, "config.json"), "nested deeper"])
    c = d("deep-header")
    m = g.model_copy(c)
    text = ('{"x": ' + deep_json(100_000) + "}").encode()
    with open(shard(m), "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
    yield Case("safetensors header nested deep", ["score", "--model", m, "--corpus", g.corpus, "--threads", "1"],
               words=[shard(m), "nested deeper"])
    c = d("deep-corpus")
    bad = write(os.path.join(c, "corpus.jsonl"), '{"text": "ok"}\n{"input_ids": ' + deep_json() + "}\n")
    yield Case("corpus line nested a million deep", ["score", "--model", g.model, "--corpus", bad, "--threads", "1"],
               words=[bad + ":2", "nested deeper"])
    c = d("deep-placement")
    bad = write(os.path.join(c, "placement.json"), deep_json())
    yield Case("placement file nested deep", ["score", "--model", g.model, "--corpus", g.corpus, "--threads", "1",
                                              "--placement", bad], words=[bad, "nested deeper"])
    c = d("duplicate-keys")
    m = g.model_copy(c)
    cfg = open(os.path.join(m, "config.json")).read()
    write(os.path.join(m, "config.json"), cfg.replace("{", '{"hidden_size": 8, ', 1))
    yield Case("config.json with a duplicate key", ["score", "--model", m, "--corpus", g.corpus, "--threads", "1"],
               words=[os.path.join(m, "config.json"), "duplicate key 'hidden_size'"])

    def stats_copy(name, edit):
        p = shutil.copy(g.stats, os.path.join(d(name), "stats.h5"))
        with h5py.File(p, "r+") as f:
            edit(f["tasks/t/layers"][sorted(f["tasks/t/layers"].keys(), key=int)[0]])
        return p

    def replace(group, name, data):
        del group[name]
        group[name] = data

    p = stats_copy("nan-out-mean", lambda l: l.create_dataset("out_mean", data=np.full((l.attrs["num_experts"], 64),
                                                                                        np.nan)))
    yield Case("cluster hc-smoe on NaN out_mean", ["cluster", "--stats", p, "--task", "t", "--method", "hc-smoe",
                                                    "--factor", "2", "--out", p + ".plan"],
               words=[p, "out_mean", "NaN"], inputs=[p], out=p + ".plan")
    p = stats_copy("zero-experts", lambda l: l.attrs.__setitem__("num_experts", 0))
    for method, extra in (("mc-smoe", []), ("frequency", ["--budget", "adaptive"])):
        yield Case(f"cluster {method} {' '.join(extra)} on a layer of 0 experts",
                   ["cluster", "--stats", p, "--task", "t", "--method", method, "--factor", "2", *extra,
                    "--out", p + ".plan"], words=[p, "0 experts"], inputs=[p], out=p + ".plan")
    p = stats_copy("nan-counts", lambda l: replace(l, "count", np.full(l["count"].shape, np.nan)))
    yield Case("statistics with NaN counts", ["cluster", "--stats", p, "--task", "t", "--method", "frequency",
                                              "--factor", "2", "--out", p + ".plan"], words=[p, "count", "NaN"],
               inputs=[p], out=p + ".plan")
    p = stats_copy("string-dtype", lambda l: replace(l, "gate_sum", np.array([b"x"] * l["gate_sum"].shape[0])))
    yield Case("statistics with a string dataset", ["cluster", "--stats", p, "--task", "t", "--method", "frequency",
                                                    "--factor", "2", "--out", p + ".plan"],
               words=[p, "gate_sum", "numbers"], inputs=[p], out=p + ".plan")
    p = stats_copy("huge-dataset", lambda l: (l.__delitem__("logit_sum"),
                                              l.create_dataset("logit_sum", shape=(2 ** 40,), dtype="f8")))
    yield Case("statistics declaring a 2^40-long dataset", ["cluster", "--stats", p, "--task", "t", "--method",
                                                            "frequency", "--factor", "2", "--out", p + ".plan"],
               words=[p, "logit_sum", "elements"], inputs=[p], out=p + ".plan")
    p = stats_copy("layer-range", lambda l: l.attrs.__setitem__("layer", 2 ** 40))
    yield Case("statistics with an out-of-range layer", ["cluster", "--stats", p, "--task", "t", "--method",
                                                         "frequency", "--factor", "2", "--out", p + ".plan"],
               words=[p, "layer", "outside"], inputs=[p], out=p + ".plan")
    c = d("long-choice")
    ev = write(os.path.join(c, "eval.jsonl"), json.dumps({"context": "ab", "choices": ["x" * 40, "y"], "label": 0}) + "\n")
    yield Case("eval with a choice longer than --context", ["eval", "--model", g.model, "--task", f"t={ev}", "--out",
                                                             os.path.join(c, "r.json"), "--context", "16",
                                                             "--threads", "1"],
               words=[ev + ":1", "choice", "--context"], inputs=[ev], out=os.path.join(c, "r.json"))
    for opt, val in (("--heads", "0"), ("--kv-heads", "0"), ("--log-every", "0"), ("--batch", "0"),
                     ("--hidden", "-64"), ("--lr", "nan")):
        c = d("train" + opt + val)
        args = [a for a in train]
        i = args.index(opt) if opt in args else None
        if i is not None:
            args[i + 1] = val
        else:
            args += [opt, val]
        yield Case(f"train {opt} {val}", args + ["--out", os.path.join(c, "m")], words=[opt],
                   out=os.path.join(c, "m"), inputs=[suite])
    c = d("report-zero-experts")
    r = json.loads(json.dumps(results))
    r["smoe"]["labels"].update(method="scratch", experts="0")
    res0 = os.path.join(c, "results")
    os.makedirs(res0)
    write(os.path.join(res0, "a.results.json"), json.dumps(results))
    bad = write(os.path.join(res0, "b.results.json"), json.dumps(r))
    yield Case("report over a scratch model labelled 0 experts", ["report", "--results", res0, "--out",
                                                                   os.path.join(c, "rep")],
               words=[bad, "experts", "0"], inputs=[res0], out=os.path.join(c, "rep"))

    # ---- 4. hangs
    c = d("dev-zero")
    yield Case("collect --task t=/dev/zero", ["collect", "--model", g.model, "--task", "t=/dev/zero", "--out",
                                              os.path.join(c, "s.h5"), "--threads", "1"],
               words=["/dev/zero", "character device"], out=os.path.join(c, "s.h5"))
    c = d("fifo")
    fifo = os.path.join(c, "corpus.fifo")
    os.mkfifo(fifo)
    yield Case("score --corpus a FIFO nobody writes", ["score", "--model", g.model, "--corpus", fifo, "--threads", "1"],
               words=[fifo, "FIFO"])
    c = d("sigterm")
    big = write(os.path.join(c, "big.jsonl"), "".join(json.dumps({"text": "the quick brown fox " * 40}) + "\n"
                                                      for _ in range(3000)))
    yield Case("SIGTERM during score --logits ends it with 3, no output", [
        "score", "--model", g.model, "--corpus", big, "--threads", "1", "--logits", os.path.join(c, "l.safetensors")],
        status=3, words=["SIGTERM"], out=os.path.join(c, "l.safetensors"), inputs=[big], signal_after=2.0)
    c = d("sigterm-prune")
    yield Case("SIGTERM during collect (before its first checkpoint) ends it with 3", [
        "collect", "--model", g.model, "--task", f"t={big}", "--out", os.path.join(c, "s.h5"), "--threads", "1"],
        status=3, words=[], out=os.path.join(c, "s.h5"), inputs=[big], signal_after=2.0)

    # ---- 6. wrong exit status, 7. silent acceptance
    c = d("trainer-state")
    ts = os.path.join(c, "model")
    subprocess.run([smoe] + train + ["--out", ts], capture_output=True, check=True)
    state = os.path.join(ts, "trainer_state.json")
    write(state, json.dumps({"step": "two", "ranks": 1}))
    yield Case("train --resume over a trainer_state.json of wrong types", train + ["--out", ts, "--resume"],
               words=[state, "step"], out=ts, out_kept=True, inputs=[ts])
    c = d("results-types")
    res1 = os.path.join(c, "results")
    os.makedirs(res1)
    r = json.loads(json.dumps(results))
    r["smoe"]["labels"]["method"] = ["a", "list"]
    bad = write(os.path.join(res1, "a.results.json"), json.dumps(r))
    yield Case("report over results whose label is a list", ["report", "--results", res1, "--out",
                                                              os.path.join(c, "rep")],
               words=[bad, "method", "string"], inputs=[res1], out=os.path.join(c, "rep"))
    c = d("huge-shape")
    m = g.model_copy(c)

    def huge(h):
        t = h[first_tensor(h)]
        t["shape"] = [2 ** 63, 0]
    rewrite_header(shard(m), huge)
    yield Case("safetensors shape entry of 2^63", ["score", "--model", m, "--corpus", g.corpus, "--threads", "1"],
               words=[shard(m), "9223372036854775808"])
    c = d("config-dir")
    yield Case("--config naming a folder", ["score", "--model", g.model, "--corpus", g.corpus, "--config", c],
               words=[c, "folder"])
    for key in ("1.5", "0abc"):
        c = d("placement-" + key)
        bad = write(os.path.join(c, "placement.json"), json.dumps({"layers": {key: [0, 0, 0, 0]}}))
        yield Case(f"placement layer key '{key}'", ["score", "--model", g.model, "--corpus", g.corpus, "--threads", "1",
                                                    "--placement", bad], words=[bad, key])
    yield Case("plan-resources --tokens inf", ["plan-resources", "--model", g.fp8_model, "--tokens", "inf"],
               words=["--tokens", "finite"])
    c = d("eval-task-twice")
    yield Case("eval --task given twice", ["eval", "--model", g.model, "--task", f"t={g.corpus}", "--task",
                                           f"t={g.corpus}", "--out", os.path.join(c, "r.json")],
               words=["--task", "twice"], out=os.path.join(c, "r.json"))
    yield Case("SLURM_ARRAY_TASK_ID=garbage", ["cluster", "--stats", g.stats, "--grid",
                                               write(os.path.join(d("grid"), "g.ini"),
                                                     "[grid]\ntasks = t\nmethods = frequency\nfactors = 2\n"),
                                               "--out", os.path.join(d("grid2"), "p.h5")],
               env={"SLURM_ARRAY_TASK_ID": "garbage"}, words=["SLURM_ARRAY_TASK_ID", "garbage"])

    # ---- beyond the reported sample
    c = d("grid-traversal")
    grid = write(os.path.join(c, "g.ini"), "[grid]\ntasks = ../../escape\nmethods = frequency\nfactors = 2\n")
    yield Case("a grid task name that climbs out of --out's folder", [
        "cluster", "--stats", g.stats, "--grid", grid, "--index", "0", "--out", os.path.join(c, "{task}", "p.h5")],
        words=["task", "../../escape"], inputs=[g.stats])
    c = d("symlinked-parent")
    os.symlink(g.model, os.path.join(c, "m"))
    yield Case("prune --out under a link to the model folder", [
        "prune", "--model", g.model, "--plan", g.plan, "--out", os.path.join(c, "m", "pruned")],
        words=["--out", "input"], inputs=[g.model, g.plan], out=os.path.join(g.model, "pruned"))
    c = d("duplicate-tensor")
    m = g.model_copy(c)
    p = shard(m)
    with open(p, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    h = json.loads(raw[8:8 + n])
    name = first_tensor(h)
    doubled = (json.dumps(h)[:-1] + ", " + json.dumps(name) + ": " + json.dumps(h[name]) + "}").encode()
    doubled += b" " * ((8 - len(doubled) % 8) % 8)
    with open(p, "wb") as f:
        f.write(len(doubled).to_bytes(8, "little") + doubled + raw[8 + n:])
    yield Case("safetensors header naming one tensor twice", ["score", "--model", m, "--corpus", g.corpus,
                                                               "--threads", "1"], words=[p, "duplicate key", name])
    c = d("float-label")
    ev = write(os.path.join(c, "eval.jsonl"), json.dumps({"context": "ab", "choices": ["x", "y"], "label": 1.0}) + "\n")
    yield Case("eval label 1.0", ["eval", "--model", g.model, "--task", f"t={ev}", "--out", os.path.join(c, "r.json"),
                                  "--threads", "1"], words=[ev + ":1", "label"], inputs=[ev], out=os.path.join(c, "r.json"))

    c = d("overwrite-an-input")
    placement = write(os.path.join(c, "placement.json"), json.dumps({"default": [0, 0, 0, 0]}))
    yield Case("eval --overwrite onto its own --placement file", [
        "eval", "--model", g.model, "--task", f"t={g.corpus}", "--placement", placement, "--out", placement,
        "--overwrite", "--threads", "1"], words=["--out", "input", placement], inputs=[placement])
    ini = write(os.path.join(c, "job.ini"), f"model = {g.model}\nplan = {g.plan}\n")
    yield Case("prune --overwrite onto its own --config file", [
        "prune", "--config", ini, "--out", ini, "--overwrite"], words=["--out", "input", ini], inputs=[ini])

    # ---- 8. messages
    c = d("long-line")
    bad = write(os.path.join(c, "corpus.jsonl"), '{"text": "' + "x" * (50 << 20) + "\n")
    yield Case("a 50 MB corrupt corpus line is not echoed", ["score", "--model", g.model, "--corpus", bad,
                                                             "--threads", "1"], words=[bad + ":1", "JSON"])
    c = d("big-id")
    bad = write(os.path.join(c, "corpus.jsonl"), '{"input_ids": [1, 9223372036854775808]}\n')
    yield Case("token id 2^63 is named as it is", ["score", "--model", g.model, "--corpus", bad, "--threads", "1"],
               words=[bad + ":1", "9223372036854775808"])
    c = d("bom-ini")
    ini = os.path.join(c, "job.ini")
    with open(ini, "wb") as f:
        f.write(b"\xef\xbb\xbfmodel = " + g.model.encode() + b"\ncorpus = " + g.corpus.encode() + b"\n")
    yield Case("an INI file starting with a UTF-8 BOM", ["score", "--config", ini, "--threads", "1"], status=0)


def concurrent_collects(smoe, g, c):
    """Two collect runs with the same --out at once: each writes its own temporary
    (they used to share OUT.tmp and corrupt each other); the file left is whole."""
    out = os.path.join(c, "stats.h5")
    args = [smoe, "collect", "--model", g.model, "--task", f"t={g.corpus}", "--out", out, "--threads", "1"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    status = [p.wait(timeout=120) for p in procs]
    with h5py.File(out, "r") as f:
        whole = f.attrs["complete"] == 1 and f.attrs["format"] == "smoe-stats"
    temps = glob.glob(os.path.join(c, "*.tmp.*"))
    check(status == [0, 0] and whole and not temps,
          f"two concurrent collects into one --out: exits {status}, complete file {whole}, temporaries {temps}")


def check_file(path, magic):
    ok = os.path.isfile(path) and open(path, "rb").read(len(magic)) == magic
    check(ok, f"  {path} written")


def main():
    a, g = prepare()
    os.chdir(a.workdir)  # an injected `touch PWNED` would land here or in a case folder
    counter = [0]

    def d(name):
        counter[0] += 1
        p = os.path.join(a.workdir, f"c{counter[0]:02d}-{name}")
        os.makedirs(p)
        return p

    ran = 0
    for case in cases(g, d, a.smoe):
        if a.k and a.k not in case.name:
            continue
        before = tree_digest(case.inputs)
        env = dict(os.environ, **case.env)
        if case.signal_after is None:
            p = subprocess.run([a.smoe] + case.args, capture_output=True, text=True, timeout=120, env=env)
            status, err = p.returncode, p.stderr
        else:
            proc = subprocess.Popen([a.smoe] + case.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env)
            time.sleep(case.signal_after)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            status = proc.returncode
        missing = [w for w in case.words if w not in err]
        left = case.out is not None and not case.out_kept and os.path.lexists(case.out)
        temps = [t for t in glob.glob(os.path.join(a.workdir, "**", "*.tmp.*"), recursive=True)]
        pwned = glob.glob(os.path.join(a.workdir, "**", "PWNED"), recursive=True) + glob.glob("/tmp/PWNED")
        changed = [f for f, h in before.items() if tree_digest([f]).get(f) != h]
        longest = max((len(line) for line in err.splitlines()), default=0)
        check(status == case.status and not missing and not left and not temps and not pwned and not changed
              and longest < 2000,
              f"{case.name}: exit {status}" + (f", message lacks {missing}" if missing else "")
              + (f", {case.out} left behind" if left else "") + (f", temporaries {temps}" if temps else "")
              + (f", PWNED {pwned}" if pwned else "") + (f", inputs changed {changed}" if changed else "")
              + (f", a message line of {longest} characters" if longest >= 2000 else ""))
        last = [line for line in err.splitlines() if "error" in line or "stopped" in line][-1:]
        print(f"       {last[0][:300] if last else '(no message)'}")
        if case.after and status == case.status:
            case.after()
        ran += 1
    if not a.k or a.k in "concurrent":
        concurrent_collects(a.smoe, g, d("concurrent"))
    check(a.k is not None or ran >= 45, f"{ran} hostile inputs (at least 45)")
    finish("reliability.hostile-inputs")


if __name__ == "__main__":
    main()
