#include "smoe/prune/prune.h"

#include <ATen/ATen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/core/hash.h"
#include "smoe/core/numbers.h"
#include "smoe/model/checkpoint.h"
#include "smoe/io/fp8.h"
#include "smoe/io/json.h"
#include "smoe/io/tensor-io.h"
#include "smoe/prune/merge.h"

namespace smoe {

namespace fs = std::filesystem;

namespace {

// Where a tensor of the output comes from.
struct Source {
  enum Kind { Copy, Router, Expert } kind = Copy;
  std::string name;       // Copy: the input tensor
  int64_t layer = 0;
  int64_t group = 0;      // Router: -; Expert: the group
  std::string proj;       // Expert: which projection
  TensorSpec spec;
};

const LayerPlan* plan_of(const Plan& plan, int64_t layer) {
  for (const auto& lp : plan.layers)
    if (lp.layer == layer) return &lp;
  return nullptr;
}

// A weight as FP8 E4M3 codes (uint8) and float32 block scales.
struct Fp8Tensor {
  at::Tensor codes, scale;
};

Fp8Tensor quantize_fp8(const at::Tensor& w, const ModelConfig& c) {
  at::Tensor f = w.to(at::kFloat).contiguous();
  const int64_t rows = f.size(0), cols = f.size(1), br = c.fp8_block_rows, bc = c.fp8_block_cols;
  Fp8Tensor out{at::empty({rows, cols}, at::kByte), at::empty({(rows + br - 1) / br, (cols + bc - 1) / bc}, at::kFloat)};
  quantize_fp8_blocks(f.data_ptr<float>(), rows, cols, br, bc, out.codes.data_ptr<uint8_t>(), out.scale.data_ptr<float>());
  return out;
}

// "model.layers.12.foo" -> 12, else -1.
int64_t layer_of(const std::string& name) {
  const std::string p = "model.layers.";
  if (name.compare(0, p.size(), p) != 0) return -1;
  const std::string rest = name.substr(p.size());
  return parse_int(rest.substr(0, rest.find('.')), "tensor '" + name + "': layer number");
}

}  // namespace

PruneSummary prune_checkpoint(const Checkpoint& ck, const Plan& plan, const std::string& plan_path,
                              const std::string& out_dir, const PruneOptions& options) {
  const ModelConfig& c = ck.config();
  validate_plan(plan, c, plan_path);
  const FamilyLayout names = c.layout();
  PruneSummary summary;
  summary.bytes_before = ck.total_bytes();

  // Every planned layer's router and experts must be what the config says.
  for (const auto& lp : plan.layers) {
    const std::string moe = "model.layers." + std::to_string(lp.layer) + "." + names.moe;
    const int64_t d = c.hidden_size, ff = c.moe_intermediate_size;
    auto expect = [&](const std::string& name, std::vector<int64_t> shape) {
      const TensorInfo& info = ck.info(name);
      SMOE_CHECK_INPUT(info.shape == shape, ck.dir(), ": tensor '", name, "' does not have the shape config.json implies");
    };
    expect(moe + "gate.weight", {lp.num_experts, d});
    for (int64_t e = 0; e < lp.num_experts; ++e) {
      const std::string p = moe + "experts." + std::to_string(e) + ".";
      expect(p + names.gate_proj + ".weight", {ff, d});
      expect(p + names.up_proj + ".weight", {ff, d});
      expect(p + names.down_proj + ".weight", {d, ff});
    }
  }

  // Every output tensor, shard by shard: one shard per decoder layer, one for the rest.
  std::map<int64_t, std::vector<Source>> shards;
  std::map<int64_t, std::vector<std::string>> expert0;  // per layer: expert 0's tensors
  for (const auto& name : ck.tensor_names()) {
    const int64_t l = layer_of(name);
    const TensorInfo& info = ck.info(name);
    const LayerPlan* lp = l >= 0 ? plan_of(plan, l) : nullptr;
    const std::string moe = "model.layers." + std::to_string(l) + "." + names.moe;
    if (lp && (name == moe + "gate.weight" || name == moe + "gate.e_score_correction_bias")) {
      // One row (bias entry) per expert: one per group after pruning.
      std::vector<int64_t> shape = info.shape;
      shape.at(0) = lp->num_groups();
      shards[l].push_back({Source::Router, name, l, 0, "", {name, info.dtype, shape}});
    } else if (lp && name.compare(0, moe.size() + 8, moe + "experts.") == 0) {
      // Expert tensors are replaced by the groups' (written once, from expert 0's names).
      const std::string rest = name.substr(moe.size() + 8);
      const size_t dot = rest.find('.');
      const int64_t e = parse_int(rest.substr(0, dot), "tensor '" + name + "': expert number");
      if (e != 0) continue;
      expert0[l].push_back(name);
    } else {
      shards[l].push_back({Source::Copy, name, l, 0, "", {name, info.dtype, info.shape}});
    }
  }
  // The groups' experts, group by group, so that each group is merged once.
  for (const auto& [l, tensors] : expert0) {
    const LayerPlan* lp = plan_of(plan, l);
    const std::string moe = "model.layers." + std::to_string(l) + "." + names.moe + "experts.";
    for (int64_t g = 0; g < lp->num_groups(); ++g) {
      for (const auto& name : tensors) {
        const std::string proj = name.substr(moe.size() + 2);  // after "0."
        const TensorInfo& info = ck.info(name);
        shards[l].push_back({Source::Expert, name, l, g, proj, {moe + std::to_string(g) + "." + proj, info.dtype,
                                                                  info.shape}});
      }
    }
  }
  for (const auto& lp : plan.layers) {
    summary.experts_before += lp.num_experts;
    summary.experts_after += lp.num_groups();
  }

  const std::string& tmp = out_dir;  // an empty folder from Output, renamed by the caller when complete

  std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                 {"smoe_plan", plan_path},
                                                 {"smoe_plan_sha256", sha256_file(plan_path)},
                                                 {"smoe_source_model", ck.dir()}};
  for (const auto& [k, v] : plan.attrs) metadata["smoe_plan_" + k] = v;

