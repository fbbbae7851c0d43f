#include "smoe/parallel/autograd.h"

#include <torch/autograd.h>

#include "smoe/parallel/comm.h"

namespace smoe {

namespace {

class AllToAll : public torch::autograd::Function<AllToAll> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& send, Communicator* comm,
                            const std::vector<int64_t>& send_counts, const std::vector<int64_t>& recv_counts) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    ctx->saved_data["send_counts"] = send_counts;
    ctx->saved_data["recv_counts"] = recv_counts;
    return comm->all_to_all(send, send_counts, recv_counts);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    const std::vector<int64_t> send_counts = ctx->saved_data["send_counts"].toIntVector();
    const std::vector<int64_t> recv_counts = ctx->saved_data["recv_counts"].toIntVector();
    // Every rank reaches this node in the same order: the graphs have the same shape.
    at::Tensor back = comm->all_to_all(grads[0].contiguous(), recv_counts, send_counts);
    return {back, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor all_to_all_differentiable(Communicator& comm, const at::Tensor& send, const std::vector<int64_t>& send_counts,
                                     const std::vector<int64_t>& recv_counts) {
  if (!send.requires_grad()) return comm.all_to_all(send, send_counts, recv_counts);
  return AllToAll::apply(send, &comm, send_counts, recv_counts);
}

}  // namespace smoe
