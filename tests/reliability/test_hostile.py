"""Hostile inputs: what a malicious or careless user throws at every job. No input
may run a command, overwrite or delete what the job did not create, crash, hang,
or leave a temporary behind.

Every case runs one job in a folder of its own (one test per case, its id the
case's name) and checks:
- the exit status (2 for bad input, 0 where the input is odd but fine, 3 when stopped);
- the message names the file or option and the fault, and stays short;
- nothing is left under the output's name (failures) and no temporary (*.tmp.*) anywhere;
- the inputs are byte for byte what they were;
- no file named PWNED appeared (the injected commands would create one).
Some cases check what the job wrote as well (the report's plots, the pruned and
trained checkpoints, the folder --overwrite replaced); two collects into one --out
at once leave one whole file; the corpus holds at least 45 cases.

The cases run in order, each once: some build on what an earlier one left (a
pruned folder, the folder a failed prune refused), and the checks for temporaries
and PWNED look at the whole workdir. Asking for one case (-k) runs those before it.

  /usr/bin/python3 -m pytest -c tests/pytest.ini --rootdir tests tests/reliability/test_hostile.py \\
      --smoe build/smoe --workdir DIR"""

import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.dirname(here))
from inputs import first_tensor, prepare, rewrite_header, shard, write  # noqa: E402
from programs import mpi_env  # noqa: E402

DEEP = 1_000_000  # JSON nesting that used to overflow the stack
PLOTS = ("quality", "thresholds", "pareto")


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


def file_written(path, magic):
    """(whether `path` is a file starting with `magic`, the check's message)."""
    ok = os.path.isfile(path) and open(path, "rb").read(len(magic)) == magic
    return ok, f"{path} written"


class Case:
    """One job: its arguments, the exit status and message words it must give, its
    output (`out`: must not exist afterwards unless `out_kept`), the inputs that must
    stay as they were, extra environment, `after` (what the job wrote, checked when
    the status is right: a dict of name -> (ok, message)) and `signal_after` (seconds
    before a SIGTERM)."""

    def __init__(self, args, status=2, words=(), out=None, inputs=(), env=None, after=None, signal_after=None,
                 out_kept=False):
        self.args, self.status, self.words = args, status, list(words)
        self.out, self.inputs, self.env, self.after = out, list(inputs), env or {}, after
        self.signal_after, self.out_kept = signal_after, out_kept


# (name, make(s) -> Case), in the order they run. `s` holds the good inputs (s.g),
# s.d(name) (a fresh folder for one case), s.smoe, s.run, s.workdir, and what
# one case leaves for a later one.
CASES = []


def case(name):
    def register(make):
        CASES.append((name, make))
        return make
    return register


# The cases whose written output a test checks as well.
REPORT = "report: quote and $( ) in --out, gnuplot code in labels"
PRUNE_SLASH = "prune --out DIR/ (trailing slash)"
PRUNE_OVERWRITE = "prune --overwrite an unrelated folder"
TRAIN_SLASH = "train --out DIR/ (trailing slash)"


# ---- 1. no shell: data never reaches a shell or gnuplot as code
@case(REPORT)
def report_quote_in_out(s):
    c = s.d("report-quote-in-out")
    res = os.path.join(c, "results")
    os.makedirs(res)
    s.results = results = {
        "results": {"t": {"perplexity,none": 3.0}},
        "samples": {"t": {"text": {"line": [1, 2, 3], "nll": [3.0, 4.0, 2.0], "tokens": [2, 2, 2],
                                   "bytes": [3, 3, 3]}}},
        "smoe": {"job": "eval", "experts_per_layer": [4], "labels": {"experts": "4", "factor": "1"}}}
    for i, method in enumerate(["x'.system('touch PWNED').'", "`touch PWNED`", "a\nsystem 'touch PWNED'", "scratch"]):
        r = json.loads(json.dumps(results))
        r["smoe"]["labels"].update(method=method, experts=str(4 if method != "scratch" else 2),
                                   factor="2" if method != "scratch" else "1")
        write(os.path.join(res, f"r{i}.results.json"), json.dumps(r))
    out = os.path.join(c, "it's $(touch PWNED) `touch PWNED`")
    return Case(["report", "--results", res, "--out", out], status=0, out=out, inputs=[res], out_kept=True,
                after=lambda: {n: file_written(os.path.join(out, f"{n}.png"), b"\x89PNG") for n in PLOTS})


