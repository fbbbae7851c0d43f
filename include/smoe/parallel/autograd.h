// Collectives that autograd can differentiate, for training with experts sharded
// over ranks: the backward of a variable all-to-all is the all-to-all of the
// gradients with the counts swapped.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace smoe {

class Communicator;

// As Communicator::all_to_all, recorded for backward when `send` requires grad.
at::Tensor all_to_all_differentiable(Communicator& comm, const at::Tensor& send, const std::vector<int64_t>& send_counts,
                                     const std::vector<int64_t>& recv_counts);

}  // namespace smoe