  nlohmann::json weight_map = nlohmann::json::object();
  const size_t n_shards = shards.size();
  size_t shard_no = 0;
  const std::string moe_prefix = names.moe;
  for (auto& [l, sources] : shards) {
    char fname[64];
    std::snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", ++shard_no, n_shards);
    std::vector<TensorSpec> specs;
    for (const auto& s : sources) specs.push_back(s.spec);
    SafetensorsWriter writer(tmp + "/" + fname, specs, metadata);
    const LayerPlan* lp = l >= 0 ? plan_of(plan, l) : nullptr;
    int64_t cached_group = -1;
    GatedMlp merged;
    std::map<std::string, Fp8Tensor> quantized;  // the cached group's FP8 projections
    for (const auto& s : sources) {
      weight_map[s.spec.name] = fname;
      const TensorInfo& info = ck.info(s.name);
      const std::string moe = "model.layers." + std::to_string(l) + "." + moe_prefix;
      if (s.kind == Source::Copy) {
        writer.write(s.spec.name, ck.bytes(s.name), info.nbytes());
        summary.bytes_after += info.nbytes();
        continue;
      }
      at::Tensor t;
      if (s.kind == Source::Router) {
        const at::ScalarType stored = to_scalar_type(info.dtype, s.name);
        at::Tensor rows = ck.load(s.name, stored);
        if (plan.router_policy == RouterPolicy::MostUsed) {
          t = rows.index_select(0, at::tensor(lp->reference, at::kLong));
        } else {
          std::vector<int64_t> shape = rows.sizes().vec();
          shape[0] = lp->num_groups();
          t = at::zeros(shape, at::kDouble);
          for (int64_t e = 0; e < lp->num_experts; ++e)
            if (lp->group[static_cast<size_t>(e)] >= 0)
              t[lp->group[static_cast<size_t>(e)]] += lp->weight[static_cast<size_t>(e)] * rows[e].to(at::kDouble);
          t = t.to(stored);
        }
      } else {
        const std::vector<int64_t> members = lp->members(s.group);
        auto member_name = [&](int64_t e, const std::string& proj) {
          return moe + "experts." + std::to_string(e) + "." + proj;
        };
        if (members.size() == 1) {
          // Kept alone: the member's bytes, unchanged.
          const std::string from = member_name(members[0], s.proj);
          writer.write(s.spec.name, ck.bytes(from), ck.info(from).nbytes());
          summary.bytes_after += ck.info(from).nbytes();
          continue;
        }
        if (cached_group != s.group) {
          std::vector<GatedMlp> mlps;
          std::vector<double> weights;
          size_t reference = 0;
          for (int64_t e : members) {
            if (e == lp->reference[static_cast<size_t>(s.group)]) reference = mlps.size();
            mlps.push_back({ck.load(member_name(e, std::string(names.gate_proj) + ".weight"), at::kDouble),
                            ck.load(member_name(e, std::string(names.up_proj) + ".weight"), at::kDouble),
                            ck.load(member_name(e, std::string(names.down_proj) + ".weight"), at::kDouble)});
            weights.push_back(lp->weight[static_cast<size_t>(e)]);
          }
          merged = merge_experts(mlps, weights, reference, options.align);
          cached_group = s.group;
          quantized.clear();
        }
        // "gate_proj.weight" or, for FP8 weights, also "gate_proj.weight_scale_inv".
        const std::string suffix = "_scale_inv";
        const bool is_scale = s.proj.size() > suffix.size() &&
                              s.proj.compare(s.proj.size() - suffix.size(), suffix.size(), suffix) == 0;
        const std::string weight = is_scale ? s.proj.substr(0, s.proj.size() - suffix.size()) : s.proj;
        if (weight == std::string(names.gate_proj) + ".weight") t = merged.gate_proj;
        else if (weight == std::string(names.up_proj) + ".weight") t = merged.up_proj;
        else if (weight == std::string(names.down_proj) + ".weight") t = merged.down_proj;
        else throw InputError(str(ck.dir(), ": expert tensor '", s.name, "' is not a projection smoe knows"));
        if (ck.is_fp8(member_name(members[0], weight))) {
          // FP8 experts are quantised again, in the checkpoint's blocks.
          auto it = quantized.find(weight);
          if (it == quantized.end()) it = quantized.emplace(weight, quantize_fp8(t, c)).first;
          t = is_scale ? it->second.scale : it->second.codes;
        } else {
          t = t.to(to_scalar_type(info.dtype, s.name));
        }
      }
      t = t.contiguous();
      writer.write(s.spec.name, t.data_ptr(), t.nbytes());
      summary.bytes_after += t.nbytes();
    }
    writer.commit();
  }
  write_json_file(tmp + "/model.safetensors.index.json",
                  {{"metadata", {{"total_size", summary.bytes_after}}}, {"weight_map", weight_map}});

