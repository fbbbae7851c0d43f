// A test tool: runs smoe's clustering and assignment routines on JSON requests,
// one per line of stdin, and prints one JSON answer per line, so that
// test_clustering.py can compare them with scikit-learn and scipy (one process
// for many requests: LibTorch takes about a second to load).
//   {"op": "lsa", "matrix": [[...]]}                        -> {"assignment": [...]}
//   {"op": "spectral", "matrix": A, "k": 3, "seed": 0}      -> {"labels": [...]}
//   {"op": "average", "matrix": D, "k": 3}                  -> {"labels": [...]}
#include <ATen/ATen.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "smoe/prune/assignment.h"
#include "smoe/prune/clustering.h"

namespace {

nlohmann::json answer(const nlohmann::json& req) {
  const auto rows = req["matrix"].get<std::vector<std::vector<double>>>();
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<double> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  const std::string op = req["op"];
  nlohmann::json out;
  if (op == "lsa") {
    out["assignment"] = smoe::linear_assignment(flat, n);
  } else {
    at::Tensor m = at::tensor(flat, at::kDouble).view({n, n});
    const int64_t k = req["k"];
    if (op == "spectral")
      out["labels"] = smoe::spectral_clustering(m, k, req.value("seed", 0ull), req.value("restarts", 10));
    else
      out["labels"] = smoe::average_linkage(m, k);
  }
  return out;
}

}  // namespace

int main() {
  std::string line;
  while (std::getline(std::cin, line))
    if (!line.empty()) std::cout << answer(nlohmann::json::parse(line)).dump() << "\n";
  return 0;
}
