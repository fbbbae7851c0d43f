// The expert-parallel MoE executor. Each rank routes its own tokens, sends each
// (token, expert) slot to the rank that holds the expert (variable all-to-all),
// runs its local experts on what it received, sends the outputs back, and
// combines them with the gate weights. No slot is dropped unless a capacity factor
// is given; then each expert takes at most ceil(factor * T * k / E) slots from a
// rank's T tokens, keeping those with the highest gate weights.
#pragma once

#include <cstdint>

#include "smoe/parallel/comm.h"
#include "smoe/parallel/placement.h"
#include "smoe/model/moe.h"

namespace smoe {

// How a rank runs its experts on the rows it received. PerSource: one GEMM per
// (source rank, expert) block, which holds exactly the rows one process would
// give that expert, so results do not depend on the rank count (--exact-ep).
// Grouped: one GEMM per expert over every source's rows (the default on GPUs).
enum class ExpertGemms { PerSource, Grouped };

class ExpertParallelExecutor : public MoeExecutor {
 public:
  ExpertParallelExecutor(Communicator& comm, const ExpertPlacement& placement, double capacity_factor = 0.0,
                         ExpertGemms gemms = ExpertGemms::PerSource);

  at::Tensor run(const MoeLayer& layer, const at::Tensor& x, const Routing& r, RoutingObserver* observer) override;

  // Slots this rank dropped for capacity, and all it routed, since construction.
  int64_t dropped_slots() const { return dropped_; }
  int64_t routed_slots() const { return routed_; }
  // Wall-clock seconds spent in the token exchanges (counts, tokens, outputs).
  double exchange_seconds() const { return exchange_seconds_; }

 private:
  Communicator& comm_;
  const ExpertPlacement& placement_;
  double capacity_factor_;
  ExpertGemms gemms_;
  int64_t dropped_ = 0;
  int64_t routed_ = 0;
  double exchange_seconds_ = 0.0;
};

}  // namespace smoe
