#include "smoe/prune/plan.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <set>

#include "smoe/core/error.h"
#include "smoe/core/numbers.h"
#include "smoe/io/hdf5.h"

namespace smoe {

std::vector<int64_t> LayerPlan::members(int64_t g) const {
  std::vector<int64_t> m;
  for (size_t e = 0; e < group.size(); ++e)
    if (group[e] == g) m.push_back(static_cast<int64_t>(e));
  return m;
}

void write_plan(const std::string& path, const Plan& plan) {
  {
    h5::Handle file = h5::create_file(path);
    h5::write_attr(file.get(), "format", std::string("smoe-plan"));
    h5::write_attr(file.get(), "schema_version", kPlanSchemaVersion);
    h5::write_attr(file.get(), "router_policy", std::string(choice_name(router_policy_names(), plan.router_policy)));
    for (const auto& [k, v] : plan.attrs) h5::write_attr(file.get(), k, v);
    h5::Handle layers = h5::create_group(file.get(), "layers");
    for (const auto& lp : plan.layers) {
      h5::Handle g = h5::create_group(layers.get(), std::to_string(lp.layer));
      h5::write_attr(g.get(), "num_experts", lp.num_experts);
      h5::write_attr(g.get(), "num_groups", lp.num_groups());
      h5::write_tensor(g.get(), "group", at::tensor(lp.group, at::kLong), 0, 0);
      h5::write_tensor(g.get(), "weight", at::tensor(lp.weight, at::kDouble), 0, 0);
      h5::write_tensor(g.get(), "reference", at::tensor(lp.reference, at::kLong), 0, 0);
    }
  }
}

namespace {

std::vector<int64_t> longs(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).contiguous().view({-1});
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

void check_layer(const LayerPlan& lp, const std::string& path) {
  const std::string where = str(path, ": layer ", lp.layer);
  SMOE_CHECK_INPUT(lp.num_experts > 0, where, ": num_experts must be positive");
  SMOE_CHECK_INPUT(static_cast<int64_t>(lp.group.size()) == lp.num_experts &&
                       static_cast<int64_t>(lp.weight.size()) == lp.num_experts,
                   where, ": 'group' and 'weight' need one entry per expert (", lp.num_experts, "), found ",
                   lp.group.size(), " and ", lp.weight.size());
  const int64_t G = lp.num_groups();
  SMOE_CHECK_INPUT(G >= 1, where, ": keeps no group (every layer keeps at least one expert)");
  std::vector<double> sum(static_cast<size_t>(G), 0.0);
  std::vector<int64_t> size(static_cast<size_t>(G), 0);
  for (int64_t e = 0; e < lp.num_experts; ++e) {
    const int64_t g = lp.group[static_cast<size_t>(e)];
    SMOE_CHECK_INPUT(g >= -1 && g < G, where, ": expert ", e, " is put in group ", g, ", outside [-1, ", G, ")");
    const double w = lp.weight[static_cast<size_t>(e)];
    SMOE_CHECK_INPUT(std::isfinite(w) && w >= 0, where, ": expert ", e, " has merge weight ", w);
    if (g >= 0) {
      sum[static_cast<size_t>(g)] += w;
      ++size[static_cast<size_t>(g)];
    }
  }
  for (int64_t g = 0; g < G; ++g) SMOE_CHECK_INPUT(size[static_cast<size_t>(g)] > 0, where, ": group ", g, " is empty");
  for (int64_t g = 0; g < G; ++g) {
    SMOE_CHECK_INPUT(std::abs(sum[static_cast<size_t>(g)] - 1.0) < 1e-6, where, ": merge weights of group ", g,
                     " sum to ", sum[static_cast<size_t>(g)], ", not 1");
    const int64_t r = lp.reference[static_cast<size_t>(g)];
    SMOE_CHECK_INPUT(r >= 0 && r < lp.num_experts, where, ": group ", g, " names expert ", r,
                     " as its reference, which does not exist (", lp.num_experts, " experts)");
    SMOE_CHECK_INPUT(lp.group[static_cast<size_t>(r)] == g, where, ": group ", g, "'s reference expert ", r,
                     " is not a member of the group");
  }
}

}  // namespace

Plan read_plan(const std::string& path) {
  h5::Handle file = h5::open_file(path);
  SMOE_CHECK_INPUT(h5::has_attr(file.get(), "format") && h5::read_attr_string(file.get(), "format", path) == "smoe-plan",
                   path, ": not a smoe plan (format attribute missing or not 'smoe-plan')");
  const int64_t version = h5::read_attr_int(file.get(), "schema_version", path);
  SMOE_CHECK_INPUT(version == kPlanSchemaVersion, path, ": plan schema version ", version, ", this smoe reads ",
                   kPlanSchemaVersion);
  Plan plan;
  plan.router_policy =
      parse_choice(router_policy_names(), path + ": router_policy", h5::read_attr_string(file.get(), "router_policy", path));
  for (const char* key : {"method", "task", "stats", "stats_sha256", "budget", "factor", "experts", "seed", "merge_weight",
                          "model", "model_type", "model_config_sha256", "created", "software"})
    if (h5::has_attr(file.get(), key)) plan.attrs[key] = h5::read_attr_string(file.get(), key, path);
  h5::Handle layers = h5::open_group(file.get(), "layers", path);
  std::set<int64_t> seen;
  for (const std::string& name : h5::child_names(layers.get(), path)) {
    LayerPlan lp;
    lp.layer = parse_int(name, path + ": '/layers/" + clip(name) + "'");
    h5::Handle g = h5::open_group(layers.get(), name, path);
    lp.num_experts = h5::read_attr_int(g.get(), "num_experts", path);
    lp.group = longs(h5::read_tensor(g.get(), "group", path));
    at::Tensor w = h5::read_tensor(g.get(), "weight", path).to(at::kDouble).contiguous().view({-1});
    lp.weight.assign(w.data_ptr<double>(), w.data_ptr<double>() + w.numel());
    lp.reference = longs(h5::read_tensor(g.get(), "reference", path));
    check_layer(lp, path);
    seen.insert(lp.layer);
    plan.layers.push_back(std::move(lp));
  }
  std::sort(plan.layers.begin(), plan.layers.end(), [](const LayerPlan& a, const LayerPlan& b) { return a.layer < b.layer; });
  return plan;
}

void validate_plan(const Plan& plan, const ModelConfig& config, const std::string& path) {
  std::vector<int64_t> moe;
  for (int64_t l = 0; l < config.num_layers; ++l)
    if (config.is_moe(l)) moe.push_back(l);
  std::vector<int64_t> planned;
  for (const auto& lp : plan.layers) planned.push_back(lp.layer);
  SMOE_CHECK_INPUT(planned == moe, path, ": plans ", planned.size(), " layers, but the model (", config.path, ") has ",
                   moe.size(), " MoE layers; the plan must give every MoE layer once");
  for (const auto& lp : plan.layers) {
    check_layer(lp, path);
    SMOE_CHECK_INPUT(lp.num_experts == config.layer_experts[static_cast<size_t>(lp.layer)], path, ": layer ", lp.layer,
                     " plans ", lp.num_experts, " experts, the model has ",
                     config.layer_experts[static_cast<size_t>(lp.layer)]);
  }
}

}  // namespace smoe
