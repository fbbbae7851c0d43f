// Applying a plan to a checkpoint: writes the pruned checkpoint in the family's
// own layout, tensor by tensor (never the whole model in memory).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "smoe/prune/plan.h"

namespace smoe {

class Checkpoint;

struct PruneOptions {
  bool align = true;  // align hidden units before merging
};

struct PruneSummary {
  int64_t experts_before = 0, experts_after = 0;
  uint64_t bytes_before = 0, bytes_after = 0;
};

// Writes the pruned checkpoint into `out_dir`, an empty folder (the temporary of
// an AtomicOutput, which the caller commits). Experts
// kept alone are copied byte for byte; merged groups are computed in float64 and
// stored in the checkpoint's dtype. config.json gets the new expert count (and
// smoe_layer_experts where layers differ); the plan's provenance goes into every
// shard's metadata.
PruneSummary prune_checkpoint(const Checkpoint& checkpoint, const Plan& plan, const std::string& plan_path,
                              const std::string& out_dir, const PruneOptions& options);

struct PruneJobOptions {
  std::string model, plan, out;     // checkpoint folder, plan.h5, the pruned checkpoint's folder
  std::vector<std::string> inputs;  // other files the options name (--config)
  PruneOptions prune;
  bool overwrite = false;
};

// The job (one process): the pruned checkpoint written to `out` as one AtomicOutput.
void prune(const PruneJobOptions& options);

}  // namespace smoe
