"""The DeepSeek-V3 family through every job, on a tiny FP8 checkpoint (16 x 16
block scales, group-limited sigmoid routing with a selection bias, a dense first
layer, a shared expert, a stored MTP layer):
  plan-resources counts the parameters (and the MTP layer's) and the bytes the
    checkpoint holds;
  collect on 1 rank, 2 ranks and 2 ranks layerwise, one thread each: the same
    statistics (OpenBLAS rounds some GEMM shapes differently with another thread
    count, e.g. [120, 64] x [64, 96]: sums then agree to ~1e-6, not bit for bit), and
    expert counts equal to the plain-PyTorch reference's routing;
  cluster (uncurl, factor 2; the other five methods run too) and prune: the pruned checkpoint keeps the family
    layout (n_routed_experts, per-group router rows and selection biases, FP8
    experts with block scales, n_group 1, the MTP layer untouched), experts kept
    alone are byte-identical, merged ones are the merge re-quantised as the
    reference quantises it;
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

CFG = ref.tiny_config("deepseek_v3")
MOE_LAYERS = [l for l in range(CFG["num_hidden_layers"]) if ref._moe_layer(CFG, l)]
E = CFG["n_routed_experts"]
PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
# (layer, group, projection) of every expert of the factor-2 pruned checkpoint.
EXPERT_PROJECTIONS = [(l, g, proj) for l in MOE_LAYERS for g in range(E // 2) for proj in PROJECTIONS]
# name: (extra arguments, ranks; 0 = no mpirun)
COLLECT_RUNS = {"1 rank": ([], 0), "2 ranks": ([], 2), "2 ranks layerwise": (["--schedule", "layerwise"], 2)}
OTHER_METHODS = ["frequency", "mc-smoe", "hc-smoe", "reap", "naee"]


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
def inputs(workdir):
    """The FP8 checkpoint (2 shards), its decoded weights, and a corpus of 24 random documents."""
    torch.set_num_threads(2)
    stored, decoded = ref.fp8_checkpoint(CFG, ref.random_weights(CFG, seed=29))
    model = os.path.join(workdir, "model")
    ref.save_checkpoint(model, CFG, stored, shards=2)
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, CFG["vocab_size"], int(rng.integers(10, 50))).tolist() for _ in range(24)]
    corpus = os.path.join(workdir, "task.jsonl")
    with open(corpus, "w") as f:
        for d in docs:
            f.write(json.dumps({"input_ids": d}) + "\n")
    return dict(model=model, decoded=decoded, docs=docs, corpus=corpus,
                block=CFG["quantization_config"]["weight_block_size"])


# ---- plan-resources counts what the checkpoint holds

@pytest.fixture(scope="module")
def plan_resources(inputs, smoe_run):
    plan = json.loads(smoe_run("plan-resources", "--model", inputs["model"], "--json", "--ranks", "2").stdout)
    tensors, _ = load_checkpoint(inputs["model"])
    mtp_prefix = f"model.layers.{CFG['num_hidden_layers']}."
    loaded = sum(t.numel() for n, t in tensors.items() if not n.endswith("_scale_inv") and not n.startswith(mtp_prefix))
    mtp = sum(t.numel() for n, t in tensors.items() if not n.endswith("_scale_inv") and n.startswith(mtp_prefix))
    on_disk = sum(t.numel() * t.element_size() for t in tensors.values())
    norm_bytes = sum(t.numel() * 2 for n, t in tensors.items() if t.dtype == torch.float32 and not n.endswith("_scale_inv"))
    print(f"\nplan-resources: {plan['parameters']['total']} parameters ({loaded} loaded), {plan['parameters']['mtp']} in "
          f"the MTP layer ({mtp}), checkpoint bytes {plan['checkpoint_bytes']:.0f} ({on_disk} on disk, {norm_bytes} "
          "for the F32 norms)")
    return dict(plan=plan, loaded=loaded, mtp=mtp, on_disk=on_disk, norm_bytes=norm_bytes)


def test_plan_resources_counts_the_loaded_parameters(plan_resources):
    assert plan_resources["plan"]["parameters"]["total"] == plan_resources["loaded"]


def test_plan_resources_counts_the_mtp_parameters(plan_resources):
    assert plan_resources["plan"]["parameters"]["mtp"] == plan_resources["mtp"]


def test_plan_resources_counts_the_checkpoint_bytes(plan_resources):
    # The reference stores norms and biases in F32 where plan-resources assumes BF16 (as Kimi-K2 ships them).
    r = plan_resources
    assert r["plan"]["checkpoint_bytes"] == r["on_disk"] - r["norm_bytes"], \
        f"{r['on_disk']} on disk less {r['norm_bytes']} for the F32 norms"


# ---- collect

@pytest.fixture(scope="module")
def collected(inputs, workdir, smoe_run):
    """The statistics of the three collect runs, keyed by run name then (layer, dataset), and the
    layers each run wrote. The 1-rank run's file is stats-0.h5."""
    stats, layers = {}, {}
    for name, (extra, ranks) in COLLECT_RUNS.items():
        out = os.path.join(workdir, f"stats-{len(stats)}.h5")
        smoe_run("collect", "--model", inputs["model"], "--task", f"t={inputs['corpus']}", "--out", out, "--out-mean",
                 "--sample", "32", *extra, "--threads", "1", ranks=ranks)
        with h5py.File(out) as f:
            stats[name] = {(l, k): f[f"tasks/t/layers/{l}/{k}"][()] for l in MOE_LAYERS
                           for k in f[f"tasks/t/layers/{l}"].keys()}
            layers[name] = sorted(int(l) for l in f["tasks/t/layers"])
    return dict(stats=stats, layers=layers, file=os.path.join(workdir, "stats-0.h5"))


