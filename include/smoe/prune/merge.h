// Merging a group of experts into one: align each member's hidden units to the
// reference expert's (linear assignment on weight similarity), then average with
// the members' merge weights. Computed in float64.
#pragma once

#include <cstdint>
#include <vector>

#include "smoe/model/layers.h"

namespace smoe {

// perm[i] = the member's hidden unit matched to the reference's unit i, maximising
// the summed cosine similarity of units (a unit: its gate row, up row and down column).
std::vector<int64_t> align_hidden_units(const GatedMlp& reference, const GatedMlp& member);

// Σ_m weights[m] * member_m (aligned to members[reference] when `align`), as float64.
GatedMlp merge_experts(const std::vector<GatedMlp>& members, const std::vector<double>& weights, size_t reference,
                       bool align);

}  // namespace smoe
