"""smoe cluster and smoe prune end to end on tiny Mixtral-layout checkpoints:
  every method at factors 2 and 4 gives a pruned checkpoint that loads and runs
  (1 rank; merged ones on 2 ranks too), with the expert counts the plan says;
  NAEE's search split over 2 ranks keeps the experts it keeps on 1 rank;
  an adaptive budget keeps at least one expert per layer and the model runs;
  a plan that keeps every expert gives a bit-identical checkpoint;
  merging experts that are hidden-unit permutations of one another leaves the
  layer's output unchanged (and does not without alignment);
  bad plans and bad options exit 2 naming the file and the fault, writing nothing."""

import json
import os
import shutil
import sys

import h5py
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

METHODS = ["frequency", "uncurl", "mc-smoe", "hc-smoe", "reap", "naee"]
CASES = [(method, factor) for method in METHODS for factor in (2, 4)]
CASE_IDS = [f"{method}-factor{factor}" for method, factor in CASES]
# The merged pruned checkpoints that are scored on 2 ranks too.
TWO_RANK_CASES = [("uncurl", 2), ("hc-smoe", 2)]
LAYERS = range(3)


def load_checkpoint(folder):
    tensors = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            t, meta = ref.load_safetensors(os.path.join(folder, f))
            tensors.update(t)
    with open(os.path.join(folder, "config.json")) as f:
        return tensors, json.load(f), meta


def figures(stdout):
    """The figures smoe score prints, not the speed (tokens_per_second differs from run to run)."""
    return [x for x in stdout.split() if not x.startswith("tokens_per_second=")]


def perplexity(stdout):
    return [x for x in stdout.split() if x.startswith("perplexity=")]


@pytest.fixture(scope="module")
def inputs(workdir, smoe_run):
    """The tiny Mixtral checkpoint (2 shards), a corpus of 30 random documents and its statistics."""
    cfg = ref.tiny_config("mixtral")
    weights = ref.random_weights(cfg, seed=17)
    model = os.path.join(workdir, "model")
    ref.save_checkpoint(model, cfg, weights, shards=2)
    rng = np.random.default_rng(1)
    corpus = os.path.join(workdir, "task.jsonl")
    with open(corpus, "w") as f:
        for _ in range(30):
            f.write(json.dumps({"input_ids": rng.integers(0, cfg["vocab_size"], int(rng.integers(10, 60))).tolist()})
                    + "\n")
    stats = os.path.join(workdir, "stats.h5")
    smoe_run("collect", "--model", model, "--task", f"t={corpus}", "--out", stats, "--out-mean", "--sample", "24",
             "--threads", "2")
    return dict(cfg=cfg, weights=weights, model=model, corpus=corpus, stats=stats)