  // config.json: the new expert count; per-layer counts where they differ.
  nlohmann::json config = read_json_file(ck.dir() + "/config.json");
  int64_t most = 0, fewest = INT64_MAX;
  std::vector<int64_t> per_layer(static_cast<size_t>(c.num_layers), 0);
  for (const auto& lp : plan.layers) {
    most = std::max(most, lp.num_groups());
    fewest = std::min(fewest, lp.num_groups());
    per_layer[static_cast<size_t>(lp.layer)] = lp.num_groups();
  }
  config[c.experts_key()] = most;
  if (fewest < c.router.top_k) config["num_experts_per_tok"] = fewest;
  if (c.router.n_group > 1 && (fewest != most || most != c.max_experts())) {
    // Merged experts no longer fall into the original groups: route among all of them.
    config["n_group"] = 1;
    config["topk_group"] = 1;
  }
  if (fewest != most)
    config["smoe_layer_experts"] = per_layer;
  else
    config.erase("smoe_layer_experts");
  write_json_file(tmp + "/config.json", config);
  for (const char* extra : {"tokenizer.json", "tokenizer.model", "tiktoken.model", "tokenizer_config.json", "special_tokens_map.json",
                            "generation_config.json"})
    if (fs::exists(ck.dir() + "/" + extra)) fs::copy_file(ck.dir() + "/" + extra, tmp + "/" + extra);
  return summary;
}

}  // namespace smoe
