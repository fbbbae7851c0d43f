"""A family through every job (--family: deepseek_v3, glm4_moe, minimax_m2,
ernie4_5_moe, gpt_oss), on a tiny checkpoint stored as the family publishes it
(DeepSeek-V3 and MiniMax-M2 in FP8 E4M3 with block scales, GLM-4.5 and ERNIE-4.5 in
BF16 with F32 selection biases, gpt-oss's experts stacked in MXFP4 with BF16 biases):
  plan-resources counts the parameters (and an MTP layer's) and the bytes the
    checkpoint holds;
  collect on 1 rank, 2 ranks and 2 ranks layerwise, one thread each: the same
    statistics (OpenBLAS rounds some GEMM shapes differently with another thread
    count, e.g. [120, 64] x [64, 96]: sums then agree to ~1e-6, not bit for bit), and
    expert counts equal to the plain-PyTorch reference's routing;
  cluster (uncurl, factor 2; the other five methods run too) and prune: the pruned
    checkpoint keeps the family layout (its expert-count key, per-group router rows
    and selection biases, experts in the stored format, n_group 1, an MTP layer
    untouched), experts kept alone are byte-identical, merged ones are the merge as
    the reference computes it (FP8 and MXFP4: re-quantised as the reference quantises
    it);
  the pruned model scores like the reference runs it (perplexity, routing), and
    `smoe eval` gives the same results on 1 and 2 ranks."""

import json
import os
import sys

import h5py
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

# name: (extra arguments, ranks; 0 = no mpirun)
COLLECT_RUNS = {"1 rank": ([], 0), "2 ranks": ([], 2), "2 ranks layerwise": (["--schedule", "layerwise"], 2)}
OTHER_METHODS = ["frequency", "mc-smoe", "hc-smoe", "reap", "naee"]


class Family:
    """The tiny config of a family and the names its checkpoint uses."""

    def __init__(self, name):
        self.cfg = cfg = ref.tiny_config(name)
        self.name = name
        self.moe_layers = [l for l in range(cfg["num_hidden_layers"]) if ref._moe_layer(cfg, l)]
        self.key = ref._experts_key(cfg)
        self.E = cfg[self.key]
        block, gate, up, down = ref._names(cfg)
        self.block, self.projections = block, (gate, up, down)
        self.fp8 = cfg.get("quantization_config", {}).get("quant_method") == "fp8"
        self.fp8_block = cfg["quantization_config"]["weight_block_size"] if self.fp8 else None
        self.stacked = name == "gpt_oss"  # one tensor per layer holds every expert
        if self.stacked:
            self.projections = ("gate_up_proj", "down_proj")
        self.mtp = cfg.get("num_nextn_predict_layers", 0) if name in ("deepseek_v3", "glm4_moe") else 0

    def router(self, layer):
        return f"model.layers.{layer}.{self.block}.{'router' if self.stacked else 'gate'}.weight"

    def bias(self, layer):
        return ref._router_bias(self.cfg, f"model.layers.{layer}.")

    def expert(self, layer, e, proj):
        return f"model.layers.{layer}.{self.block}.experts.{e}.{proj}.weight"

    def stacked_parts(self, layer, proj):
        """gpt-oss: the stacked tensors of a projection (blocks, scales, bias)."""
        base = f"model.layers.{layer}.mlp.experts.{proj}"
        return base + "_blocks", base + "_scales", base + "_bias"

    def expert_projections(self):
        """(layer, group, projection) of every expert of the factor-2 pruned checkpoint."""
        return [(l, g, p) for l in self.moe_layers for g in range(self.E // 2) for p in self.projections]


def pytest_generate_tests(metafunc):
    """Per-layer and per-projection tests, for the family given with --family."""
    name = metafunc.config.getoption("--family")
    if name is None:
        return
    f = Family(name)
    if "layer" in metafunc.fixturenames and "group" not in metafunc.fixturenames:
        metafunc.parametrize("layer", f.moe_layers, ids=[f"layer{l}" for l in f.moe_layers])
    if "group" in metafunc.fixturenames:
        eps = f.expert_projections()
        metafunc.parametrize("layer,group,proj", eps, ids=[f"layer{l}-group{g}-{p}" for l, g, p in eps])


@pytest.fixture(scope="module")
def fam(family):
    return Family(family)


def load_checkpoint(folder):
    tensors = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            tensors.update(ref.load_safetensors(os.path.join(folder, f))[0])
    with open(os.path.join(folder, "config.json")) as f:
        return tensors, json.load(f)


def printed(stdout):
    return dict(x.split("=", 1) for x in stdout.split() if "=" in x)


@pytest.fixture(scope="module")
def inputs(fam, workdir):
    """The checkpoint (2 shards), its decoded weights, and a corpus of 24 random documents."""
    torch.set_num_threads(2)
    stored, decoded = ref.stored_checkpoint(fam.cfg, ref.random_weights(fam.cfg, seed=29))
    model = os.path.join(workdir, "model")
    ref.save_checkpoint(model, fam.cfg, stored, shards=2)
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, fam.cfg["vocab_size"], int(rng.integers(10, 50))).tolist() for _ in range(24)]
    corpus = os.path.join(workdir, "task.jsonl")
    with open(corpus, "w") as f:
        for d in docs:
            f.write(json.dumps({"input_ids": d}) + "\n")
    return dict(model=model, decoded=decoded, docs=docs, corpus=corpus)


