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
  GatedMlp p = m;
  p.gate_proj = m.gate_proj.index_select(0, idx);
  p.up_proj = m.up_proj.index_select(0, idx);
  p.down_proj = m.down_proj.index_select(1, idx);
  if (m.gate_bias.defined()) p.gate_bias = m.gate_bias.index_select(0, idx);
  if (m.up_bias.defined()) p.up_bias = m.up_bias.index_select(0, idx);
  return p;  // down_bias runs over the outputs: not permuted
}

// acc += w * t in float64 (t undefined: nothing; acc undefined: started at zero).
void add_weighted(at::Tensor& acc, double w, const at::Tensor& t) {
  if (!t.defined()) return;
  if (!acc.defined()) acc = at::zeros_like(t, at::kDouble);
  acc += w * t.to(at::kDouble);
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
  GatedMlp out;
  out.swiglu_limit = ref.swiglu_limit;
  for (size_t m = 0; m < members.size(); ++m) {
    GatedMlp x = members[m];
    if (align && m != reference) x = permute_units(x, align_hidden_units(ref, x));
    add_weighted(out.gate_proj, weights[m], x.gate_proj);
    add_weighted(out.up_proj, weights[m], x.up_proj);
    add_weighted(out.down_proj, weights[m], x.down_proj);
    add_weighted(out.gate_bias, weights[m], x.gate_bias);
    add_weighted(out.up_bias, weights[m], x.up_bias);
    add_weighted(out.down_bias, weights[m], x.down_bias);
  }
  return out;
}

}  // namespace smoe
