"""What the malformed-input and hostile-input checks share: good inputs made once
in the test's workdir (a tiny Mixtral checkpoint, a corpus, a stats file and a plan
by smoe itself, and an FP8 checkpoint), and the small editors of safetensors
headers, configs and files the cases break them with."""

import json
import os
import shutil
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
sys.path.insert(0, os.path.dirname(here))
import hf_reference as ref  # noqa: E402
from programs import run_program  # noqa: E402


class Inputs:
    """Good inputs, made once; each case copies what it breaks."""

    def __init__(self, smoe, w):
        self.smoe, self.w = smoe, w
        self.cfg = ref.tiny_config("mixtral")
        self.model = os.path.join(w, "good", "model")
        ref.save_checkpoint(self.model, self.cfg, ref.random_weights(self.cfg, seed=3), shards=2)
        self.corpus = os.path.join(w, "good", "corpus.jsonl")
        with open(self.corpus, "w") as f:
            for i in range(6):
                f.write(json.dumps({"text": f"record {i}: the quick brown fox jumps over the lazy dog"}) + "\n")
        self.stats = os.path.join(w, "good", "stats.h5")
        self.plan = os.path.join(w, "good", "plan.h5")
        self.job(["collect", "--model", self.model, "--task", f"t={self.corpus}", "--out", self.stats, "--threads", "1"])
        self.job(["cluster", "--stats", self.stats, "--task", "t", "--method", "frequency", "--factor", "2",
                  "--out", self.plan])
        fp8_cfg = ref.tiny_config("deepseek_v3")
        self.fp8_model = os.path.join(w, "good", "fp8-model")
        ref.save_checkpoint(self.fp8_model, fp8_cfg, ref.fp8_checkpoint(fp8_cfg, ref.random_weights(fp8_cfg, 5))[0],
                            shards=1)
        self.job(["score", "--model", self.fp8_model, "--corpus", self.corpus, "--threads", "1"])

    def job(self, args):
        """Runs one smoe job that makes a good input; it must succeed."""
        run_program([self.smoe] + args)

    def model_copy(self, d):
        dst = os.path.join(d, "model")
        shutil.copytree(self.model, dst)
        return dst


def shard(model, i=1):
    return os.path.join(model, f"model-{i:05d}-of-00002.safetensors")


def rewrite_header(path, edit):
    """Parses a safetensors file's header, lets `edit` change it, writes it back
    (padded to keep the data where it was when the new header fits)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (n - len(text)) if len(text) <= n else b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data[8 + n:])


def edit_config(model, edit):
    path = os.path.join(model, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    edit(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f)


def first_tensor(header):
    return next(k for k in header if k != "__metadata__")


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return path


def prepare(smoe, workdir):
    """The good inputs, under workdir/good (workdir: fresh, from the fixture)."""
    os.makedirs(os.path.join(workdir, "good"))
    return Inputs(smoe, workdir)
