#include "smoe/prune/prune.h"

#include <ATen/ATen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/core/hash.h"
#include "smoe/core/log.h"
#include "smoe/core/output.h"
#include "smoe/core/numbers.h"
#include "smoe/model/checkpoint.h"
#include "smoe/model/decoder.h"
#include "smoe/model/tensor-names.h"
#include "smoe/io/fp8.h"
#include "smoe/io/mxfp4.h"
#include "smoe/io/json.h"
#include "smoe/io/outputs.h"
#include "smoe/io/tensor-io.h"
#include "smoe/prune/merge.h"

namespace smoe {

namespace fs = std::filesystem;

namespace {

// Where a tensor of the output comes from.
struct Source {
  enum Kind { Copy, Router, Expert, Stacked } kind = Copy;  // Stacked: a gpt-oss layer's experts in one tensor
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

// Every planned layer's router and experts must be what the config says.
void check_shapes(const Checkpoint& ck, const Plan& plan, const TensorNames& names) {
  const ModelConfig& c = ck.config();
  const int64_t d = c.hidden_size, ff = c.moe_intermediate_size;
  auto expect = [&](const std::string& name, std::vector<int64_t> shape) {
    SMOE_CHECK_INPUT(ck.info(name).shape == shape, ck.dir(), ": tensor '", name,
                     "' does not have the shape config.json implies");
  };
  for (const auto& lp : plan.layers) {
    expect(names.router(lp.layer), {lp.num_experts, d});
    const std::string bias = names.router_bias(lp.layer);
    if (ck.has(bias))
      SMOE_CHECK_INPUT(!ck.info(bias).shape.empty() && ck.info(bias).shape.back() == lp.num_experts, ck.dir(),
                       ": tensor '", bias,
                       "' does not have one entry per expert");
    if (c.family == Family::GptOss) continue;  // stacked: checked as each expert is read
    for (int64_t e = 0; e < lp.num_experts; ++e) {
      expect(names.expert(lp.layer, e, Proj::Gate), {ff, d});
      expect(names.expert(lp.layer, e, Proj::Up), {ff, d});
      expect(names.expert(lp.layer, e, Proj::Down), {d, ff});
    }
  }
}

// The axis of a router tensor that runs over the experts: the router's rows, the
// selection bias's last axis (ERNIE-4.5 stores it as [1, E]).
size_t expert_axis(const TensorNames& names, const Checkpoint& ck, int64_t layer, const std::string& name) {
  return name == names.router(layer) ? 0 : ck.info(name).shape.size() - 1;
}

// Every output tensor, shard by shard: one shard per decoder layer (-1: the rest).
// A pruned layer's router has one row per group; its experts are the groups',
// named as expert 0's tensors are.
std::map<int64_t, std::vector<Source>> output_tensors(const Checkpoint& ck, const Plan& plan, const TensorNames& names) {
  std::map<int64_t, std::vector<Source>> shards;
  std::map<int64_t, std::vector<std::string>> expert0;  // per layer: expert 0's tensors
  for (const auto& name : ck.tensor_names()) {
    const int64_t l = TensorNames::layer_of(name);
    const TensorInfo& info = ck.info(name);
    const LayerPlan* lp = l >= 0 ? plan_of(plan, l) : nullptr;
    const std::string experts = l >= 0 ? names.experts(l) : "";
    const bool stacked = ck.config().family == Family::GptOss;
    if (lp && (name == names.router(l) || name == names.router_bias(l) ||
               (stacked && name == names.router_logit_bias(l)))) {
      std::vector<int64_t> shape = info.shape;
      shape.at(expert_axis(names, ck, l, name)) = lp->num_groups();
      shards[l].push_back({Source::Router, name, l, 0, "", {name, info.dtype, shape}});
    } else if (lp && stacked && name.compare(0, experts.size(), experts) == 0) {
      std::vector<int64_t> shape = info.shape;
      SMOE_CHECK_INPUT(!shape.empty() && shape[0] == lp->num_experts, ck.dir(), ": stacked expert tensor '", name,
                       "' does not have one entry per expert (", lp->num_experts, ")");
      shape[0] = lp->num_groups();
      shards[l].push_back({Source::Stacked, name, l, 0, "", {name, info.dtype, shape}});
    } else if (lp && name.compare(0, experts.size(), experts) == 0) {
      const std::string rest = name.substr(experts.size());
      if (parse_int(rest.substr(0, rest.find('.')), "tensor '" + name + "': expert number") == 0)
        expert0[l].push_back(name);
    } else {
      shards[l].push_back({Source::Copy, name, l, 0, "", {name, info.dtype, info.shape}});
    }
  }
  for (const auto& [l, tensors] : expert0) {
    const LayerPlan* lp = plan_of(plan, l);
    for (int64_t g = 0; g < lp->num_groups(); ++g)
      for (const auto& name : tensors) {
        const std::string proj = name.substr(names.expert(l, 0).size());
        shards[l].push_back({Source::Expert, name, l, g, proj,
                             {names.expert(l, g) + proj, ck.info(name).dtype, ck.info(name).shape}});
      }
  }
  return shards;
}

// A pruned router: the reference members' rows, or the groups' weighted means,
// along the tensor's expert axis.
at::Tensor pruned_router(const Checkpoint& ck, const Source& s, const LayerPlan& lp, RouterPolicy policy,
                         int64_t axis) {
  const at::ScalarType stored = to_scalar_type(ck.info(s.name).dtype, s.name);
  at::Tensor rows = ck.load(s.name, stored).movedim(axis, 0);
  at::Tensor t;
  if (policy == RouterPolicy::MostUsed) {
    t = rows.index_select(0, at::tensor(lp.reference, at::kLong));
  } else {
    std::vector<int64_t> shape = rows.sizes().vec();
    shape[0] = lp.num_groups();
    t = at::zeros(shape, at::kDouble);
    for (int64_t e = 0; e < lp.num_experts; ++e)
      if (lp.group[static_cast<size_t>(e)] >= 0)
        t[lp.group[static_cast<size_t>(e)]] += lp.weight[static_cast<size_t>(e)] * rows[e].to(at::kDouble);
  }
  return t.movedim(0, axis).to(stored).contiguous();
}

// gpt-oss: a pruned layer's stacked expert tensors, each as the bytes of its
// groups one after another. A group of one keeps its expert's bytes; a merged
// group is merged in float64 and encoded again as stored (MXFP4 blocks and
// scales, gate and up interleaved by row; biases in their dtype).
class StackedLayer {
 public:
  StackedLayer(const Checkpoint& ck, const LayerPlan& lp, const PruneOptions& options) : ck_(ck), lp_(lp) {
    const TensorNames names(ck.config().family);
    for (Proj p : {Proj::Gate, Proj::Down}) {
      const std::string base = names.stacked(lp.layer, p);
      for (const char* part : {"_blocks", "_scales", "_bias", ""})
        if (ck.has(base + part)) bytes_[base + part];
    }
    for (int64_t g = 0; g < lp.num_groups(); ++g) add_group(g, options.align);
  }
  const std::vector<uint8_t>& bytes(const std::string& name) const { return bytes_.at(name); }

