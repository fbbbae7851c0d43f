#include "smoe/parallel/placement.h"

#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/core/numbers.h"
#include "smoe/io/json.h"

namespace smoe {

namespace {

std::vector<int64_t> blocks(int64_t experts, int ranks) {
  std::vector<int64_t> owner(static_cast<size_t>(experts));
  const int64_t base = experts / ranks, extra = experts % ranks;
  int64_t e = 0;
  for (int r = 0; r < ranks; ++r) {
    const int64_t n = base + (r < extra ? 1 : 0);
    for (int64_t i = 0; i < n; ++i) owner[static_cast<size_t>(e++)] = r;
  }
  return owner;
}

std::vector<int64_t> owner_list(const nlohmann::json& v, int64_t experts, int ranks, const std::string& path,
                                const std::string& what) {
  SMOE_CHECK_INPUT(v.is_array(), path, ": ", what, " must be a list of ranks, one per expert");
  SMOE_CHECK_INPUT(static_cast<int64_t>(v.size()) == experts, path, ": ", what, " lists ", v.size(),
                   " owners for ", experts, " experts");
  std::vector<int64_t> owner;
  for (const auto& o : v) {
    const int64_t r = json_to_int(o, path, what + " entry");
    SMOE_CHECK_INPUT(r >= 0 && r < ranks, path, ": ", what, " names rank ", r, ", outside [0, ", ranks, ")");
    owner.push_back(r);
  }
  return owner;
}

}  // namespace

ExpertPlacement ExpertPlacement::contiguous(const ModelConfig& config, int ranks) {
  SMOE_ASSERT(ranks >= 1, "at least one rank");
  ExpertPlacement p;
  p.ranks_ = ranks;
  for (int64_t e : config.layer_experts) p.owners_.push_back(e > 0 ? blocks(e, ranks) : std::vector<int64_t>{});
  return p;
}

ExpertPlacement ExpertPlacement::from_file(const std::string& path, const ModelConfig& config, int ranks) {
  ExpertPlacement p = contiguous(config, ranks);
  nlohmann::json j = read_json_file(path);
  SMOE_CHECK_INPUT(j.is_object(), path, ": a placement must be a JSON object with 'layers' and/or 'default'");
  for (auto it = j.begin(); it != j.end(); ++it)
    SMOE_CHECK_INPUT(it.key() == "layers" || it.key() == "default", path, ": unknown key '", it.key(), "'");
  if (j.contains("default")) {
    for (size_t l = 0; l < p.owners_.size(); ++l) {
      const int64_t E = config.layer_experts[l];
      if (E > 0) p.owners_[l] = owner_list(j["default"], E, ranks, path, "'default'");
    }
  }
  if (j.contains("layers")) {
    SMOE_CHECK_INPUT(j["layers"].is_object(), path, ": 'layers' must map layer numbers to owner lists");
    for (auto it = j["layers"].begin(); it != j["layers"].end(); ++it) {
      const int64_t l = parse_int(it.key(), path + ": layer '" + clip(it.key()) + "'");
      SMOE_CHECK_INPUT(l >= 0 && l < config.num_layers, path, ": layer '", it.key(), "' is not a layer of the model (0..",
                       config.num_layers - 1, ")");
      SMOE_CHECK_INPUT(config.is_moe(l), path, ": layer ", l, " is a dense layer and has no experts to place");
      p.owners_[static_cast<size_t>(l)] =
          owner_list(it.value(), config.layer_experts[static_cast<size_t>(l)], ranks, path, "layer " + it.key());
    }
  }
  return p;
}

int ExpertPlacement::owner(int64_t layer, int64_t expert) const {
  return static_cast<int>(owners_.at(static_cast<size_t>(layer)).at(static_cast<size_t>(expert)));
}

std::vector<int64_t> ExpertPlacement::experts_of(int64_t layer, int rank) const {
  std::vector<int64_t> out;
  const auto& o = owners(layer);
  for (size_t e = 0; e < o.size(); ++e)
    if (o[e] == rank) out.push_back(static_cast<int64_t>(e));
  return out;
}

}  // namespace smoe