# ---- 2. outputs that cannot destroy inputs
@case("prune --out an unrelated folder")
def prune_over_folder(s):
    g = s.g
    c = s.d("prune-over-folder")
    s.other = other = os.path.join(c, "precious")
    os.makedirs(other)
    write(os.path.join(other, "thesis.tex"), "years of work")
    return Case(["prune", "--model", g.model, "--plan", g.plan, "--out", other],
                words=["--out", other, "exists", "--overwrite"], inputs=[other, g.model, g.plan])


@case("prune --out the model itself")
def prune_over_model(s):
    g = s.g
    return Case(["prune", "--model", g.model, "--plan", g.plan, "--out", g.model + "/"],
                words=["--out", "input", g.model], inputs=[g.model, g.plan])


@case("prune --out a parent of the inputs")
def prune_over_parent(s):
    g = s.g
    return Case(["prune", "--model", g.model, "--plan", g.plan, "--out", os.path.dirname(g.model)],
                words=["--out", "holds the input"], inputs=[g.model, g.plan])


@case("prune --out inside the model")
def prune_inside_model(s):
    g = s.g
    return Case(["prune", "--model", g.model, "--plan", g.plan, "--out", os.path.join(g.model, "pruned")],
                words=["--out", "lies inside the input"], inputs=[g.model, g.plan], out=os.path.join(g.model, "pruned"))


@case("collect --out the corpus")
def collect_over_corpus(s):
    g = s.g
    c = s.d("collect-over-corpus")
    corpus = shutil.copy(g.corpus, os.path.join(c, "corpus.jsonl"))
    return Case(["collect", "--model", g.model, "--task", f"t={corpus}", "--out", corpus, "--threads", "1"],
                words=["--out", corpus, "input"], inputs=[corpus])


@case("collect whose working file name holds a file of another program")
def collect_work_file(s):
    g = s.g
    c = s.d("collect-work-file")
    theirs = write(os.path.join(c, "stats.h5.work.h5"), "someone else's file")
    return Case(["collect", "--model", g.model, "--task", f"t={g.corpus}", "--out", os.path.join(c, "stats.h5"),
                 "--threads", "1"],
                words=[theirs, "not a working file"], inputs=[theirs], out=os.path.join(c, "stats.h5"))


@case("cluster --out the statistics")
def cluster_over_stats(s):
    g = s.g
    c = s.d("cluster-over-stats")
    stats = shutil.copy(g.stats, os.path.join(c, "stats.h5"))
    return Case(["cluster", "--stats", stats, "--task", "t", "--method", "frequency", "--factor", "2",
                 "--out", stats], words=["--out", "input"], inputs=[stats])


@case("score --logits onto a symlink")
def logits_symlink(s):
    g = s.g
    c = s.d("logits-symlink")
    target = write(os.path.join(c, "target.txt"), "keep me")
    link = os.path.join(c, "logits.safetensors")
    os.symlink(target, link)
    return Case(["score", "--model", g.model, "--corpus", g.corpus, "--threads", "1", "--logits", link],
                words=["--logits", "symbolic link"], inputs=[target, link], out_kept=True)


@case("score --logits onto a device")
def logits_device(s):
    g = s.g
    return Case(["score", "--model", g.model, "--corpus", g.corpus, "--threads", "1", "--logits", "/dev/null"],
                words=["--logits", "/dev/null", "special"], out_kept=True)


@case("collect --out under a regular file (fails before the work)")
def collect_unwritable(s):
    g = s.g
    c = s.d("collect-unwritable")
    s.blocker = blocker = write(os.path.join(c, "a-file"), "x")
    return Case(["collect", "--model", g.model, "--task", f"t={g.corpus}", "--out", os.path.join(blocker, "stats.h5"),
                 "--threads", "1"], words=["--out", "cannot create"], inputs=[blocker])