 private:
  void append(const std::string& name, const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    bytes_.at(name).insert(bytes_.at(name).end(), p, p + n);
  }
  void append(const std::string& name, const at::Tensor& t) {
    const at::Tensor c = t.to(to_scalar_type(ck_.info(name).dtype, name)).contiguous();
    append(name, c.data_ptr(), c.nbytes());
  }
  void add_group(int64_t g, bool align);
  void add_projection(const std::string& base, const at::Tensor& w, const at::Tensor& bias);

  const Checkpoint& ck_;
  const LayerPlan& lp_;
  std::map<std::string, std::vector<uint8_t>> bytes_;
};

void StackedLayer::add_group(int64_t g, bool align) {
  const std::vector<int64_t> members = lp_.members(g);
  if (members.size() == 1) {
    for (const auto& [name, out] : bytes_) {
      const uint64_t item = ck_.info(name).nbytes() / static_cast<uint64_t>(lp_.num_experts);
      append(name, ck_.bytes(name) + static_cast<uint64_t>(members[0]) * item, item);
    }
    return;
  }
  std::vector<GatedMlp> mlps;
  std::vector<double> weights;
  size_t reference = 0;
  for (int64_t e : members) {
    if (e == lp_.reference[static_cast<size_t>(g)]) reference = mlps.size();
    mlps.push_back(load_stacked_expert(ck_, lp_.layer, lp_.num_experts, e, at::kDouble));
    weights.push_back(lp_.weight[static_cast<size_t>(e)]);
  }
  const GatedMlp m = merge_experts(mlps, weights, reference, align);
  const TensorNames names(ck_.config().family);
  const int64_t F = m.gate_proj.size(0);
  add_projection(names.stacked(lp_.layer, Proj::Gate), at::stack({m.gate_proj, m.up_proj}, 1).reshape({2 * F, -1}),
                 at::stack({m.gate_bias, m.up_bias}, 1).reshape({2 * F}));
  add_projection(names.stacked(lp_.layer, Proj::Down), m.down_proj, m.down_bias);
}

// w [out, in]: MXFP4 blocks and scales, or [in, out] as stored without quantisation.
void StackedLayer::add_projection(const std::string& base, const at::Tensor& w, const at::Tensor& bias) {
  append(base + "_bias", bias);
  if (!ck_.config().mxfp4) {
    append(base, w.t());
    return;
  }
  const at::Tensor f = w.to(at::kFloat).contiguous();
  const int64_t rows = f.size(0), groups = f.size(1) / kMxfp4Group;
  std::vector<uint8_t> blocks(static_cast<size_t>(rows * groups * 16)), scales(static_cast<size_t>(rows * groups));
  quantize_mxfp4(f.data_ptr<float>(), rows, groups, blocks.data(), scales.data());
  append(base + "_blocks", blocks.data(), blocks.size());
  append(base + "_scales", scales.data(), scales.size());
}

// Writes one shard's tensors, merging each group's experts once (the last
// group's merge and FP8 codes are kept while its projections are written).
class ShardWriter {
 public:
  ShardWriter(const Checkpoint& ck, const Plan& plan, const TensorNames& names, const PruneOptions& options)
      : ck_(ck), plan_(plan), names_(names), options_(options) {}