@pytest.fixture(scope="module")
def pruned(inputs, workdir, smoe_run):
    """Every method at factors 2 and 4: cluster, prune, load the pruned checkpoint and score it
    on 1 rank (and on 2 ranks for TWO_RANK_CASES). Keyed by (method, factor)."""
    results = {}
    print(f"\n{'case':20s} {'experts':>7s}  score")
    for method, factor in CASES:
        plan = os.path.join(workdir, f"plan-{method}-{factor}.h5")
        out = os.path.join(workdir, f"pruned-{method}-{factor}")
        smoe_run("cluster", "--stats", inputs["stats"], "--task", "t", "--method", method, "--factor", str(factor),
                 "--out", plan, "--model", inputs["model"])
        smoe_run("prune", "--model", inputs["model"], "--plan", plan, "--out", out)
        tensors, config, meta = load_checkpoint(out)
        one = smoe_run("score", "--model", out, "--corpus", inputs["corpus"], "--threads", "1")
        two = None
        if (method, factor) in TWO_RANK_CASES:
            two = smoe_run("score", "--model", out, "--corpus", inputs["corpus"], "--threads", "1", ranks=2)
        results[(method, factor)] = dict(E=8 // factor, tensors=tensors, config=config, meta=meta, one=one, two=two)
        print(f"{method + ' factor ' + str(factor):20s} {8 // factor:7d}  {' '.join(perplexity(one.stdout))}"
              + (f" (2 ranks: {' '.join(perplexity(two.stdout))})" if two else ""))
    return results


@pytest.mark.parametrize("method,factor", CASES, ids=CASE_IDS)
def test_pruned_config_has_the_plans_expert_count(pruned, method, factor):
    r = pruned[(method, factor)]
    assert r["config"]["num_local_experts"] == r["E"], \
        f"num_local_experts {r['config']['num_local_experts']}, the plan keeps {r['E']}"


@pytest.mark.parametrize("method,factor", CASES, ids=CASE_IDS)
def test_pruned_experts_are_numbered_from_zero(pruned, method, factor):
    r = pruned[(method, factor)]
    experts = {int(n.split(".")[5]) for n in r["tensors"] if ".experts." in n}
    assert experts == set(range(r["E"])), f"expert indices {sorted(experts)}, expected 0..{r['E'] - 1}"


@pytest.mark.parametrize("method,factor", CASES, ids=CASE_IDS)
def test_pruned_router_has_one_row_per_expert(pruned, method, factor):
    r = pruned[(method, factor)]
    rows = [r["tensors"][f"model.layers.{l}.block_sparse_moe.gate.weight"].shape[0] for l in LAYERS]
    assert all(n == r["E"] for n in rows), f"router rows per layer {rows}, expected {r['E']}"


@pytest.mark.parametrize("method,factor", CASES, ids=CASE_IDS)
def test_pruned_shards_carry_the_plans_provenance(pruned, method, factor):
    meta = pruned[(method, factor)]["meta"]
    assert meta.get("smoe_plan_method") == method and len(meta.get("smoe_plan_sha256", "")) == 64, \
        f"shard metadata {meta}"


@pytest.mark.parametrize("method,factor", CASES, ids=CASE_IDS)
def test_pruned_model_scores(pruned, method, factor):
    out = pruned[(method, factor)]["one"].stdout
    assert "perplexity=" in out, f"smoe score printed {out!r}"


@pytest.mark.parametrize("method,factor", TWO_RANK_CASES, ids=[f"{m}-factor{f}" for m, f in TWO_RANK_CASES])
def test_merged_model_scores_the_same_on_2_ranks(pruned, method, factor):
    r = pruned[(method, factor)]
    assert figures(r["two"].stdout) == figures(r["one"].stdout), \
        f"2 ranks: {r['two'].stdout!r}, 1 rank: {r['one'].stdout!r}"


# ---- NAEE's exhaustive search split over 2 ranks

@pytest.fixture(scope="module")
def naee_groups(inputs, pruned, workdir, smoe_run):
    """The groups of NAEE's factor-2 plan on 1 rank (made by `pruned`) and on 2 ranks, per layer."""
    plan2 = os.path.join(workdir, "plan-naee-2-ranks.h5")
    smoe_run("cluster", "--stats", inputs["stats"], "--task", "t", "--method", "naee", "--factor", "2", "--out",
             plan2, "--model", inputs["model"], "--threads", "1", ranks=2)
    with h5py.File(plan2) as f2, h5py.File(os.path.join(workdir, "plan-naee-2.h5")) as f1:
        return {l: (f1[f"layers/{l}/group"][()], f2[f"layers/{l}/group"][()]) for l in LAYERS}


def test_naee_split_over_2_ranks_keeps_the_same_experts(naee_groups):
    differ = {l: (g1.tolist(), g2.tolist()) for l, (g1, g2) in naee_groups.items() if not np.array_equal(g1, g2)}
    assert not differ, f"layers whose groups differ (1 rank, 2 ranks): {differ}"


# ---- adaptive budget

@pytest.fixture(scope="module")
def adaptive(inputs, workdir, smoe_run):
    plan = os.path.join(workdir, "plan-adaptive.h5")
    smoe_run("cluster", "--stats", inputs["stats"], "--task", "t", "--method", "uncurl", "--budget", "adaptive",
             "--factor", "3", "--out", plan)
    out = os.path.join(workdir, "pruned-adaptive")
    smoe_run("prune", "--model", inputs["model"], "--plan", plan, "--out", out)
    with h5py.File(plan) as f:
        counts = [int(f[f"layers/{l}"].attrs["num_groups"]) for l in LAYERS]
    p = smoe_run("score", "--model", out, "--corpus", inputs["corpus"], "--threads", "1")
    print(f"\nadaptive budget: per-layer experts {counts}, {' '.join(perplexity(p.stdout))}")
    return dict(counts=counts, score=p)


def test_adaptive_budget_keeps_an_expert_in_every_layer(adaptive):
    assert min(adaptive["counts"]) >= 1, f"per-layer experts {adaptive['counts']}"


def test_adaptive_budget_model_scores(adaptive):
    assert "perplexity=" in adaptive["score"].stdout, f"smoe score printed {adaptive['score'].stdout!r}"


# ---- a plan that keeps every expert

@pytest.fixture(scope="module")
def kept_all(inputs, workdir, smoe_run):
    plan = os.path.join(workdir, "plan-all.h5")
    smoe_run("cluster", "--stats", inputs["stats"], "--task", "t", "--method", "frequency", "--factor", "1",
             "--out", plan)
    out = os.path.join(workdir, "pruned-all")
    smoe_run("prune", "--model", inputs["model"], "--plan", plan, "--out", out)
    tensors, config, _ = load_checkpoint(out)
    original, config0, _ = load_checkpoint(inputs["model"])
    return dict(tensors=tensors, config=config, original=original, config0=config0)


def test_keep_all_plan_keeps_every_tensor_name(kept_all):
    got, want = set(kept_all["tensors"]), set(kept_all["original"])
    assert got == want, f"missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"


def test_keep_all_plan_keeps_every_tensor_bit_identical(kept_all):
    t, o = kept_all["tensors"], kept_all["original"]
    changed = [n for n in o if n in t and not (t[n].dtype == o[n].dtype and torch.equal(t[n], o[n]))]
    assert not changed, f"{len(changed)} tensors differ in dtype or value: {changed[:5]}"


def test_keep_all_plan_keeps_config_json(kept_all):
    assert kept_all["config"] == kept_all["config0"]


# ---- merging hidden-unit permutations of one expert

@pytest.fixture(scope="module")
def permuted(inputs, workdir, smoe_run):
    """Experts 1..7 of every layer are hidden-unit permutations of expert 0; all eight merged into one
    (factor 8), with and without alignment. Returns the max |dlogit| against the unpruned model, keyed
    by `aligned`, and the statistics of the permuted model (without out_mean)."""
    cfg, weights = inputs["cfg"], inputs["weights"]
    perm_w = dict(weights)
    g = torch.Generator().manual_seed(5)
    for l in LAYERS:
        p0 = f"model.layers.{l}.block_sparse_moe.experts.0."
        for e in range(1, 8):
            pe = f"model.layers.{l}.block_sparse_moe.experts.{e}."
            perm = torch.randperm(cfg["intermediate_size"], generator=g)
            perm_w[pe + "w1.weight"] = weights[p0 + "w1.weight"][perm].clone()
            perm_w[pe + "w3.weight"] = weights[p0 + "w3.weight"][perm].clone()
            perm_w[pe + "w2.weight"] = weights[p0 + "w2.weight"][:, perm].clone()
    pmodel = os.path.join(workdir, "permuted")
    ref.save_checkpoint(pmodel, cfg, perm_w, shards=1)
    pstats = os.path.join(workdir, "pstats.h5")
    smoe_run("collect", "--model", pmodel, "--task", f"t={inputs['corpus']}", "--out", pstats, "--threads", "2")
    plan = os.path.join(workdir, "plan-one.h5")
    smoe_run("cluster", "--stats", pstats, "--task", "t", "--method", "uncurl", "--factor", "8", "--out", plan)
    base = os.path.join(workdir, "base.safetensors")
    smoe_run("score", "--model", pmodel, "--corpus", inputs["corpus"], "--logits", base, "--threads", "1")
    diffs = {}
    for align in (True, False):
        out = os.path.join(workdir, f"merged-{align}")
        smoe_run("prune", "--model", pmodel, "--plan", plan, "--out", out, *([] if align else ["--no-align"]))
        got = os.path.join(workdir, f"merged-{align}.safetensors")
        smoe_run("score", "--model", out, "--corpus", inputs["corpus"], "--logits", got, "--threads", "1")
        diffs[align] = (ref.load_safetensors(base)[0]["logits"] - ref.load_safetensors(got)[0]["logits"]).abs().max().item()
    print(f"\nmerging 8 permuted copies of an expert into one: max |dlogit| {diffs[True]:.2g} aligned, "
          f"{diffs[False]:.2g} without alignment")
    return dict(diffs=diffs, stats=pstats)


def test_merging_permuted_copies_with_alignment_keeps_the_output(permuted):
    assert permuted["diffs"][True] <= 1e-5, f"max |dlogit| {permuted['diffs'][True]:.2g} aligned"


def test_merging_permuted_copies_without_alignment_changes_the_output(permuted):
    assert permuted["diffs"][False] > 1e-2, f"max |dlogit| {permuted['diffs'][False]:.2g} without alignment"


# ---- bad plans: exit 2, the plan named with the fault, no output folder

def set_ds(f, name, values):
    del f[name]
    f[name] = np.array(values)


# (name, edit of a copy of plan-uncurl-2.h5, what stderr must say)
BAD_PLANS = [
    ("missing layer", lambda f: f["layers"].__delitem__("2"), "the plan must give every MoE layer once"),
    ("unknown expert", lambda f: set_ds(f, "layers/1/reference", [9] + list(f["layers/1/reference"][1:])),
     "names expert 9"),
    ("empty group", lambda f: set_ds(f, "layers/0/group", [0 if x == 1 else x for x in f["layers/0/group"][()]]),
     "group 1 is empty"),
    ("short group list", lambda f: set_ds(f, "layers/0/group", list(f["layers/0/group"][()]) + [0]),
     "one entry per expert"),
    ("weights", lambda f: set_ds(f, "layers/0/weight", [0.5] * 8), "sum to"),
    ("not a plan", lambda f: f.attrs.__setitem__("format", "something"), "not a smoe plan"),
]


@pytest.fixture(scope="module", params=BAD_PLANS, ids=[b[0].replace(" ", "-") for b in BAD_PLANS])
def bad_plan(request, inputs, pruned, workdir, smoe_run):
    """smoe prune of a damaged copy of the uncurl factor-2 plan (made by `pruned`)."""
    name, edit, needle = request.param
    path = os.path.join(workdir, f"bad-{name}.h5")
    shutil.copy(os.path.join(workdir, "plan-uncurl-2.h5"), path)
    with h5py.File(path, "r+") as f:
        edit(f)
    out = os.path.join(workdir, f"out-{name}")
    p = smoe_run("prune", "--model", inputs["model"], "--plan", path, "--out", out, expect=None)
    left = [d for d in os.listdir(workdir) if d.startswith(f"out-{name}")]
    last = p.stderr.strip().splitlines()[-1][-160:] if p.stderr.strip() else ""
    print(f"\nbad plan ({name}): exit {p.returncode}: {last}")
    return dict(path=path, needle=needle, p=p, left=left)


def test_bad_plan_exits_2(bad_plan):
    assert bad_plan["p"].returncode == 2, f"exit {bad_plan['p'].returncode}: {bad_plan['p'].stderr[-500:]}"


def test_bad_plan_error_names_the_plan_file(bad_plan):
    assert bad_plan["path"] in bad_plan["p"].stderr, bad_plan["p"].stderr[-500:]


def test_bad_plan_error_names_the_fault(bad_plan):
    assert bad_plan["needle"] in bad_plan["p"].stderr, \
        f"{bad_plan['needle']!r} not in stderr: {bad_plan['p'].stderr[-500:]}"


def test_bad_plan_writes_no_output(bad_plan):
    assert not bad_plan["left"], f"left behind: {bad_plan['left']}"


# ---- --grid, and bad cluster options: exit 2, the fault named, no plan written

@pytest.fixture(scope="module")
def grid(inputs, workdir, smoe_run):
    path = os.path.join(workdir, "grid.ini")
    with open(path, "w") as f:
        f.write("[grid]\ntasks = t\nmethods = frequency, reap\nfactors = 2, 4\n")
    smoe_run("cluster", "--stats", inputs["stats"], "--grid", path, "--index", "3",
             "--out", os.path.join(workdir, "g-{method}-{factor}.h5"))
    return path


def test_grid_entry_3_is_t_reap_4(grid, workdir):
    made = sorted(f for f in os.listdir(workdir) if f.startswith("g-"))
    assert os.path.exists(os.path.join(workdir, "g-reap-4.h5")), \
        f"--grid entry 3 of tasks x methods x factors should be (t, reap, 4); made {made}"


def test_smoe_grid_prints_every_entry_in_the_order_cluster_runs_them(grid, smoe_run):
    got = [smoe_run("grid", "--grid", grid, "--index", str(i)).stdout.split() for i in range(4)]
    assert got == [["t", m, f] for m in ("frequency", "reap") for f in ("2", "4")]


def test_smoe_grid_takes_the_slurm_array_index(grid, smoe_run):
    assert smoe_run("grid", "--grid", grid, env={"SLURM_ARRAY_TASK_ID": "3"}).stdout.split() == ["t", "reap", "4"]


# (name, grid file text, index, what stderr must say)
BAD_GRID = [
    ("task with a space", "tasks = a b, c\nmethods = frequency\nfactors = 2\n", "0", "task names must be"),
    ("factor not a number", "tasks = t\nmethods = frequency\nfactors = nan\n", "0", "factor: 'nan'"),
    ("unknown method", "tasks = t\nmethods = magic\nfactors = 2\n", "0", "magic"),
    ("index outside", "tasks = t\nmethods = frequency\nfactors = 2\n", "1", "--index 1 outside the grid's 1 entries"),
]


@pytest.mark.parametrize("name,text,index,needle", BAD_GRID, ids=[b[0].replace(" ", "-") for b in BAD_GRID])
def test_smoe_grid_refuses_a_bad_grid_naming_the_file(workdir, smoe_run, name, text, index, needle):
    path = os.path.join(workdir, f"bad grid {name}.ini")
    with open(path, "w") as f:
        f.write("[grid]\n" + text)
    p = smoe_run("grid", "--grid", path, "--index", index, expect=2)
    assert path in p.stderr and needle in p.stderr, p.stderr[-500:]
    assert p.stdout == ""


# (name, arguments after --stats and --out, what stderr must say, statistics used:
#  "stats" with out_mean, "pstats" without, from `permuted`)
BAD_CLUSTER = [
    ("unknown task", ["--task", "nope", "--method", "uncurl", "--factor", "2"], "no task 'nope' (present: t)",
     "stats"),
    ("unknown method", ["--task", "t", "--method", "kmeans", "--factor", "2"],
     "--method must be frequency, uncurl, mc-smoe, hc-smoe, reap or naee, found 'kmeans'", "stats"),
    ("factor and experts", ["--task", "t", "--method", "uncurl", "--factor", "2", "--experts", "3"],
     "either --factor", "stats"),
    ("hc-smoe without out_mean", ["--task", "t", "--method", "hc-smoe", "--factor", "2"], "needs out_mean",
     "pstats"),
    ("naee without a model", ["--task", "t", "--method", "naee", "--factor", "2"], "needs --model", "stats"),
    ("grid index outside", ["--grid", "GRID", "--index", "4"], "outside the grid's 4 entries", "stats"),
]


@pytest.fixture(scope="module", params=BAD_CLUSTER, ids=[b[0].replace(" ", "-") for b in BAD_CLUSTER])
def bad_cluster(request, inputs, workdir, smoe_run):
    name, args, needle, which = request.param
    stats = inputs["stats"] if which == "stats" else request.getfixturevalue("permuted")["stats"]
    if "GRID" in args:
        args = [request.getfixturevalue("grid") if a == "GRID" else a for a in args]
    never = os.path.join(workdir, "never.h5")
    p = smoe_run("cluster", "--stats", stats, "--out", never, *args, expect=None)
    print(f"\ncluster {name}: exit {p.returncode}: {p.stderr.strip().splitlines()[-1][-140:] if p.stderr else ''}")
    return dict(p=p, needle=needle, wrote=os.path.exists(never))


def test_bad_cluster_options_exit_2(bad_cluster):
    assert bad_cluster["p"].returncode == 2, f"exit {bad_cluster['p'].returncode}: {bad_cluster['p'].stderr[-500:]}"


def test_bad_cluster_options_error_names_the_fault(bad_cluster):
    assert bad_cluster["needle"] in bad_cluster["p"].stderr, \
        f"{bad_cluster['needle']!r} not in stderr: {bad_cluster['p'].stderr[-500:]}"


def test_bad_cluster_options_write_no_plan(bad_cluster):
    assert not bad_cluster["wrote"], "never.h5 was written"