@pytest.fixture(scope="module")
def reference_counts(inputs):
    """How often the reference's routing picks each expert, per MoE layer, over the corpus."""
    counts = {l: np.zeros(E, dtype=np.int64) for l in MOE_LAYERS}
    with torch.no_grad():
        for d in inputs["docs"]:
            _, routing = ref.forward(CFG, inputs["decoded"], torch.tensor([d]), torch.float32)
            for l, chosen in routing.items():
                counts[l] += np.bincount(chosen.reshape(-1).numpy(), minlength=E)
    return counts


@pytest.mark.parametrize("name", list(COLLECT_RUNS), ids=[n.replace(" ", "-") for n in COLLECT_RUNS])
def test_collect_writes_the_moe_layers_only(collected, name):
    assert collected["layers"][name] == MOE_LAYERS, f"statistics for layers {collected['layers'][name]}"


@pytest.mark.parametrize("name", ["2 ranks", "2 ranks layerwise"], ids=["2-ranks", "2-ranks-layerwise"])
def test_collect_on_2_ranks_gives_the_1_rank_statistics(collected, name):
    """Integers exact, sums within 1e-9."""
    base, s = collected["stats"]["1 rank"], collected["stats"][name]
    differ = [k for k, v in base.items()
              if not (np.array_equal(s[k], v) if v.dtype.kind == "i" else np.allclose(s[k], v, rtol=1e-9, atol=1e-9))]
    assert not differ, f"(layer, dataset) differing from 1 rank: {differ}"


@pytest.mark.parametrize("layer", MOE_LAYERS, ids=[f"layer{l}" for l in MOE_LAYERS])
def test_collect_counts_equal_the_references_routing(collected, reference_counts, layer):
    got = collected["stats"]["1 rank"][(layer, "count")]
    assert np.array_equal(got, reference_counts[layer]), \
        f"counts {got.tolist()}, reference {reference_counts[layer].tolist()}"


# ---- cluster (uncurl, factor 2) and prune