  // Returns the bytes written.
  uint64_t write(const std::string& path, int64_t layer, const std::vector<Source>& sources,
                 const std::map<std::string, std::string>& metadata);

 private:
  at::Tensor merged_projection(const Source& s, const LayerPlan& lp);

  const Checkpoint& ck_;
  const Plan& plan_;
  const TensorNames& names_;
  const PruneOptions& options_;
  int64_t cached_group_ = -1;
  GatedMlp merged_;
  std::map<std::string, Fp8Tensor> quantized_;  // the cached group's FP8 projections
};

// A group's projection (or, for FP8 weights, its block scales: "..._scale_inv").
at::Tensor ShardWriter::merged_projection(const Source& s, const LayerPlan& lp) {
  const std::vector<int64_t> members = lp.members(s.group);
  if (cached_group_ != s.group) {
    std::vector<GatedMlp> mlps;
    std::vector<double> weights;
    size_t reference = 0;
    for (int64_t e : members) {
      if (e == lp.reference[static_cast<size_t>(s.group)]) reference = mlps.size();
      GatedMlp m;
      m.gate_proj = ck_.load(names_.expert(s.layer, e, Proj::Gate), at::kDouble);
      m.up_proj = ck_.load(names_.expert(s.layer, e, Proj::Up), at::kDouble);
      m.down_proj = ck_.load(names_.expert(s.layer, e, Proj::Down), at::kDouble);
      mlps.push_back(std::move(m));
      weights.push_back(lp.weight[static_cast<size_t>(e)]);
    }
    merged_ = merge_experts(mlps, weights, reference, options_.align);
    cached_group_ = s.group;
    quantized_.clear();
  }
  const std::string suffix = "_scale_inv";
  const bool is_scale = s.proj.size() > suffix.size() &&
                        s.proj.compare(s.proj.size() - suffix.size(), suffix.size(), suffix) == 0;
  const std::string weight = is_scale ? s.proj.substr(0, s.proj.size() - suffix.size()) : s.proj;
  at::Tensor t;
  if (weight == names_.weight(Proj::Gate)) t = merged_.gate_proj;
  else if (weight == names_.weight(Proj::Up)) t = merged_.up_proj;
  else if (weight == names_.weight(Proj::Down)) t = merged_.down_proj;
  else throw InputError(str(ck_.dir(), ": expert tensor '", s.name, "' is not a projection smoe knows"));
  if (!ck_.is_fp8(names_.expert(s.layer, members[0]) + weight)) return t.to(to_scalar_type(ck_.info(s.name).dtype, s.name));
  // FP8 experts are quantised again, in the checkpoint's blocks.
  auto it = quantized_.find(weight);
  if (it == quantized_.end()) it = quantized_.emplace(weight, quantize_fp8(t, ck_.config())).first;
  return is_scale ? it->second.scale : it->second.codes;
}

uint64_t ShardWriter::write(const std::string& path, int64_t layer, const std::vector<Source>& sources,
                            const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  for (const auto& s : sources) specs.push_back(s.spec);
  SafetensorsWriter writer(path, specs, metadata);
  const LayerPlan* lp = layer >= 0 ? plan_of(plan_, layer) : nullptr;
  cached_group_ = -1;
  uint64_t bytes = 0;
  std::optional<StackedLayer> stacked;
  for (const auto& s : sources) {
    if (s.kind == Source::Stacked) {
      if (!stacked) stacked.emplace(ck_, *lp, options_);
      const std::vector<uint8_t>& b = stacked->bytes(s.name);
      writer.write(s.spec.name, b.data(), b.size());
      bytes += b.size();
      continue;
    }
    // Copied tensors, and experts kept alone, are the input's bytes, unchanged.
    std::string from = s.kind == Source::Copy ? s.name : "";
    if (s.kind == Source::Expert && lp->members(s.group).size() == 1)
      from = names_.expert(layer, lp->members(s.group)[0]) + s.proj;
    if (!from.empty()) {
      writer.write(s.spec.name, ck_.bytes(from), ck_.info(from).nbytes());
      bytes += ck_.info(from).nbytes();
      continue;
    }
    at::Tensor t;
    if (s.kind == Source::Router)
      t = pruned_router(ck_, s, *lp, plan_.router_policy, static_cast<int64_t>(expert_axis(names_, ck_, layer, s.name)));
    else
      t = merged_projection(s, *lp);
    t = t.contiguous();
    writer.write(s.spec.name, t.data_ptr(), t.nbytes());
    bytes += t.nbytes();
  }
  writer.finish();
  return bytes;
}

// config.json with the new expert count, and per-layer counts where they differ.
nlohmann::json pruned_config(const Checkpoint& ck, const Plan& plan) {
  const ModelConfig& c = ck.config();
  nlohmann::json config = read_json_file(ck.dir() + "/config.json");
  int64_t most = 0, fewest = INT64_MAX;
  std::vector<int64_t> per_layer(static_cast<size_t>(c.num_layers), 0);
  for (const auto& lp : plan.layers) {
    most = std::max(most, lp.num_groups());
    fewest = std::min(fewest, lp.num_groups());
    per_layer[static_cast<size_t>(lp.layer)] = lp.num_groups();
  }
  config[c.experts_key()] = most;
  if (fewest < c.router.top_k) {
    config[c.top_k_key()] = fewest;
    if (config.contains("experts_per_token")) config["experts_per_token"] = fewest;  // gpt-oss repeats it
  }
  if (c.router.n_group > 1 && (fewest != most || most != c.max_experts())) {
    // Merged experts no longer fall into the original groups: route among all of them.
    config["n_group"] = 1;
    config["topk_group"] = 1;
  }
  if (fewest != most)
    config["smoe_layer_experts"] = per_layer;
  else
    config.erase("smoe_layer_experts");
  return config;
}

}  // namespace

PruneSummary prune_checkpoint(const Checkpoint& ck, const Plan& plan, const std::string& plan_path,
                              const std::string& out_dir, const PruneOptions& options) {
  const ModelConfig& c = ck.config();
  validate_plan(plan, c, plan_path);
  const TensorNames names(c.family);
  check_shapes(ck, plan, names);
  PruneSummary summary;
  summary.bytes_before = ck.total_bytes();
  for (const auto& lp : plan.layers) {
    summary.experts_before += lp.num_experts;
    summary.experts_after += lp.num_groups();
  }
  std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                 {"smoe_plan", plan_path},
                                                 {"smoe_plan_sha256", sha256_file(plan_path)},
                                                 {"smoe_source_model", ck.dir()}};
  for (const auto& [k, v] : plan.attrs) metadata["smoe_plan_" + k] = v;

