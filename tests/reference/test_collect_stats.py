"""Cross-check of `smoe collect` with h5py and python3-torch alone: recomputes the
statistics of a tiny Mixtral-layout checkpoint over a corpus with the plain
PyTorch reference (hf_reference.py) and compares them with stats.h5. Also checks
the file's schema (docs/stats-h5.md): attributes, dataset names, shapes, dtypes."""

import json
import os
import sys

import h5py
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

CONTEXT = 24
CFG = ref.tiny_config("mixtral")
LAYERS = [l for l in range(CFG["num_hidden_layers"]) if ref._moe_layer(CFG, l)]  # the MoE layers
PROVENANCE = ("model", "model_config_sha256", "software", "created", "command", "options", "schedule", "dtype")
INTEGER_STATS = ("count", "coact")
FLOAT_STATS = ("gate_sum", "prob_sum", "logit_sum", "logit_gram", "act_norm_sum", "reap_sum")
SAMPLE_ROWS = 10


def closeness(ours, theirs):
    """(max |diff|, max |value| of theirs): each entry must be within rtol of the
    dataset's largest magnitude. The reference runs in float32 too, pieces one at a
    time, so entries that cancel to near zero (off the Gram matrix's diagonal, say)
    carry the absolute error of their terms."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    return diff, scale


def assert_close(name, ours, theirs, rtol=1e-5):
    assert np.shape(ours) == np.shape(theirs), f"{name}: shape {np.shape(ours)}, reference {np.shape(theirs)}"
    diff, scale = closeness(ours, theirs)
    print(f"{name}: max |diff| {diff:.3g} of max |value| {scale:.3g} (bound rtol {rtol})")
    assert diff <= rtol * scale, f"{name}: max |diff| {diff:.3g} of max |value| {scale:.3g} (bound rtol {rtol})"


@pytest.fixture(scope="module")
def collected(smoe, workdir, run):
    """The checkpoint and corpus, smoe collect's stats.h5 (open), and the reference's
    statistics per MoE layer."""
    w = workdir
    torch.set_num_threads(2)
    cfg = CFG
    weights = ref.random_weights(cfg, seed=31)
    model = os.path.join(w, "model")
    ref.save_checkpoint(model, cfg, weights, shards=2)
    g = torch.Generator().manual_seed(4)
    corpus = os.path.join(w, "task.jsonl")
    docs = [torch.randint(0, cfg["vocab_size"], (int(n),), generator=g).tolist() for n in (30, 7, 55, 24, 3, 41)]
    with open(corpus, "w") as f:
        for d in docs:
            f.write(json.dumps({"input_ids": d}) + "\n")
        f.write(json.dumps({"text": "plain text is tokenised as bytes"}) + "\n")
    docs.append(list(b"plain text is tokenised as bytes"))

    out = os.path.join(w, "stats.h5")
    run([smoe, "collect", "--model", model, "--task", f"demo={corpus}", "--out", out, "--context", str(CONTEXT),
         "--out-mean", "--sample", str(SAMPLE_ROWS), "--threads", "2"])

    # The reference: every piece of every document, on its own.
    E = cfg["num_local_experts"]
    acc = {}
    with torch.no_grad():
        for d in docs:
            for b in range(0, len(d), CONTEXT):
                piece = d[b:b + CONTEXT]
                if len(piece) < 2:
                    continue
                traces = {}
                _, routing = ref.forward(cfg, weights, torch.tensor([piece]), torch.float32, traces)
                for l, chosen in routing.items():
                    t = traces[l]
                    z = t["logits"].double()
                    s = acc.setdefault(l, {"tokens": 0, "count": np.zeros(E, np.int64), "gate_sum": np.zeros(E),
                                           "prob_sum": np.zeros(E), "logit_sum": np.zeros(E),
                                           "logit_gram": np.zeros((E, E)), "coact": np.zeros((E, E), np.int64),
                                           "act_norm_sum": np.zeros(E), "reap_sum": np.zeros(E),
                                           "out_sum": np.zeros((E, cfg["hidden_size"]))})
                    s["tokens"] += z.shape[0]
                    c = chosen.numpy()
                    np.add.at(s["count"], c.reshape(-1), 1)
                    np.add.at(s["gate_sum"], c.reshape(-1), t["weights"].double().numpy().reshape(-1))
                    np.add.at(s["act_norm_sum"], c.reshape(-1), t["norms"].numpy().reshape(-1))
                    np.add.at(s["reap_sum"], c.reshape(-1), (t["norms"] * t["weights"].double()).numpy().reshape(-1))
                    s["prob_sum"] += torch.softmax(z, -1).sum(0).numpy()
                    s["logit_sum"] += z.sum(0).numpy()
                    s["logit_gram"] += (z.T @ z).numpy()
                    onehot = np.zeros((z.shape[0], E), np.int64)
                    np.put_along_axis(onehot, c, 1, axis=1)
                    s["coact"] += onehot.T @ onehot
                    s["out_sum"] += t["out_sum"].numpy()

    with h5py.File(out, "r") as f:
        yield dict(file=f, corpus=corpus, ref=acc)


def test_root_attributes_name_the_format_schema_1_and_completeness(collected):
    attrs = collected["file"].attrs
    assert attrs["format"] == "smoe-stats"
    assert attrs["schema_version"] == 1
    assert attrs["complete"] == 1


@pytest.mark.parametrize("key", PROVENANCE)
def test_provenance_attribute_is_a_string(collected, key):
    attrs = collected["file"].attrs
    assert key in attrs, f"no root attribute '{key}'"
    assert isinstance(attrs[key], str), f"'{key}' is {type(attrs[key]).__name__}: {attrs[key]!r}"


def test_task_records_the_corpus_path_and_hash(collected):
    t = collected["file"]["tasks/demo"]
    assert t.attrs["corpus"] == collected["corpus"]
    assert len(t.attrs["corpus_sha256"]) == 64, t.attrs["corpus_sha256"]


def test_moe_layers_are_the_references(collected):
    ours = sorted(int(x) for x in collected["file"]["tasks/demo/layers"])
    assert ours == sorted(collected["ref"]), f"stats.h5 layers {ours}, reference {sorted(collected['ref'])}"


def layer(collected, l):
    """(the layer's group in stats.h5, the reference's statistics of the layer)"""
    return collected["file"][f"tasks/demo/layers/{l}"], collected["ref"][l]


@pytest.mark.parametrize("l", LAYERS, ids=lambda l: f"layer{l}")
def test_layer_counts_tokens_and_names_experts_and_top_k(collected, l):
    lg, s = layer(collected, l)
    assert lg.attrs["tokens"] == s["tokens"], f"layer {l}: tokens {lg.attrs['tokens']}, reference {s['tokens']}"
    assert lg.attrs["num_experts"] == CFG["num_local_experts"]
    assert lg.attrs["top_k"] == CFG["num_experts_per_tok"]


@pytest.mark.parametrize("name", INTEGER_STATS)
@pytest.mark.parametrize("l", LAYERS, ids=lambda l: f"layer{l}")
def test_integer_statistic_is_int64_and_equal(collected, l, name):
    lg, s = layer(collected, l)
    assert lg[name].dtype == np.int64, f"layer {l} {name}: {lg[name].dtype}"
    assert np.array_equal(lg[name][()], s[name]), f"layer {l} {name}:\n{lg[name][()]}\nreference\n{s[name]}"


@pytest.mark.parametrize("name", FLOAT_STATS)
@pytest.mark.parametrize("l", LAYERS, ids=lambda l: f"layer{l}")
def test_float_statistic_is_float64(collected, l, name):
    lg, _ = layer(collected, l)
    assert lg[name].dtype == np.float64, f"layer {l} {name}: {lg[name].dtype}"


@pytest.mark.parametrize("name", FLOAT_STATS)
@pytest.mark.parametrize("l", LAYERS, ids=lambda l: f"layer{l}")
def test_float_statistic_matches_the_reference(collected, l, name):
    lg, s = layer(collected, l)
    assert_close(f"layer {l} {name}", lg[name][()], s[name])


@pytest.mark.parametrize("l", LAYERS, ids=lambda l: f"layer{l}")
def test_out_mean_matches_the_reference(collected, l):
    lg, s = layer(collected, l)
    assert_close(f"layer {l} out_mean", lg["out_mean"][()], s["out_sum"] / s["tokens"])


@pytest.mark.parametrize("l", LAYERS, ids=lambda l: f"layer{l}")
def test_hidden_sample_has_its_rows_and_ascending_keys(collected, l):
    lg, _ = layer(collected, l)
    assert lg["hidden_sample"].shape == (SAMPLE_ROWS, CFG["hidden_size"]), lg["hidden_sample"].shape
    assert lg["hidden_sample_keys"].shape == (SAMPLE_ROWS,), lg["hidden_sample_keys"].shape
    keys = lg["hidden_sample_keys"][()]
    assert np.all(np.diff(keys) > 0), f"layer {l} hidden_sample_keys not ascending: {keys}"