# ---- plan-resources counts what the checkpoint holds

@pytest.fixture(scope="module")
def plan_resources(fam, inputs, smoe_run):
    plan = json.loads(smoe_run("plan-resources", "--model", inputs["model"], "--json", "--ranks", "2").stdout)
    tensors, _ = load_checkpoint(inputs["model"])
    mtp_prefix = f"model.layers.{fam.cfg['num_hidden_layers']}."
    # A stored lm_head.weight of tied embeddings is not loaded (ERNIE-4.5 ships one).
    unused = "lm_head.weight" if fam.cfg.get("tie_word_embeddings") else None
    weights = {n: t for n, t in tensors.items() if not n.endswith(("_scale_inv", "_scales")) and n != unused}

    def params(n, t):  # an MXFP4 byte holds two weights
        return 2 * t.numel() if n.endswith("_blocks") else t.numel()

    loaded = sum(params(n, t) for n, t in weights.items() if not n.startswith(mtp_prefix))
    mtp = sum(params(n, t) for n, t in weights.items() if n.startswith(mtp_prefix))
    on_disk = sum(t.numel() * t.element_size() for n, t in tensors.items() if n != unused)
    f32_bytes = sum(t.numel() * 2 for n, t in weights.items() if t.dtype == torch.float32)
    print(f"\nplan-resources: {plan['parameters']['total']} parameters ({loaded} loaded), {plan['parameters']['mtp']} in "
          f"the MTP layer ({mtp}), checkpoint bytes {plan['checkpoint_bytes']:.0f} ({on_disk} on disk, {f32_bytes} "
          "more for F32 tensors)")
    return dict(plan=plan, loaded=loaded, mtp=mtp, on_disk=on_disk, f32_bytes=f32_bytes)


def test_plan_resources_counts_the_loaded_parameters(plan_resources):
    assert plan_resources["plan"]["parameters"]["total"] == plan_resources["loaded"]


def test_plan_resources_counts_the_mtp_parameters(plan_resources):
    assert plan_resources["plan"]["parameters"]["mtp"] == plan_resources["mtp"]


def test_plan_resources_counts_the_checkpoint_bytes(plan_resources):
    # The reference stores norms, routers or biases in F32 where plan-resources assumes BF16.
    r = plan_resources
    assert r["plan"]["checkpoint_bytes"] == r["on_disk"] - r["f32_bytes"], \
        f"{r['on_disk']} on disk less {r['f32_bytes']} for the F32 tensors"


# ---- collect

@pytest.fixture(scope="module")
def collected(fam, inputs, workdir, smoe_run):
    """The statistics of the three collect runs, keyed by run name then (layer, dataset), and the
    layers each run wrote. The 1-rank run's file is stats-0.h5."""
    stats, layers = {}, {}
    for name, (extra, ranks) in COLLECT_RUNS.items():
        out = os.path.join(workdir, f"stats-{len(stats)}.h5")
        smoe_run("collect", "--model", inputs["model"], "--task", f"t={inputs['corpus']}", "--out", out, "--out-mean",
                 "--sample", "32", *extra, "--threads", "1", ranks=ranks)
        with h5py.File(out) as f:
            stats[name] = {(l, k): f[f"tasks/t/layers/{l}/{k}"][()] for l in fam.moe_layers
                           for k in f[f"tasks/t/layers/{l}"].keys()}
            layers[name] = sorted(int(l) for l in f["tasks/t/layers"])
    return dict(stats=stats, layers=layers, file=os.path.join(workdir, "stats-0.h5"))


