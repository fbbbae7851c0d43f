#include "smoe/prune/assignment.h"

#include <limits>

#include "smoe/core/error.h"

namespace smoe {

std::vector<int64_t> linear_assignment(const std::vector<double>& cost, int64_t n) {
  SMOE_ASSERT(static_cast<int64_t>(cost.size()) == n * n, "cost matrix must be n x n");
  const double inf = std::numeric_limits<double>::infinity();
  // Potentials u (rows), v (columns); p[j]: row matched to column j (1-based, 0 = none).
  std::vector<double> u(static_cast<size_t>(n + 1), 0.0), v(static_cast<size_t>(n + 1), 0.0);
  std::vector<int64_t> p(static_cast<size_t>(n + 1), 0), way(static_cast<size_t>(n + 1), 0);
  for (int64_t i = 1; i <= n; ++i) {
    p[0] = i;
    int64_t j0 = 0;
    std::vector<double> minv(static_cast<size_t>(n + 1), inf);
    std::vector<char> used(static_cast<size_t>(n + 1), 0);
    do {
      used[static_cast<size_t>(j0)] = 1;
      const int64_t i0 = p[static_cast<size_t>(j0)];
      double delta = inf;
      int64_t j1 = 0;
      for (int64_t j = 1; j <= n; ++j) {
        if (used[static_cast<size_t>(j)]) continue;
        const double cur = cost[static_cast<size_t>((i0 - 1) * n + (j - 1))] - u[static_cast<size_t>(i0)] -
                           v[static_cast<size_t>(j)];
        if (cur < minv[static_cast<size_t>(j)]) {
          minv[static_cast<size_t>(j)] = cur;
          way[static_cast<size_t>(j)] = j0;
        }
        if (minv[static_cast<size_t>(j)] < delta) {
          delta = minv[static_cast<size_t>(j)];
          j1 = j;
        }
      }
      for (int64_t j = 0; j <= n; ++j) {
        if (used[static_cast<size_t>(j)]) {
          u[static_cast<size_t>(p[static_cast<size_t>(j)])] += delta;
          v[static_cast<size_t>(j)] -= delta;
        } else {
          minv[static_cast<size_t>(j)] -= delta;
        }
      }
      j0 = j1;
    } while (p[static_cast<size_t>(j0)] != 0);
    do {
      const int64_t j1 = way[static_cast<size_t>(j0)];
      p[static_cast<size_t>(j0)] = p[static_cast<size_t>(j1)];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int64_t> col(static_cast<size_t>(n));
  for (int64_t j = 1; j <= n; ++j) col[static_cast<size_t>(p[static_cast<size_t>(j)] - 1)] = j - 1;
  return col;
}

}  // namespace smoe