  // out_dir: an empty folder from an AtomicOutput, made final by the caller.
  const std::map<int64_t, std::vector<Source>> shards = output_tensors(ck, plan, names);
  nlohmann::json weight_map = nlohmann::json::object();
  ShardWriter writer(ck, plan, names, options);
  size_t shard_no = 0;
  for (const auto& [l, sources] : shards) {
    char fname[64];
    std::snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", ++shard_no, shards.size());
    for (const auto& s : sources) weight_map[s.spec.name] = fname;
    summary.bytes_after += writer.write(out_dir + "/" + fname, l, sources, metadata);
  }
  write_json_file(out_dir + "/model.safetensors.index.json",
                  {{"metadata", {{"total_size", summary.bytes_after}}}, {"weight_map", weight_map}});
  write_json_file(out_dir + "/config.json", pruned_config(ck, plan));
  for (const char* extra : {"tokenizer.json", "tokenizer.model", "tiktoken.model", "tokenizer_config.json",
                            "special_tokens_map.json", "generation_config.json"})
    if (fs::exists(ck.dir() + "/" + extra)) fs::copy_file(ck.dir() + "/" + extra, out_dir + "/" + extra);
  return summary;
}

void prune(const PruneJobOptions& o) {
  OutputSpec spec = folder_output(o.out, "prune");
  spec.overwrite = o.overwrite;
  spec.inputs = o.inputs;
  spec.inputs.push_back(o.model);
  spec.inputs.push_back(o.plan);
  AtomicOutput output(spec);
  const Checkpoint checkpoint(o.model);
  const PruneSummary s = prune_checkpoint(checkpoint, read_plan(o.plan), o.plan, output.temp(), o.prune);
  output.commit();
  log_info(str("prune: ", s.experts_before, " experts -> ", s.experts_after, ", ", s.bytes_before >> 20, " MB -> ",
               s.bytes_after >> 20, " MB; wrote ", output.path()));
}

}  // namespace smoe