@pytest.fixture(scope="module")
def reference_counts(fam, inputs):
    """How often the reference's routing picks each expert, per MoE layer, over the corpus."""
    counts = {l: np.zeros(fam.E, dtype=np.int64) for l in fam.moe_layers}
    with torch.no_grad():
        for d in inputs["docs"]:
            _, routing = ref.forward(fam.cfg, inputs["decoded"], torch.tensor([d]), torch.float32)
            for l, chosen in routing.items():
                counts[l] += np.bincount(chosen.reshape(-1).numpy(), minlength=fam.E)
    return counts


@pytest.mark.parametrize("name", list(COLLECT_RUNS), ids=[n.replace(" ", "-") for n in COLLECT_RUNS])
def test_collect_writes_the_moe_layers_only(fam, collected, name):
    assert collected["layers"][name] == fam.moe_layers, f"statistics for layers {collected['layers'][name]}"


@pytest.mark.parametrize("name", ["2 ranks", "2 ranks layerwise"], ids=["2-ranks", "2-ranks-layerwise"])
def test_collect_on_2_ranks_gives_the_1_rank_statistics(collected, name):
    """Integers exact, sums within 1e-9."""
    base, s = collected["stats"]["1 rank"], collected["stats"][name]
    differ = [k for k, v in base.items()
              if not (np.array_equal(s[k], v) if v.dtype.kind == "i" else np.allclose(s[k], v, rtol=1e-9, atol=1e-9))]
    assert not differ, f"(layer, dataset) differing from 1 rank: {differ}"


def test_collect_counts_equal_the_references_routing(collected, reference_counts, layer):
    got = collected["stats"]["1 rank"][(layer, "count")]
    assert np.array_equal(got, reference_counts[layer]), \
        f"counts {got.tolist()}, reference {reference_counts[layer].tolist()}"


# ---- cluster (uncurl, factor 2) and prune

