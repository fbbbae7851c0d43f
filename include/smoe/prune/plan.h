// A pruning plan (plan.h5, docs/plan-h5.md): per MoE layer, which group each
// expert joins (or that it is dropped), its weight in the group's merge, and the
// group's reference expert (the most used member: alignment target and router row).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "smoe/core/choices.h"
#include "smoe/model/config.h"

namespace smoe {

constexpr int64_t kPlanSchemaVersion = 1;

struct LayerPlan {
  int64_t layer = 0;
  int64_t num_experts = 0;        // before pruning
  std::vector<int64_t> group;     // [E]: group of each expert, -1 if dropped
  std::vector<double> weight;     // [E]: merge weight within its group (groups sum to 1)
  std::vector<int64_t> reference; // [G]: each group's reference expert
  int64_t num_groups() const { return static_cast<int64_t>(reference.size()); }
  // Members of group g, in expert order.
  std::vector<int64_t> members(int64_t g) const;
};

// The router row of a merged group: its reference member's, or the group's
// merge-weighted mean row.
enum class RouterPolicy { MostUsed, Weighted };
inline const ChoiceNames<RouterPolicy>& router_policy_names() {
  static const ChoiceNames<RouterPolicy> names{{RouterPolicy::MostUsed, "most-used"}, {RouterPolicy::Weighted, "weighted"}};
  return names;
}

struct Plan {
  std::map<std::string, std::string> attrs;  // method, task, provenance (strings)
  RouterPolicy router_policy = RouterPolicy::MostUsed;
  std::vector<LayerPlan> layers;
};

// Writes the plan to `path`, which should be an AtomicOutput's temporary: AtomicOutput makes
// it final (fsync, rename) and removes it on failure.
void write_plan(const std::string& path, const Plan& plan);
// Reads and checks a plan's own consistency; InputError naming the file.
Plan read_plan(const std::string& path);
// Checks a plan against a model: one entry per MoE layer, expert counts, groups.
void validate_plan(const Plan& plan, const ModelConfig& config, const std::string& path);

}  // namespace smoe