@pytest.fixture(scope="module")
def pruned(inputs, collected, workdir, smoe_run):
    plan = os.path.join(workdir, "plan.h5")
    smoe_run("cluster", "--stats", collected["file"], "--task", "t", "--method", "uncurl", "--factor", "2",
             "--out", plan)
    folder = os.path.join(workdir, "pruned")
    smoe_run("prune", "--model", inputs["model"], "--plan", plan, "--out", folder, "--no-align")
    old, _ = load_checkpoint(inputs["model"])
    new, cfg = load_checkpoint(folder)
    with h5py.File(plan) as f:
        groups = {l: (f[f"layers/{l}/group"][()], f[f"layers/{l}/weight"][()], f[f"layers/{l}/reference"][()])
                  for l in MOE_LAYERS}
    members = {(l, g): [e for e in range(E) if groups[l][0][e] == g] for l in MOE_LAYERS for g in range(E // 2)}
    print(f"\nuncurl factor 2 groups: {members}")
    return dict(folder=folder, old=old, new=new, cfg=cfg, groups=groups, members=members)


def test_pruned_config_halves_n_routed_experts(pruned):
    assert pruned["cfg"]["n_routed_experts"] == E // 2


def test_pruned_config_has_one_expert_group(pruned):
    assert pruned["cfg"]["n_group"] == 1 and pruned["cfg"]["topk_group"] == 1, \
        f"n_group {pruned['cfg']['n_group']}, topk_group {pruned['cfg']['topk_group']}"


def test_pruned_config_keeps_the_quantization_config(pruned):
    assert pruned["cfg"]["quantization_config"] == CFG["quantization_config"]


def test_pruned_config_keeps_the_model_type(pruned):
    assert pruned["cfg"]["model_type"] == "deepseek_v3"


def test_pruned_checkpoint_copies_the_mtp_layer(pruned):
    old, new = pruned["old"], pruned["new"]
    mtp = [n for n in old if n.startswith(f"model.layers.{CFG['num_hidden_layers']}.")]
    assert mtp, "the checkpoint has no MTP layer"
    changed = [n for n in mtp if not torch.equal(old[n], new[n])]
    assert not changed, f"{len(changed)} of the MTP layer's {len(mtp)} tensors changed: {changed[:5]}"


@pytest.mark.parametrize("layer", MOE_LAYERS, ids=[f"layer{l}" for l in MOE_LAYERS])
def test_pruned_router_and_bias_have_one_row_per_group(pruned, layer):
    p = f"model.layers.{layer}.mlp."
    rows = (pruned["new"][p + "gate.weight"].shape[0], pruned["new"][p + "gate.e_score_correction_bias"].shape[0])
    assert rows == (E // 2, E // 2), f"router rows, bias rows {rows}"


@pytest.mark.parametrize("layer", MOE_LAYERS, ids=[f"layer{l}" for l in MOE_LAYERS])
def test_pruned_group_keeps_its_reference_members_selection_bias(pruned, layer):
    """The most-used router policy."""
    p = f"model.layers.{layer}.mlp."
    reference = pruned["groups"][layer][2]
    assert torch.equal(pruned["new"][p + "gate.e_score_correction_bias"],
                       pruned["old"][p + "gate.e_score_correction_bias"][reference]), f"reference members {reference}"


@pytest.mark.parametrize("layer", MOE_LAYERS, ids=[f"layer{l}" for l in MOE_LAYERS])
def test_pruned_experts_beyond_the_groups_are_gone(pruned, layer):
    p = f"model.layers.{layer}.mlp."
    left = [n for n in pruned["new"] if n.startswith(p + f"experts.{E // 2}.")]
    assert not left, f"experts {E // 2}.. still present: {left[:5]}"


@pytest.mark.parametrize("layer,group,proj", EXPERT_PROJECTIONS,
                         ids=[f"layer{l}-group{g}-{p}" for l, g, p in EXPERT_PROJECTIONS])
def test_kept_expert_keeps_its_fp8_bytes_and_scales(pruned, layer, group, proj):
    members = pruned["members"][(layer, group)]
    if len(members) != 1:
        pytest.skip(f"group {group} merges experts {members}")
    p = f"model.layers.{layer}.mlp."
    name, src = p + f"experts.{group}.{proj}.weight", p + f"experts.{members[0]}.{proj}.weight"
    new, old = pruned["new"], pruned["old"]
    assert torch.equal(new[name], old[src]) and torch.equal(new[name + "_scale_inv"], old[src + "_scale_inv"]), \
        f"expert {members[0]} kept as {group}: FP8 bytes or scales changed"


@pytest.mark.parametrize("layer,group,proj", EXPERT_PROJECTIONS,
                         ids=[f"layer{l}-group{g}-{p}" for l, g, p in EXPERT_PROJECTIONS])
def test_merged_expert_is_the_merge_requantised_as_the_reference_does(pruned, inputs, layer, group, proj):
    members = pruned["members"][(layer, group)]
    if len(members) == 1:
        pytest.skip(f"group {group} keeps expert {members[0]} alone")
    block = inputs["block"]
    p = f"model.layers.{layer}.mlp."
    name = p + f"experts.{group}.{proj}.weight"
    codes, scale = pruned["new"][name], pruned["new"][name + "_scale_inv"]
    old, weight = pruned["old"], pruned["groups"][layer][1]
    merged = sum(weight[e] * ref.dequantize_fp8(old[p + f"experts.{e}.{proj}.weight"],
                                                old[p + f"experts.{e}.{proj}.weight_scale_inv"], block).double()
                 for e in members).float()
    want_codes, want_scale = ref.quantize_fp8(merged, block)
    mismatch = (codes != want_codes.codes).float().mean().item()
    step = (codes.int() - want_codes.codes.int()).abs().max().item()
    print(f"layer {layer} group {group} {proj}: merge of {members} re-quantised in {block} blocks "
          f"(codes differing from the reference's: {mismatch:.2%}, by at most {step} step)")
    assert torch.allclose(scale, want_scale, rtol=1e-6, atol=0), "block scales differ from the reference's"
    assert mismatch <= 1e-3, f"codes differing from the reference's: {mismatch:.2%}"
    assert step <= 1, f"codes differ from the reference's by up to {step} steps"


def test_some_expert_projections_are_merges(pruned):
    merged = sum(len(pruned["members"][(l, g)]) > 1 for l, g, _ in EXPERT_PROJECTIONS)
    assert merged > 0, "no merged FP8 projection to check"


# ---- the other methods: each plan prunes to a model that runs

@pytest.fixture(scope="module", params=OTHER_METHODS)
def other_method(request, inputs, collected, workdir, smoe_run):
    method = request.param
    plan, out = os.path.join(workdir, f"plan-{method}.h5"), os.path.join(workdir, f"pruned-{method}")
    smoe_run("cluster", "--stats", collected["file"], "--task", "t", "--method", method, "--factor", "2",
             "--out", plan, *(["--model", inputs["model"]] if method == "naee" else []))
    smoe_run("prune", "--model", inputs["model"], "--plan", plan, "--out", out)
    p = smoe_run("score", "--model", out, "--corpus", inputs["corpus"], "--threads", "2")
    ppl = float(printed(p.stdout)["perplexity"])
    with open(os.path.join(out, "config.json")) as f:
        experts = json.load(f)["n_routed_experts"]
    print(f"\n{method}: pruned to {experts} experts, perplexity {ppl:.3f}")
    return dict(ppl=ppl, experts=experts)


def test_other_method_prunes_to_half_the_experts(other_method):
    assert other_method["experts"] == E // 2


def test_other_method_pruned_model_scores_a_finite_perplexity(other_method):
    assert np.isfinite(other_method["ppl"])


# ---- the pruned model runs as the reference runs it

@pytest.fixture(scope="module")
def pruned_reference(inputs, pruned):
    """The reference's perplexity and routing of the (uncurl) pruned model on the corpus."""
    pdecoded = ref.dequantize_checkpoint(pruned["new"], inputs["block"])
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
            results.append(json.load(f)["results"])
    print(f"\nsmoe eval of the pruned model: {json.dumps(results[0])[:120]}")
    return results


def test_eval_of_the_pruned_model_reports_perplexity(evals):
    assert "perplexity" in json.dumps(evals[0]), json.dumps(evals[0])


def test_eval_of_the_pruned_model_is_the_same_on_2_ranks(evals):
    assert evals[0] == evals[1], f"1 rank {json.dumps(evals[0])[:300]}, 2 ranks {json.dumps(evals[1])[:300]}"