@pytest.fixture(scope="module")
def pruned(fam, inputs, collected, workdir, smoe_run):
    plan = os.path.join(workdir, "plan.h5")
    smoe_run("cluster", "--stats", collected["file"], "--task", "t", "--method", "uncurl", "--factor", "2",
             "--out", plan)
    folder = os.path.join(workdir, "pruned")
    smoe_run("prune", "--model", inputs["model"], "--plan", plan, "--out", folder, "--no-align")
    old, _ = load_checkpoint(inputs["model"])
    new, cfg = load_checkpoint(folder)
    with h5py.File(plan) as f:
        groups = {l: (f[f"layers/{l}/group"][()], f[f"layers/{l}/weight"][()], f[f"layers/{l}/reference"][()])
                  for l in fam.moe_layers}
    members = {(l, g): [e for e in range(fam.E) if groups[l][0][e] == g] for l in fam.moe_layers
               for g in range(fam.E // 2)}
    print(f"\nuncurl factor 2 groups: {members}")
    return dict(folder=folder, old=old, new=new, cfg=cfg, groups=groups, members=members)


def test_pruned_config_halves_the_expert_count(fam, pruned):
    assert pruned["cfg"][fam.key] == fam.E // 2


def test_pruned_config_has_one_expert_group(fam, pruned):
    if fam.cfg.get("n_group", 1) == 1:
        pytest.skip(f"{fam.name} routes without groups here")
    assert pruned["cfg"]["n_group"] == 1 and pruned["cfg"]["topk_group"] == 1, \
        f"n_group {pruned['cfg']['n_group']}, topk_group {pruned['cfg']['topk_group']}"


def test_pruned_config_keeps_everything_else(fam, pruned):
    changed = {k for k in set(fam.cfg) | set(pruned["cfg"])
               if k not in (fam.key, "n_group", "topk_group") and fam.cfg.get(k) != pruned["cfg"].get(k)}
    assert not changed, f"keys changed: {sorted(changed)}"


def test_pruned_checkpoint_copies_the_mtp_layer(fam, pruned):
    if not fam.mtp:
        pytest.skip(f"{fam.name}'s checkpoint stores no MTP layer")
    old, new = pruned["old"], pruned["new"]
    mtp = [n for n in old if n.startswith(f"model.layers.{fam.cfg['num_hidden_layers']}.")]
    assert mtp, "the checkpoint has no MTP layer"
    changed = [n for n in mtp if not torch.equal(old[n], new[n])]
    assert not changed, f"{len(changed)} of the MTP layer's {len(mtp)} tensors changed: {changed[:5]}"


def test_pruned_tensors_outside_the_moe_blocks_are_copied(fam, pruned):
    old, new = pruned["old"], pruned["new"]
    moe = tuple(f"model.layers.{l}.{fam.block}." for l in fam.moe_layers)
    outside = [n for n in old if not n.startswith(moe)]
    changed = [n for n in outside if n not in new or not torch.equal(old[n], new[n])]
    assert not changed, f"{len(changed)} of {len(outside)} tensors changed or missing: {changed[:5]}"


def test_pruned_router_and_bias_have_one_row_per_group(fam, pruned, layer):
    rows = pruned["new"][fam.router(layer)].shape[0]
    assert rows == fam.E // 2, f"router rows {rows}"
    if fam.stacked:
        logit_bias = pruned["new"][f"model.layers.{layer}.mlp.router.bias"]
        assert logit_bias.shape == (fam.E // 2,), f"router bias shape {logit_bias.shape}"
    if fam.bias(layer):
        bias = pruned["new"][fam.bias(layer)]
        assert bias.shape == pruned["old"][fam.bias(layer)].shape[:-1] + (fam.E // 2,), f"bias shape {bias.shape}"


def test_pruned_group_keeps_its_reference_members_selection_bias(fam, pruned, layer):
    """The most-used router policy."""
    if not fam.bias(layer):
        pytest.skip(f"{fam.name} has no selection bias")
    reference = torch.as_tensor(pruned["groups"][layer][2])
    old = pruned["old"][fam.bias(layer)]
    assert torch.equal(pruned["new"][fam.bias(layer)], old.index_select(old.dim() - 1, reference)), \
        f"reference members {reference.tolist()}"


def test_pruned_experts_beyond_the_groups_are_gone(fam, pruned, layer):
    if fam.stacked:
        shapes = {n: pruned["new"][n].shape[0] for proj in fam.projections for n in fam.stacked_parts(layer, proj)}
        assert set(shapes.values()) == {fam.E // 2}, f"stacked tensors' expert counts {shapes}"
        return
    p = f"model.layers.{layer}.{fam.block}."
    left = [n for n in pruned["new"] if n.startswith(p + f"experts.{fam.E // 2}.")]
    assert not left, f"experts {fam.E // 2}.. still present: {left[:5]}"


def test_kept_expert_keeps_its_bytes(fam, pruned, layer, group, proj):
    members = pruned["members"][(layer, group)]
    if len(members) != 1:
        pytest.skip(f"group {group} merges experts {members}")
    if fam.stacked:
        changed = [n for n in fam.stacked_parts(layer, proj)
                   if not torch.equal(pruned["new"][n][group], pruned["old"][n][members[0]])]
        assert not changed, f"expert {members[0]} kept as {group}: bytes changed in {changed}"
        return
    name, src = fam.expert(layer, group, proj), fam.expert(layer, members[0], proj)
    new, old = pruned["new"], pruned["old"]
    assert torch.equal(new[name], old[src]), f"expert {members[0]} kept as {group}: bytes changed"
    if fam.fp8:
        assert torch.equal(new[name + "_scale_inv"], old[src + "_scale_inv"]), f"expert {members[0]}: scales changed"


def test_merged_expert_is_the_merge_as_the_reference_computes_it(fam, pruned, layer, group, proj):
    members = pruned["members"][(layer, group)]
    if len(members) == 1:
        pytest.skip(f"group {group} keeps expert {members[0]} alone")
    old, weight = pruned["old"], pruned["groups"][layer][1]
    if fam.stacked:
        check_merged_mxfp4(fam, pruned, layer, group, proj, members, weight)
        return
    name = fam.expert(layer, group, proj)

    def decoded(e):
        n = fam.expert(layer, e, proj)
        return ref.dequantize_fp8(old[n], old[n + "_scale_inv"], fam.fp8_block) if fam.fp8 else old[n]

    merged = sum(weight[e] * decoded(e).double() for e in members)
    if not fam.fp8:
        want = merged.to(old[fam.expert(layer, members[0], proj)].dtype)
        assert torch.equal(pruned["new"][name], want), "the merge differs from the reference's, rounded once"
        return
    codes, scale = pruned["new"][name], pruned["new"][name + "_scale_inv"]
    want_codes, want_scale = ref.quantize_fp8(merged.float(), fam.fp8_block)
    mismatch = (codes != want_codes.codes).float().mean().item()
    step = (codes.int() - want_codes.codes.int()).abs().max().item()
    print(f"layer {layer} group {group} {proj}: merge of {members} re-quantised in {fam.fp8_block} blocks "
          f"(codes differing from the reference's: {mismatch:.2%}, by at most {step} step)")
    assert torch.allclose(scale, want_scale, rtol=1e-6, atol=0), "block scales differ from the reference's"
    assert mismatch <= 1e-3, f"codes differing from the reference's: {mismatch:.2%}"
    assert step <= 1, f"codes differ from the reference's by up to {step} steps"


def check_merged_mxfp4(fam, pruned, layer, group, proj, members, weight):
    """gpt-oss: the members decoded, merged in float64 (no alignment), encoded again as the reference
    encodes MXFP4; the biases merged and rounded to their dtype."""
    blocks, scales, bias = fam.stacked_parts(layer, proj)
    old, new = pruned["old"], pruned["new"]
    merged = sum(weight[e] * ref.dequantize_mxfp4(old[blocks][e], old[scales][e]).double() for e in members)
    want_blocks, want_scales = ref.quantize_mxfp4(merged)
    codes = torch.stack((new[blocks][group] & 15, new[blocks][group] >> 4), -1)
    want = torch.stack((want_blocks & 15, want_blocks >> 4), -1)
    mismatch = (codes != want).float().mean().item()
    error = (ref.dequantize_mxfp4(new[blocks][group], new[scales][group]).double() - merged).abs().max().item()
    print(f"layer {layer} group {group} {proj}: merge of {members} re-encoded in MXFP4 (codes differing from the "
          f"reference's: {mismatch:.2%}; largest error of the encoding {error:.3g}, largest weight "
          f"{merged.abs().max().item():.3g})")
    assert torch.equal(new[scales][group], want_scales), "scales differ from the reference's"
    assert mismatch <= 1e-3, f"codes differing from the reference's: {mismatch:.2%}"
    want_bias = sum(weight[e] * old[bias][e].double() for e in members).to(old[bias].dtype)
    assert torch.equal(new[bias][group], want_bias), "the merged bias differs from the reference's"


def test_some_expert_projections_are_merges(fam, pruned):
    merged = sum(len(pruned["members"][(l, g)]) > 1 for l, g, _ in fam.expert_projections())
    assert merged > 0, "no merged projection to check"


# ---- the other methods: each plan prunes to a model that runs

@pytest.fixture(scope="module", params=OTHER_METHODS)
def other_method(request, fam, inputs, collected, workdir, smoe_run):
    method = request.param
    plan, out = os.path.join(workdir, f"plan-{method}.h5"), os.path.join(workdir, f"pruned-{method}")
    smoe_run("cluster", "--stats", collected["file"], "--task", "t", "--method", method, "--factor", "2",
             "--out", plan, *(["--model", inputs["model"]] if method == "naee" else []))
    smoe_run("prune", "--model", inputs["model"], "--plan", plan, "--out", out)
    p = smoe_run("score", "--model", out, "--corpus", inputs["corpus"], "--threads", "2")
    ppl = float(printed(p.stdout)["perplexity"])
    with open(os.path.join(out, "config.json")) as f:
        experts = json.load(f)[fam.key]
    print(f"\n{method}: pruned to {experts} experts, perplexity {ppl:.3f}")
    return dict(ppl=ppl, experts=experts)


def test_other_method_prunes_to_half_the_experts(fam, other_method):
    assert other_method["experts"] == fam.E // 2


def test_other_method_pruned_model_scores_a_finite_perplexity(other_method):
    assert np.isfinite(other_method["ppl"])


# ---- the pruned model runs as the reference runs it

@pytest.fixture(scope="module")
def pruned_weights(fam, pruned):
    """The (uncurl) pruned model's weights as the reference runs them."""
    return ref.dequantize_checkpoint(pruned["new"], fam.fp8_block) if fam.fp8 else \
        {n: t.float() if t.is_floating_point() else t for n, t in pruned["new"].items()}


@pytest.fixture(scope="module")
def pruned_reference(inputs, pruned, pruned_weights):
    """The reference's perplexity and routing of the pruned model on the corpus."""
    pdecoded = pruned_weights
    nll = n = 0.0
    routing = {}
    with torch.no_grad():
        for d in inputs["docs"]:
            logits, rt = ref.forward(pruned["cfg"], pdecoded, torch.tensor([d]), torch.float32)
            logp = torch.log_softmax(logits[0, :-1].double(), -1)
            nll -= logp.gather(1, torch.tensor(d[1:])[:, None]).sum().item()
            n += len(d) - 1
            for l, c in rt.items():
                routing.setdefault(l, []).append(c)
    return dict(ppl=float(np.exp(nll / n)), routing=routing)


@pytest.fixture(scope="module", params=[0, 2], ids=["1-rank", "2-ranks"])
def pruned_score(request, pruned, pruned_reference, inputs, workdir, smoe_run):
    ranks = request.param
    out = os.path.join(workdir, f"pruned-logits-{ranks}.safetensors")
    p = smoe_run("score", "--model", pruned["folder"], "--corpus", inputs["corpus"], "--logits", out,
                 *(["--threads", "1"] if ranks else []), ranks=ranks)
    ppl = float(printed(p.stdout)["perplexity"])
    got, _ = ref.load_safetensors(out)
    differ = [l for l, c in pruned_reference["routing"].items()
              if not torch.equal(got[f"routing.layer{l}.experts"].sort(1).values, torch.cat(c).sort(1).values)]
    print(f"\npruned model on {max(ranks, 1)} rank(s): perplexity {ppl:.6f} vs reference "
          f"{pruned_reference['ppl']:.6f}, routing differing in layers {differ}")
    return dict(ppl=ppl, ref_ppl=pruned_reference["ppl"], differ=differ)


def test_pruned_model_perplexity_equals_the_references(pruned_score):
    assert pruned_score["ppl"] == pytest.approx(pruned_score["ref_ppl"], rel=1e-5)


def test_pruned_model_routing_equals_the_references(pruned_score):
    assert not pruned_score["differ"], f"routing differs in layers {pruned_score['differ']}"


# ---- smoe eval of the pruned model on 1 and 2 ranks

@pytest.fixture(scope="module")
def evals(pruned, workdir, smoe_run):
    smoe_run("data", "synth", "--out", os.path.join(workdir, "suite"), "--facts", "20", "--train", "2",
             "--eval", "6")
    results = []
    for ranks in (0, 2):
        out = os.path.join(workdir, f"eval-{ranks}.json")
        smoe_run("eval", "--model", pruned["folder"], "--out", out, "--task", f"years={workdir}/suite/years/eval.jsonl",
                 "--threads", "1", ranks=ranks)
        with open(out) as f:
            results.append(json.load(f))
    print(f"\nsmoe eval of the pruned model: {json.dumps(results[0]['results'])[:120]}")
    return results


def test_eval_of_the_pruned_model_reports_perplexity(evals):
    assert "perplexity" in json.dumps(evals[0]["results"]), json.dumps(evals[0]["results"])


def test_eval_of_the_pruned_model_is_the_same_on_2_ranks(evals):
    one, two = evals[0]["results"], evals[1]["results"]
    assert one == two, f"1 rank {json.dumps(one)[:300]}, 2 ranks {json.dumps(two)[:300]}"


def test_eval_generates_the_references_greedy_tokens(pruned, pruned_weights, evals, workdir):
    """smoe eval generates with a key/value cache, one new token per forward call;
    the reference runs the whole sequence for each token. (The prompts are short:
    the GPU check on the CPU, mpi.gpu-check-on-cpu, takes gpt-oss's cache past its
    sliding window.)"""
    want = []
    with open(f"{workdir}/suite/years/eval.jsonl") as f, torch.no_grad():
        for line in f:
            r = json.loads(line)
            if "prompt" not in r:
                continue
            seq, out = list(r["prompt"].encode()), []
            for _ in (r["answer"] + "\n").encode():
                logits, _ = ref.forward(pruned["cfg"], pruned_weights, torch.tensor([seq + out]), torch.float32)
                out.append(int(logits[0, -1].argmax()))
            want.append(out)
    for ranks, e in zip((1, 2), evals):
        got = e["samples"]["years"]["generate"]["generated"]
        assert got == want, f"{ranks} rank(s): generated {got}, reference {want}"