@case("eval --out under a regular file")
def eval_unwritable(s):
    g = s.g
    s.d("eval-unwritable")
    return Case(["eval", "--model", g.model, "--task", f"t={g.corpus}", "--out", os.path.join(s.blocker, "r.json"),
                 "--threads", "1"], words=["--out", "cannot create"], inputs=[g.corpus, s.blocker])


@case(PRUNE_SLASH)
def prune_trailing_slash(s):
    g = s.g
    c = s.d("prune-trailing-slash")
    s.pruned = out = os.path.join(c, "pruned")
    return Case(["prune", "--model", g.model, "--plan", g.plan, "--out", out + "/"],
                status=0, out=out, out_kept=True, inputs=[g.model, g.plan],
                after=lambda: {"config": file_written(os.path.join(out, "config.json"), b"{")})


@case("prune again over its own output")
def prune_again(s):
    g = s.g
    return Case(["prune", "--model", g.model, "--plan", g.plan, "--out", s.pruned],
                status=0, out=s.pruned, out_kept=True, inputs=[g.model, g.plan])


@case(PRUNE_OVERWRITE)
def prune_overwrite_other(s):
    g, other = s.g, s.other
    return Case(["prune", "--model", g.model, "--plan", g.plan, "--out", other, "--overwrite"],
                status=0, out=other, out_kept=True,
                after=lambda: {"replaced": (not os.path.exists(os.path.join(other, "thesis.tex")) and
                                            os.path.exists(os.path.join(other, "config.json")),
                                            "--overwrite replaced the folder with the pruned checkpoint")})


@case(TRAIN_SLASH)
def train_trailing_slash(s):
    c = s.d("train-trailing-slash")
    s.suite = suite = os.path.join(c, "data.jsonl")
    write(suite, "".join(json.dumps({"text": "abcdefghij" * 8}) + "\n" for _ in range(20)))
    tout = os.path.join(c, "model")
    s.train = train = ["train", "--data", suite, "--steps", "2", "--batch", "2", "--context", "16", "--hidden", "16",
                       "--heads", "2", "--kv-heads", "1", "--ffn", "16", "--experts", "2", "--layers", "1",
                       "--threads", "1"]
    return Case(train + ["--out", tout + "/"], status=0, out=tout, out_kept=True, inputs=[suite],
                after=lambda: {"checkpoint": (not os.path.exists(os.path.join(tout, ".tmp")) and
                                              os.path.exists(os.path.join(tout, "trainer_state.json")),
                                              "a checkpoint, no DIR/.tmp")})


# ---- 3. crashes
@case("config.json nested a million deep")
def deep_config(s):
    g = s.g
    c = s.d("deep-config")
    m = g.model_copy(c)
    write(os.path.join(m, "config.json"), '{"model_type": ' + deep_json() + "}")
    return Case(["score", "--model", m, "--corpus", g.corpus, "--threads", "1"],
                words=[os.path.join(m, "config.json"), "nested deeper"])


