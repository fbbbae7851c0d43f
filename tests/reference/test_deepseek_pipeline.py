#!/usr/bin/python3
"""The DeepSeek-V3 family through every job, on a tiny FP8 checkpoint (16 x 16
block scales, group-limited sigmoid routing with a selection bias, a dense first
layer, a shared expert, a stored MTP layer):
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
import subprocess
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402
from checks import check, finish, mpi_env, script_args  # noqa: E402


def load_checkpoint(folder):
    tensors = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            tensors.update(ref.load_safetensors(os.path.join(folder, f))[0])
    with open(os.path.join(folder, "config.json")) as f:
        return tensors, json.load(f)


def main():
    a = script_args(mpirun=True)
    w = a.workdir
    torch.set_num_threads(2)

    def smoe(*args, ranks=0):
        cmd = [a.smoe] + list(args)
        if ranks:
            cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-n", str(ranks)] + cmd + ["--threads", "1"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), timeout=300)
        if p.returncode != 0:
            sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stderr[-3000:]}")
        return p

    cfg = ref.tiny_config("deepseek_v3")
    block = cfg["quantization_config"]["weight_block_size"]
    stored, decoded = ref.fp8_checkpoint(cfg, ref.random_weights(cfg, seed=29))
    model = os.path.join(w, "model")
    ref.save_checkpoint(model, cfg, stored, shards=2)
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, cfg["vocab_size"], int(rng.integers(10, 50))).tolist() for _ in range(24)]
    corpus = os.path.join(w, "task.jsonl")
    with open(corpus, "w") as f:
        for d in docs:
            f.write(json.dumps({"input_ids": d}) + "\n")
    moe_layers = [l for l in range(cfg["num_hidden_layers"]) if ref._moe_layer(cfg, l)]
    E = cfg["n_routed_experts"]

    # ---- plan-resources counts what the checkpoint holds
    plan_json = json.loads(smoe("plan-resources", "--model", model, "--json", "--ranks", "2").stdout)
    tensors, _ = load_checkpoint(model)
    mtp_prefix = f"model.layers.{cfg['num_hidden_layers']}."
    loaded = sum(t.numel() for n, t in tensors.items() if not n.endswith("_scale_inv") and not n.startswith(mtp_prefix))
    mtp_params = sum(t.numel() for n, t in tensors.items() if not n.endswith("_scale_inv") and n.startswith(mtp_prefix))
    on_disk = sum(t.numel() * t.element_size() for t in tensors.values())
    norm_bytes = sum(t.numel() * 2 for n, t in tensors.items() if t.dtype == torch.float32 and not n.endswith("_scale_inv"))
    check(plan_json["parameters"]["total"] == loaded and plan_json["parameters"]["mtp"] == mtp_params,
          f"plan-resources: {loaded} parameters loaded and {mtp_params} in the MTP layer, as the checkpoint holds")
    # The reference stores norms and biases in F32 where plan-resources assumes BF16 (as Kimi-K2 ships them).
    check(plan_json["checkpoint_bytes"] == on_disk - norm_bytes,
          f"plan-resources: checkpoint bytes {plan_json['checkpoint_bytes']:.0f} = {on_disk} on disk "
          f"less {norm_bytes} for the F32 norms")

    # ---- collect
    runs = {"1 rank": ([], 0), "2 ranks": ([], 2), "2 ranks layerwise": (["--schedule", "layerwise"], 2)}
    stats = {}
    for name, (extra, ranks) in runs.items():
        out = os.path.join(w, f"stats-{len(stats)}.h5")
        smoe("collect", "--model", model, "--task", f"t={corpus}", "--out", out, "--out-mean", "--sample", "32", *extra,
             *([] if ranks else ["--threads", "1"]), ranks=ranks)
        with h5py.File(out) as f:
            stats[name] = {(l, k): f[f"tasks/t/layers/{l}/{k}"][()] for l in moe_layers
                           for k in f[f"tasks/t/layers/{l}"].keys()}
            check(sorted(int(l) for l in f["tasks/t/layers"]) == moe_layers,
                  f"collect {name}: statistics for the MoE layers {moe_layers} only")
    base = stats["1 rank"]
    for name, s in stats.items():
        if name == "1 rank":
            continue
        same = all(np.array_equal(s[k], v) if v.dtype.kind == "i" else np.allclose(s[k], v, rtol=1e-9, atol=1e-9)
                   for k, v in base.items())
        check(same, f"collect {name}: the same statistics as on 1 rank (integers exact, sums within 1e-9)")
    counts = {l: np.zeros(E, dtype=np.int64) for l in moe_layers}
    with torch.no_grad():
        for d in docs:
            _, routing = ref.forward(cfg, decoded, torch.tensor([d]), torch.float32)
            for l, chosen in routing.items():
                counts[l] += np.bincount(chosen.reshape(-1).numpy(), minlength=E)
    for l in moe_layers:
        check(np.array_equal(base[(l, "count")], counts[l]),
              f"collect layer {l}: expert counts equal the reference's routing {counts[l].tolist()}")

    # ---- cluster and prune
    plan = os.path.join(w, "plan.h5")
    smoe("cluster", "--stats", os.path.join(w, "stats-0.h5"), "--task", "t", "--method", "uncurl", "--factor", "2",
         "--out", plan)
    pruned = os.path.join(w, "pruned")
    smoe("prune", "--model", model, "--plan", plan, "--out", pruned, "--no-align")
    old, _ = load_checkpoint(model)
    new, pcfg = load_checkpoint(pruned)
    check(pcfg["n_routed_experts"] == E // 2 and pcfg["n_group"] == 1 and pcfg["topk_group"] == 1,
          f"pruned config: n_routed_experts {E // 2}, n_group 1, topk_group 1")
    check(pcfg["quantization_config"] == cfg["quantization_config"] and pcfg["model_type"] == "deepseek_v3",
          "pruned config keeps model_type and quantization_config")
    mtp = [n for n in old if n.startswith(f"model.layers.{cfg['num_hidden_layers']}.")]
    check(mtp and all(torch.equal(old[n], new[n]) for n in mtp), f"the MTP layer's {len(mtp)} tensors are copied as they are")
    with h5py.File(plan) as f:
        groups = {l: (f[f"layers/{l}/group"][()], f[f"layers/{l}/weight"][()], f[f"layers/{l}/reference"][()])
                  for l in moe_layers}
    merged_checked = 0
    for l in moe_layers:
        group, weight, reference = groups[l]
        p = f"model.layers.{l}.mlp."
        check(new[p + "gate.weight"].shape[0] == E // 2 and new[p + "gate.e_score_correction_bias"].shape[0] == E // 2,
              f"layer {l}: router and selection bias have one row per group")
        check(torch.equal(new[p + "gate.e_score_correction_bias"], old[p + "gate.e_score_correction_bias"][reference]),
              f"layer {l}: each group keeps its reference member's selection bias (most-used router policy)")
        check(not any(n.startswith(p + f"experts.{E // 2}.") for n in new), f"layer {l}: experts {E // 2}.. are gone")
        for g in range(E // 2):
            members = [e for e in range(E) if group[e] == g]
            for proj in ("gate_proj", "up_proj", "down_proj"):
                name = p + f"experts.{g}.{proj}.weight"
                codes, scale = new[name], new[name + "_scale_inv"]
                if len(members) == 1:
                    src = p + f"experts.{members[0]}.{proj}.weight"
                    check(torch.equal(codes, old[src]) and torch.equal(scale, old[src + "_scale_inv"]),
                          f"layer {l} group {g} {proj}: kept expert's FP8 bytes and scales unchanged")
                    continue
                merged = sum(weight[e] * ref.dequantize_fp8(old[p + f"experts.{e}.{proj}.weight"],
                                                            old[p + f"experts.{e}.{proj}.weight_scale_inv"],
                                                            block).double() for e in members).float()
                want_codes, want_scale = ref.quantize_fp8(merged, block)
                mismatch = (codes != want_codes.codes).float().mean().item()
                step = (codes.int() - want_codes.codes.int()).abs().max().item()
                check(torch.allclose(scale, want_scale, rtol=1e-6, atol=0) and mismatch <= 1e-3 and step <= 1,
                      f"layer {l} group {g} {proj}: merge re-quantised in {block} blocks "
                      f"(codes differing from the reference's: {mismatch:.2%}, by at most one step)")
                merged_checked += 1
    check(merged_checked > 0, f"{merged_checked} merged FP8 projections checked")

    # ---- the other methods: each plan prunes to a model that runs
    for method in ("frequency", "mc-smoe", "hc-smoe", "reap", "naee"):
        mplan, mout = os.path.join(w, f"plan-{method}.h5"), os.path.join(w, f"pruned-{method}")
        smoe("cluster", "--stats", os.path.join(w, "stats-0.h5"), "--task", "t", "--method", method, "--factor", "2",
             "--out", mplan, *(["--model", model] if method == "naee" else []))
        smoe("prune", "--model", model, "--plan", mplan, "--out", mout)
        p = smoe("score", "--model", mout, "--corpus", corpus, "--threads", "2")
        ppl = float(dict(x.split("=", 1) for x in p.stdout.split() if "=" in x)["perplexity"])
        with open(os.path.join(mout, "config.json")) as f:
            experts = json.load(f)["n_routed_experts"]
        check(np.isfinite(ppl) and experts == E // 2, f"{method}: pruned to {experts} experts, perplexity {ppl:.3f}")

    # ---- the pruned model runs as the reference runs it
    pstored, _ = load_checkpoint(pruned)
    pdecoded = ref.dequantize_checkpoint(pstored, block)
    nll = n = 0.0
    routing_ref = {}
    with torch.no_grad():
        for d in docs:
            logits, routing = ref.forward(pcfg, pdecoded, torch.tensor([d]), torch.float32)
            logp = torch.log_softmax(logits[0, :-1].double(), -1)
            nll -= logp.gather(1, torch.tensor(d[1:])[:, None]).sum().item()
            n += len(d) - 1
            for l, c in routing.items():
                routing_ref.setdefault(l, []).append(c)
    ppl_ref = float(np.exp(nll / n))
    for ranks in (0, 2):
        out = os.path.join(w, f"pruned-logits-{ranks}.safetensors")
        p = smoe("score", "--model", pruned, "--corpus", corpus, "--logits", out, ranks=ranks)
        ppl = float(dict(x.split("=", 1) for x in p.stdout.split() if "=" in x)["perplexity"])
        got, _ = ref.load_safetensors(out)
        same_routing = all(torch.equal(got[f"routing.layer{l}.experts"].sort(1).values, torch.cat(c).sort(1).values)
                           for l, c in routing_ref.items())
        check(abs(ppl - ppl_ref) / ppl_ref < 1e-5 and same_routing,
              f"pruned model on {max(ranks, 1)} rank(s): perplexity {ppl:.6f} vs reference {ppl_ref:.6f}, routing identical")
    subprocess.run([a.smoe, "data", "synth", "--out", os.path.join(w, "suite"), "--facts", "20", "--train", "2", "--eval", "6"],
                   check=True, capture_output=True)
    results = []
    for ranks in (0, 2):
        out = os.path.join(w, f"eval-{ranks}.json")
        smoe("eval", "--model", pruned, "--out", out, "--task", f"years={w}/suite/years/eval.jsonl",
             *([] if ranks else ["--threads", "1"]), ranks=ranks)
        with open(out) as f:
            results.append(json.load(f)["results"])
    check(results[0] == results[1] and "perplexity" in json.dumps(results[0]),
          f"smoe eval of the pruned model: the same results on 1 and 2 ranks ({json.dumps(results[0])[:120]})")
    finish("reference.deepseek-pipeline")


if __name__ == "__main__":
    main()
