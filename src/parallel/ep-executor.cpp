#include "smoe/parallel/ep-executor.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>

#include "smoe/core/error.h"
#include "smoe/parallel/autograd.h"

namespace smoe {

namespace {

std::vector<int64_t> to_vector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

class Timer {
 public:
  explicit Timer(double* total) : total_(total), start_(std::chrono::steady_clock::now()) {}
  ~Timer() { *total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  double* total_;
  std::chrono::steady_clock::time_point start_;
};

// The slots to send, sorted by expert (and, under a capacity, by falling weight
// within an expert, so that the lowest gates are the ones dropped, counted in
// *dropped); returns slot indices grouped by expert, in slot order within one.
at::Tensor send_order(const at::Tensor& experts, const at::Tensor& weights, int64_t slots_total, int64_t E,
                      double capacity_factor, int64_t* dropped) {
  if (capacity_factor <= 0) return std::get<1>(at::sort(experts, /*stable=*/true, 0, false));
  const int64_t capacity = static_cast<int64_t>(std::ceil(capacity_factor * static_cast<double>(slots_total) / E));
  at::Tensor by_weight = std::get<1>(at::sort(weights.to(at::kFloat), /*stable=*/true, 0, /*descending=*/true));
  at::Tensor by_expert = std::get<1>(at::sort(experts.index_select(0, by_weight), true, 0, false));
  at::Tensor order = by_weight.index_select(0, by_expert);
  at::Tensor counts = at::bincount(experts, {}, E);
  at::Tensor starts = at::cumsum(counts, 0) - counts;
  at::Tensor position = at::arange(slots_total, experts.options()) - starts.index_select(0, experts.index_select(0, order));
  at::Tensor slots = order.masked_select(position < capacity);
  *dropped += slots_total - slots.numel();
  return std::get<0>(at::sort(experts.index_select(0, slots) * slots_total + slots, true, 0, false)) % slots_total;
}

// Rows [offset, offset + n) of x, grouped by expert in expert order: each expert
// runs on its rows (one GEMM each); their outputs join `blocks`.
void run_in_expert_order(const MoeLayer& layer, const at::Tensor& x, const at::Tensor& experts, int64_t offset,
                         int64_t n, int rank, std::vector<at::Tensor>* blocks) {
  const std::vector<int64_t> per_expert = to_vector(at::bincount(experts.narrow(0, offset, n), {}, layer.num_experts));
  for (int64_t e = 0; e < layer.num_experts; ++e) {
    const int64_t m = per_expert[static_cast<size_t>(e)];
    if (m == 0) continue;
    const GatedMlp& expert = layer.experts[static_cast<size_t>(e)];
    SMOE_ASSERT(expert.defined(), "layer ", layer.layer, " expert ", e, " received tokens on rank ", rank,
                ", which does not hold it");
    blocks->push_back(gated_mlp(expert, x.narrow(0, offset, m)));
    offset += m;
  }
}

// Runs the local experts on what each source rank sent, one (source, expert)
// block at a time: a block holds exactly the rows of one batch that one process
// would give that expert, so the GEMMs, and the results, do not depend on the
// rank count.
at::Tensor run_received(const MoeLayer& layer, const at::Tensor& recv_x, const at::Tensor& recv_experts,
                        const std::vector<int64_t>& recv_counts, int rank) {
  std::vector<at::Tensor> blocks;
  int64_t offset = 0;
  for (const int64_t n : recv_counts) {
    if (n > 0) run_in_expert_order(layer, recv_x, recv_experts, offset, n, rank, &blocks);
    offset += n;
  }
  return blocks.empty() ? at::empty_like(recv_x) : at::cat(blocks, 0);
}

// Runs the local experts on what every source rank sent, one GEMM per expert over
// all its rows: fewer, larger GEMMs (a GPU's speed), but a row's result may
// differ in the last bits with the rank count. Rows come back in received order.
at::Tensor run_grouped(const MoeLayer& layer, const at::Tensor& recv_x, const at::Tensor& recv_experts, int rank) {
  const int64_t n = recv_x.size(0);
  if (n == 0) return at::empty_like(recv_x);
  const at::Tensor order = std::get<1>(at::sort(recv_experts, /*stable=*/true, 0, false));
  std::vector<at::Tensor> blocks;
  run_in_expert_order(layer, recv_x.index_select(0, order), recv_experts.index_select(0, order), 0, n, rank, &blocks);
  const at::Tensor back = at::empty_like(order).scatter_(0, order, at::arange(n, order.options()));
  return at::cat(blocks, 0).index_select(0, back);
}

}  // namespace

ExpertParallelExecutor::ExpertParallelExecutor(Communicator& comm, const ExpertPlacement& placement,
                                               double capacity_factor, ExpertGemms gemms)
    : comm_(comm), placement_(placement), capacity_factor_(capacity_factor), gemms_(gemms) {
  SMOE_ASSERT(placement.ranks() == comm.size(), "placement for ", placement.ranks(), " ranks used on ", comm.size());
  SMOE_CHECK_INPUT(capacity_factor >= 0, "capacity factor must not be negative, found ", capacity_factor);
}

at::Tensor ExpertParallelExecutor::run(const MoeLayer& layer, const at::Tensor& x, const Routing& r,
                                       RoutingObserver* observer) {
  const int64_t T = x.size(0), k = r.experts.size(1), E = layer.num_experts;
  const int P = comm_.size();
  const at::Device device = x.device();
  at::Tensor experts = r.experts.reshape({-1});
  at::Tensor weights = r.weights.reshape({-1});
  routed_ += T * k;

  at::Tensor slots = send_order(experts, weights, T * k, E, capacity_factor_, &dropped_);
  at::Tensor slot_experts = experts.index_select(0, slots);
  at::Tensor owners = at::tensor(placement_.owners(layer.layer), at::kLong).to(device);
  at::Tensor dest = owners.index_select(0, slot_experts);
  // Group by destination rank, keeping expert order inside each group.
  at::Tensor by_dest = std::get<1>(at::sort(dest, true, 0, false));
  slots = slots.index_select(0, by_dest);
  slot_experts = slot_experts.index_select(0, by_dest);
  at::Tensor tokens = at::floor_divide(slots, k);
  const std::vector<int64_t> send_counts = to_vector(at::bincount(dest, {}, P));

  at::Tensor recv_x, recv_experts;
  std::vector<int64_t> recv_counts;
  {
    Timer t(&exchange_seconds_);
    recv_counts = comm_.exchange_counts(send_counts);
    recv_x = all_to_all_differentiable(comm_, x.index_select(0, tokens), send_counts, recv_counts);
    recv_experts = comm_.all_to_all(slot_experts, send_counts, recv_counts);
  }

  at::Tensor y = gemms_ == ExpertGemms::Grouped ? run_grouped(layer, recv_x, recv_experts, comm_.rank())
                                                 : run_received(layer, recv_x, recv_experts, recv_counts, comm_.rank());

  at::Tensor back;
  {
    Timer t(&exchange_seconds_);
    back = all_to_all_differentiable(comm_, y, recv_counts, send_counts);
  }

  // Combine in expert order and dtype, as the local executor does, so that sums round alike.
  at::Tensor out = at::zeros(x.sizes(), x.options().dtype(weights.scalar_type()));
  ExpertBatches mine = batch_by_expert(slot_experts.unsqueeze(1), E);
  int64_t offset = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = mine.counts[static_cast<size_t>(e)];
    if (n == 0) continue;
    at::Tensor rows = mine.order.narrow(0, offset, n);
    at::Tensor s = slots.index_select(0, rows);
    at::Tensor ye = back.index_select(0, rows);
    if (observer) observer->on_expert_output(layer, e, s, ye);
    out.index_add_(0, tokens.index_select(0, rows), ye * weights.index_select(0, s).unsqueeze(1));
    offset += n;
  }
  return out.to(x.scalar_type());
}

}  // namespace smoe