@case("safetensors header nested deep")
def deep_header(s):
    g = s.g
    c = s.d("deep-header")
    m = g.model_copy(c)
    text = ('{"x": ' + deep_json(100_000) + "}").encode()
    with open(shard(m), "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
    return Case(["score", "--model", m, "--corpus", g.corpus, "--threads", "1"], words=[shard(m), "nested deeper"])


@case("corpus line nested a million deep")
def deep_corpus(s):
    g = s.g
    c = s.d("deep-corpus")
    bad = write(os.path.join(c, "corpus.jsonl"), '{"text": "ok"}\n{"input_ids": ' + deep_json() + "}\n")
    return Case(["score", "--model", g.model, "--corpus", bad, "--threads", "1"], words=[bad + ":2", "nested deeper"])


@case("placement file nested deep")
def deep_placement(s):
    g = s.g
    c = s.d("deep-placement")
    bad = write(os.path.join(c, "placement.json"), deep_json())
    return Case(["score", "--model", g.model, "--corpus", g.corpus, "--threads", "1", "--placement", bad],
                words=[bad, "nested deeper"])


@case("config.json with a duplicate key")
def duplicate_keys(s):
    g = s.g
    c = s.d("duplicate-keys")
    m = g.model_copy(c)
    cfg = open(os.path.join(m, "config.json")).read()
    write(os.path.join(m, "config.json"), cfg.replace("{", '{"hidden_size": 8, ', 1))
    return Case(["score", "--model", m, "--corpus", g.corpus, "--threads", "1"],
                words=[os.path.join(m, "config.json"), "duplicate key 'hidden_size'"])


def stats_copy(s, name, edit):
    """A copy of the good statistics in a fresh folder, its first layer of task t edited."""
    p = shutil.copy(s.g.stats, os.path.join(s.d(name), "stats.h5"))
    with h5py.File(p, "r+") as f:
        edit(f["tasks/t/layers"][sorted(f["tasks/t/layers"].keys(), key=int)[0]])
    return p


def replace(group, name, data):
    del group[name]
    group[name] = data


def cluster_frequency(p):
    return ["cluster", "--stats", p, "--task", "t", "--method", "frequency", "--factor", "2", "--out", p + ".plan"]


@case("cluster hc-smoe on NaN out_mean")
def nan_out_mean(s):
    p = stats_copy(s, "nan-out-mean", lambda l: l.create_dataset("out_mean", data=np.full((l.attrs["num_experts"], 64),
                                                                                           np.nan)))
    return Case(["cluster", "--stats", p, "--task", "t", "--method", "hc-smoe", "--factor", "2", "--out", p + ".plan"],
                words=[p, "out_mean", "NaN"], inputs=[p], out=p + ".plan")


def zero_experts(s, method, extra):
    """Both methods run on one copy, made by the first."""
    if not hasattr(s, "zero_experts"):
        s.zero_experts = stats_copy(s, "zero-experts", lambda l: l.attrs.__setitem__("num_experts", 0))
    p = s.zero_experts
    return Case(["cluster", "--stats", p, "--task", "t", "--method", method, "--factor", "2", *extra,
                 "--out", p + ".plan"], words=[p, "0 experts"], inputs=[p], out=p + ".plan")


for _method, _extra in (("mc-smoe", []), ("frequency", ["--budget", "adaptive"])):
    case(f"cluster {_method} {' '.join(_extra)} on a layer of 0 experts")(
        lambda s, method=_method, extra=_extra: zero_experts(s, method, extra))


@case("statistics with NaN counts")
def nan_counts(s):
    p = stats_copy(s, "nan-counts", lambda l: replace(l, "count", np.full(l["count"].shape, np.nan)))
    return Case(cluster_frequency(p), words=[p, "count", "NaN"], inputs=[p], out=p + ".plan")


@case("statistics with a string dataset")
def string_dtype(s):
    p = stats_copy(s, "string-dtype", lambda l: replace(l, "gate_sum", np.array([b"x"] * l["gate_sum"].shape[0])))
    return Case(cluster_frequency(p), words=[p, "gate_sum", "numbers"], inputs=[p], out=p + ".plan")


@case("statistics declaring a 2^40-long dataset")
def huge_dataset(s):
    p = stats_copy(s, "huge-dataset", lambda l: (l.__delitem__("logit_sum"),
                                                 l.create_dataset("logit_sum", shape=(2 ** 40,), dtype="f8")))
    return Case(cluster_frequency(p), words=[p, "logit_sum", "elements"], inputs=[p], out=p + ".plan")


@case("statistics with an out-of-range layer")
def layer_range(s):
    p = stats_copy(s, "layer-range", lambda l: l.attrs.__setitem__("layer", 2 ** 40))
    return Case(cluster_frequency(p), words=[p, "layer", "outside"], inputs=[p], out=p + ".plan")


@case("eval with a choice longer than --context")
def long_choice(s):
    g = s.g
    c = s.d("long-choice")
    ev = write(os.path.join(c, "eval.jsonl"), json.dumps({"context": "ab", "choices": ["x" * 40, "y"], "label": 0}) + "\n")
    return Case(["eval", "--model", g.model, "--task", f"t={ev}", "--out", os.path.join(c, "r.json"),
                 "--context", "16", "--threads", "1"],
                words=[ev + ":1", "choice", "--context"], inputs=[ev], out=os.path.join(c, "r.json"))


def train_option(s, opt, val):
    """The trailing-slash case's training job with one option set to a bad value."""
    c = s.d("train" + opt + val)
    args = [a for a in s.train]
    i = args.index(opt) if opt in args else None
    if i is not None:
        args[i + 1] = val
    else:
        args += [opt, val]
    return Case(args + ["--out", os.path.join(c, "m")], words=[opt], out=os.path.join(c, "m"), inputs=[s.suite])


for _opt, _val in (("--heads", "0"), ("--kv-heads", "0"), ("--log-every", "0"), ("--batch", "0"),
                   ("--hidden", "-64"), ("--lr", "nan")):
    case(f"train {_opt} {_val}")(lambda s, opt=_opt, val=_val: train_option(s, opt, val))


@case("report over a scratch model labelled 0 experts")
def report_zero_experts(s):
    c = s.d("report-zero-experts")
    r = json.loads(json.dumps(s.results))
    r["smoe"]["labels"].update(method="scratch", experts="0")
    res0 = os.path.join(c, "results")
    os.makedirs(res0)
    write(os.path.join(res0, "a.results.json"), json.dumps(s.results))
    bad = write(os.path.join(res0, "b.results.json"), json.dumps(r))
    return Case(["report", "--results", res0, "--out", os.path.join(c, "rep")],
                words=[bad, "experts", "0"], inputs=[res0], out=os.path.join(c, "rep"))


# ---- 4. hangs
@case("collect --task t=/dev/zero")
def dev_zero(s):
    g = s.g
    c = s.d("dev-zero")
    return Case(["collect", "--model", g.model, "--task", "t=/dev/zero", "--out", os.path.join(c, "s.h5"),
                 "--threads", "1"], words=["/dev/zero", "character device"], out=os.path.join(c, "s.h5"))


@case("score --corpus a FIFO nobody writes")
def fifo(s):
    g = s.g
    c = s.d("fifo")
    fifo = os.path.join(c, "corpus.fifo")
    os.mkfifo(fifo)
    return Case(["score", "--model", g.model, "--corpus", fifo, "--threads", "1"], words=[fifo, "FIFO"])


@case("SIGTERM during score --logits ends it with 3, no output")
def sigterm_score(s):
    g = s.g
    c = s.d("sigterm")
    s.big = big = write(os.path.join(c, "big.jsonl"), "".join(json.dumps({"text": "the quick brown fox " * 40}) + "\n"
                                                              for _ in range(3000)))
    return Case(["score", "--model", g.model, "--corpus", big, "--threads", "1",
                 "--logits", os.path.join(c, "l.safetensors")],
                status=3, words=["SIGTERM"], out=os.path.join(c, "l.safetensors"), inputs=[big], signal_after=2.0)


@case("SIGTERM during collect (before its first checkpoint) ends it with 3")
def sigterm_collect(s):
    g = s.g
    c = s.d("sigterm-prune")
    return Case(["collect", "--model", g.model, "--task", f"t={s.big}", "--out", os.path.join(c, "s.h5"),
                 "--threads", "1"],
                status=3, words=[], out=os.path.join(c, "s.h5"), inputs=[s.big], signal_after=2.0)


# ---- 6. wrong exit status, 7. silent acceptance
@case("train --resume over a trainer_state.json of wrong types")
def trainer_state(s):
    c = s.d("trainer-state")
    ts = os.path.join(c, "model")
    s.run([s.smoe] + s.train + ["--out", ts], cwd=s.workdir)
    state = os.path.join(ts, "trainer_state.json")
    write(state, json.dumps({"step": "two", "ranks": 1}))
    return Case(s.train + ["--out", ts, "--resume"], words=[state, "step"], out=ts, out_kept=True, inputs=[ts])


@case("report over results whose label is a list")
def results_types(s):
    c = s.d("results-types")
    res1 = os.path.join(c, "results")
    os.makedirs(res1)
    r = json.loads(json.dumps(s.results))
    r["smoe"]["labels"]["method"] = ["a", "list"]
    bad = write(os.path.join(res1, "a.results.json"), json.dumps(r))
    return Case(["report", "--results", res1, "--out", os.path.join(c, "rep")],
                words=[bad, "method", "string"], inputs=[res1], out=os.path.join(c, "rep"))


@case("safetensors shape entry of 2^63")
def huge_shape(s):
    g = s.g
    c = s.d("huge-shape")
    m = g.model_copy(c)

    def huge(h):
        t = h[first_tensor(h)]
        t["shape"] = [2 ** 63, 0]
    rewrite_header(shard(m), huge)
    return Case(["score", "--model", m, "--corpus", g.corpus, "--threads", "1"],
                words=[shard(m), "9223372036854775808"])


@case("--config naming a folder")
def config_dir(s):
    g = s.g
    c = s.d("config-dir")
    return Case(["score", "--model", g.model, "--corpus", g.corpus, "--config", c], words=[c, "folder"])


def placement_key(s, key):
    g = s.g
    c = s.d("placement-" + key)
    bad = write(os.path.join(c, "placement.json"), json.dumps({"layers": {key: [0, 0, 0, 0]}}))
    return Case(["score", "--model", g.model, "--corpus", g.corpus, "--threads", "1", "--placement", bad],
                words=[bad, key])


for _key in ("1.5", "0abc"):
    case(f"placement layer key '{_key}'")(lambda s, key=_key: placement_key(s, key))


@case("plan-resources --tokens inf")
def tokens_inf(s):
    return Case(["plan-resources", "--model", s.g.fp8_model, "--tokens", "inf"], words=["--tokens", "finite"])


@case("eval --task given twice")
def eval_task_twice(s):
    g = s.g
    c = s.d("eval-task-twice")
    return Case(["eval", "--model", g.model, "--task", f"t={g.corpus}", "--task", f"t={g.corpus}",
                 "--out", os.path.join(c, "r.json")], words=["--task", "twice"], out=os.path.join(c, "r.json"))


@case("SLURM_ARRAY_TASK_ID=garbage")
def slurm_garbage(s):
    g = s.g
    return Case(["cluster", "--stats", g.stats, "--grid",
                 write(os.path.join(s.d("grid"), "g.ini"), "[grid]\ntasks = t\nmethods = frequency\nfactors = 2\n"),
                 "--out", os.path.join(s.d("grid2"), "p.h5")],
                env={"SLURM_ARRAY_TASK_ID": "garbage"}, words=["SLURM_ARRAY_TASK_ID", "garbage"])


# ---- beyond the reported sample
@case("a grid task name that climbs out of --out's folder")
def grid_traversal(s):
    g = s.g
    c = s.d("grid-traversal")
    grid = write(os.path.join(c, "g.ini"), "[grid]\ntasks = ../../escape\nmethods = frequency\nfactors = 2\n")
    return Case(["cluster", "--stats", g.stats, "--grid", grid, "--index", "0", "--out",
                 os.path.join(c, "{task}", "p.h5")], words=["task", "../../escape"], inputs=[g.stats])


@case("prune --out under a link to the model folder")
def symlinked_parent(s):
    g = s.g
    c = s.d("symlinked-parent")
    os.symlink(g.model, os.path.join(c, "m"))
    return Case(["prune", "--model", g.model, "--plan", g.plan, "--out", os.path.join(c, "m", "pruned")],
                words=["--out", "input"], inputs=[g.model, g.plan], out=os.path.join(g.model, "pruned"))


@case("safetensors header naming one tensor twice")
def duplicate_tensor(s):
    g = s.g
    c = s.d("duplicate-tensor")
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
    return Case(["score", "--model", m, "--corpus", g.corpus, "--threads", "1"], words=[p, "duplicate key", name])


@case("eval label 1.0")
def float_label(s):
    g = s.g
    c = s.d("float-label")
    ev = write(os.path.join(c, "eval.jsonl"), json.dumps({"context": "ab", "choices": ["x", "y"], "label": 1.0}) + "\n")
    return Case(["eval", "--model", g.model, "--task", f"t={ev}", "--out", os.path.join(c, "r.json"), "--threads", "1"],
                words=[ev + ":1", "label"], inputs=[ev], out=os.path.join(c, "r.json"))


@case("eval --overwrite onto its own --placement file")
def overwrite_placement(s):
    g = s.g
    s.overwrite_dir = c = s.d("overwrite-an-input")
    placement = write(os.path.join(c, "placement.json"), json.dumps({"default": [0, 0, 0, 0]}))
    return Case(["eval", "--model", g.model, "--task", f"t={g.corpus}", "--placement", placement, "--out", placement,
                 "--overwrite", "--threads", "1"], words=["--out", "input", placement], inputs=[placement])


@case("prune --overwrite onto its own --config file")
def overwrite_config(s):
    g = s.g
    ini = write(os.path.join(s.overwrite_dir, "job.ini"), f"model = {g.model}\nplan = {g.plan}\n")
    return Case(["prune", "--config", ini, "--out", ini, "--overwrite"], words=["--out", "input", ini], inputs=[ini])


# ---- 8. messages
@case("a 50 MB corrupt corpus line is not echoed")
def long_line(s):
    g = s.g
    c = s.d("long-line")
    bad = write(os.path.join(c, "corpus.jsonl"), '{"text": "' + "x" * (50 << 20) + "\n")
    return Case(["score", "--model", g.model, "--corpus", bad, "--threads", "1"], words=[bad + ":1", "JSON"])


@case("token id 2^63 is named as it is")
def big_id(s):
    g = s.g
    c = s.d("big-id")
    bad = write(os.path.join(c, "corpus.jsonl"), '{"input_ids": [1, 9223372036854775808]}\n')
    return Case(["score", "--model", g.model, "--corpus", bad, "--threads", "1"],
                words=[bad + ":1", "9223372036854775808"])


@case("an INI file starting with a UTF-8 BOM")
def bom_ini(s):
    g = s.g
    c = s.d("bom-ini")
    ini = os.path.join(c, "job.ini")
    with open(ini, "wb") as f:
        f.write(b"\xef\xbb\xbfmodel = " + g.model.encode() + b"\ncorpus = " + g.corpus.encode() + b"\n")
    return Case(["score", "--config", ini, "--threads", "1"], status=0)


class Hostile:
    """Runs the cases in CASES' order, each once, as far as a test asks; keeps what
    each run showed. The jobs run in the workdir, where an injected `touch PWNED`
    would land (or in a case's folder)."""

    def __init__(self, smoe, g, workdir, run):
        self.smoe, self.workdir, self.run = smoe, workdir, run
        self.s = SimpleNamespace(smoe=smoe, g=g, d=self.d, run=run, workdir=workdir)
        self.folders = 0
        self.done = {}  # name -> SimpleNamespace of what the run showed, or the exception it raised
        self.next = 0

    def d(self, name):
        """A fresh folder for one case (numbered in the order they are made)."""
        self.folders += 1
        p = os.path.join(self.workdir, f"c{self.folders:02d}-{name}")
        os.makedirs(p)
        return p

    def outcome(self, name):
        while name not in self.done:
            n, make = CASES[self.next]
            self.next += 1
            try:
                self.done[n] = self.run_case(make(self.s))
            except Exception as e:  # this case's test reports it; the later ones still run
                self.done[n] = e
        result = self.done[name]
        if isinstance(result, Exception):
            raise result
        return result

    def run_case(self, case):
        before = tree_digest(case.inputs)
        if case.signal_after is None:
            p = self.run([self.smoe] + case.args, expect=None, env=case.env, timeout=120, cwd=self.workdir)
            status, err = p.returncode, p.stderr
        else:
            proc = subprocess.Popen([self.smoe] + case.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=mpi_env(case.env), cwd=self.workdir)
            time.sleep(case.signal_after)
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
            status = proc.returncode
        o = SimpleNamespace(case=case, status=status, err=err, facts=None)
        o.missing = [w for w in case.words if w not in err]
        o.left = case.out is not None and not case.out_kept and os.path.lexists(case.out)
        o.temps = glob.glob(os.path.join(self.workdir, "**", "*.tmp.*"), recursive=True)
        o.pwned = glob.glob(os.path.join(self.workdir, "**", "PWNED"), recursive=True) + glob.glob("/tmp/PWNED")
        o.changed = [f for f, h in before.items() if tree_digest([f]).get(f) != h]
        o.longest = max((len(line) for line in err.splitlines()), default=0)
        last = [line for line in err.splitlines() if "error" in line or "stopped" in line][-1:]
        print(f"       {last[0][:300] if last else '(no message)'}")
        if case.after and status == case.status:
            o.facts = case.after()  # at once: later cases may change what the job wrote
        return o


@pytest.fixture(scope="module")
def hostile(smoe, workdir, run):
    return Hostile(smoe, prepare(smoe, workdir), workdir, run)


def test_corpus_holds_at_least_45_cases():
    assert len(CASES) >= 45, f"{len(CASES)} hostile inputs (at least 45)"


@pytest.mark.parametrize("name", [name for name, _ in CASES])
def test_hostile_input_ends_cleanly_and_harms_nothing(hostile, name):
    o = hostile.outcome(name)
    clean = (o.status == o.case.status and not o.missing and not o.left and not o.temps and not o.pwned
             and not o.changed and o.longest < 2000)
    assert clean, (
        f"{name}: exit {o.status} (expected {o.case.status})" + (f", message lacks {o.missing}" if o.missing else "")
        + (f", {o.case.out} left behind" if o.left else "") + (f", temporaries {o.temps}" if o.temps else "")
        + (f", PWNED {o.pwned}" if o.pwned else "") + (f", inputs changed {o.changed}" if o.changed else "")
        + (f", a message line of {o.longest} characters" if o.longest >= 2000 else "")
        + f"\n--- stderr\n{o.err[-4000:]}")


def written(hostile, name, fact):
    """(ok, message) of what case `name`'s job wrote, checked right after it ran;
    like the case's own checks, only when it ended with the right status."""
    o = hostile.outcome(name)
    if o.facts is None:
        pytest.skip(f"not checked: {name!r} exited {o.status}, expected {o.case.status}")
    return o.facts[fact]


@pytest.mark.parametrize("plot", PLOTS)
def test_report_under_a_hostile_out_draws_each_plot(hostile, plot):
    ok, message = written(hostile, REPORT, plot)
    assert ok, message


def test_prune_out_with_trailing_slash_writes_the_checkpoint(hostile):
    ok, message = written(hostile, PRUNE_SLASH, "config")
    assert ok, message


def test_prune_overwrite_replaces_the_unrelated_folder(hostile):
    ok, message = written(hostile, PRUNE_OVERWRITE, "replaced")
    assert ok, message


def test_train_out_with_trailing_slash_writes_a_checkpoint_and_no_tmp(hostile):
    ok, message = written(hostile, TRAIN_SLASH, "checkpoint")
    assert ok, message


def test_two_concurrent_collects_into_one_out_leave_one_whole_file(hostile, smoe):
    """Two collect runs with the same --out at once: each writes its own temporary
    (they used to share OUT.tmp and corrupt each other); the file left is whole."""
    g, c = hostile.s.g, hostile.d("concurrent")
    out = os.path.join(c, "stats.h5")
    args = [smoe, "collect", "--model", g.model, "--task", f"t={g.corpus}", "--out", out, "--threads", "1"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mpi_env(),
                              cwd=hostile.workdir) for _ in range(2)]
    status = [p.wait(timeout=120) for p in procs]
    with h5py.File(out, "r") as f:
        whole = f.attrs["complete"] == 1 and f.attrs["format"] == "smoe-stats"
    temps = glob.glob(os.path.join(c, "*.tmp.*"))
    assert status == [0, 0] and whole and not temps, (
        f"two concurrent collects into one --out: exits {status}, complete file {whole}, temporaries {temps}")
