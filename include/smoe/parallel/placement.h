// Expert placement: which rank holds each routed expert of each MoE layer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "smoe/model/config.h"

namespace smoe {

class ExpertPlacement {
 public:
  // Contiguous blocks, as even as E and P allow: the first E % P ranks hold one
  // expert more than the rest.
  static ExpertPlacement contiguous(const ModelConfig& config, int ranks);
  // A placement map from a JSON file: {"layers": {"3": [owner of expert 0, ...], ...}}
  // for given layers and/or {"default": [owners]} for the MoE layers not listed.
  // Layers given in neither get contiguous blocks. InputError naming the file.
  static ExpertPlacement from_file(const std::string& path, const ModelConfig& config, int ranks);

  // from_file when `path` is given, else contiguous: a job's --placement option.
  static ExpertPlacement from_option(const std::string& path, const ModelConfig& config, int ranks) {
    return path.empty() ? contiguous(config, ranks) : from_file(path, config, ranks);
  }

  int ranks() const { return ranks_; }
  int owner(int64_t layer, int64_t expert) const;
  // Owners of every expert of a layer (empty for a dense layer).
  const std::vector<int64_t>& owners(int64_t layer) const { return owners_.at(static_cast<size_t>(layer)); }
  std::vector<int64_t> experts_of(int64_t layer, int rank) const;

 private:
  int ranks_ = 1;
  std::vector<std::vector<int64_t>> owners_;  // [layer][expert]
};

}  // namespace smoe
