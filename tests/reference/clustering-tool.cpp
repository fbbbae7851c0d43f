// A test tool: runs one of smoe's clustering or assignment routines on a JSON
// request from stdin and prints the result as JSON, so that test_clustering.py can
// compare it with scikit-learn and scipy.
//   {"op": "lsa", "matrix": [[...]]}                        -> {"assignment": [...]}
//   {"op": "spectral", "matrix": A, "k": 3, "seed": 0}      -> {"labels": [...]}
//   {"op": "average", "matrix": D, "k": 3}                  -> {"labels": [...]}
#include <ATen/ATen.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "smoe/prune/assignment.h"
#include "smoe/prune/clustering.h"

int main() {
  nlohmann::json req = nlohmann::json::parse(std::cin);
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
  std::cout << out.dump() << "\n";
  return 0;
}
