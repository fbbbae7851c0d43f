// Linear assignment (the Hungarian method, Jonker-Volgenant style shortest
// augmenting paths, O(n^3)): the permutation minimising the total cost.
#pragma once

#include <cstdint>
#include <vector>

namespace smoe {

// cost: n x n, row-major. Returns col[i], the column assigned to row i.
std::vector<int64_t> linear_assignment(const std::vector<double>& cost, int64_t n);

}  // namespace smoe
