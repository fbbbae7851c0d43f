#include "smoe/prune/merge.h"

#include <ATen/ATen.h>

#include "smoe/core/error.h"
#include "smoe/prune/assignment.h"

namespace smoe {

namespace {

// [ff, 3d]: each hidden unit's gate row, up row and down column, unit-normalised.
at::Tensor unit_features(const GatedMlp& m) {
  at::Tensor f = at::cat({m.gate_proj, m.up_proj, m.down_proj.t()}, 1).to(at::kDouble);
  return f / f.norm(2, {1}, true).clamp_min(1e-300);
}

GatedMlp permute_units(const GatedMlp& m, const std::vector<int64_t>& perm) {
  at::Tensor idx = at::tensor(perm, at::kLong);
  return {m.gate_proj.index_select(0, idx), m.up_proj.index_select(0, idx), m.down_proj.index_select(1, idx)};
}

}  // namespace

std::vector<int64_t> align_hidden_units(const GatedMlp& reference, const GatedMlp& member) {
  at::Tensor sim = at::mm(unit_features(reference), unit_features(member).t()).contiguous();
  const int64_t n = sim.size(0);
  std::vector<double> cost(static_cast<size_t>(n * n));
  const double* s = sim.data_ptr<double>();
  for (int64_t i = 0; i < n * n; ++i) cost[static_cast<size_t>(i)] = -s[i];
  return linear_assignment(cost, n);
}

GatedMlp merge_experts(const std::vector<GatedMlp>& members, const std::vector<double>& weights, size_t reference,
                       bool align) {
  SMOE_ASSERT(!members.empty() && members.size() == weights.size() && reference < members.size(), "bad merge group");
  const GatedMlp& ref = members[reference];
  GatedMlp out{at::zeros_like(ref.gate_proj, at::kDouble), at::zeros_like(ref.up_proj, at::kDouble),
               at::zeros_like(ref.down_proj, at::kDouble)};
  for (size_t m = 0; m < members.size(); ++m) {
    GatedMlp x = members[m];
    if (align && m != reference) x = permute_units(x, align_hidden_units(ref, x));
    out.gate_proj += weights[m] * x.gate_proj.to(at::kDouble);
    out.up_proj += weights[m] * x.up_proj.to(at::kDouble);
    out.down_proj += weights[m] * x.down_proj.to(at::kDouble);
  }
  return out;
}

}  // namespace smoe
