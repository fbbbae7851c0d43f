// Device tensors over the host (MPI) communicator, each staged through host
// memory, pinned for CUDA: for ranks that share a GPU, which NCCL refuses (one
// GPU running a several-rank expert-parallel job).
#include <ATen/ATen.h>

#include <functional>

#include "smoe/parallel/comm.h"

namespace smoe {

namespace {

class StagedCommunicator : public Communicator {
 public:
  StagedCommunicator(Communicator& host, at::Device device) : host_(host), device_(device) {}

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  bool is_cuda() const override { return device_.is_cuda(); }
  MPI_Comm mpi_comm() const override { return host_.mpi_comm(); }

  void all_reduce_sum(at::Tensor& t) override {
    in_place(t, [&](at::Tensor& h) { host_.all_reduce_sum(h); });
  }
  void all_reduce_max(at::Tensor& t) override {
    in_place(t, [&](at::Tensor& h) { host_.all_reduce_max(h); });
  }
  void broadcast(at::Tensor& t, int root) override {
    in_place(t, [&](at::Tensor& h) { host_.broadcast(h, root); });
  }
  at::Tensor all_gather(const at::Tensor& t) override { return host_.all_gather(staged(t)).to(device_); }
  at::Tensor all_to_all(const at::Tensor& send, const std::vector<int64_t>& send_counts,
                        const std::vector<int64_t>& recv_counts) override {
    return host_.all_to_all(staged(send), send_counts, recv_counts).to(device_);
  }
  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send_counts) override {
    return host_.exchange_counts(send_counts);
  }
  at::Tensor gather_rows(const at::Tensor& rows, int root) override {
    at::Tensor g = host_.gather_rows(staged(rows), root);
    return g.defined() ? g.to(device_) : g;
  }

 private:
  // A contiguous host copy of t, once the device has computed it.
  static at::Tensor staged(const at::Tensor& t) {
    at::Tensor h = at::empty(t.sizes(), t.options().device(at::kCPU).pinned_memory(t.is_cuda()));
    h.copy_(t);
    return h;
  }
  void in_place(at::Tensor& t, const std::function<void(at::Tensor&)>& op) {
    at::Tensor h = staged(t);
    op(h);
    t.copy_(h);
  }

  Communicator& host_;
  at::Device device_;
};

}  // namespace

std::unique_ptr<Communicator> make_staged_communicator(Communicator& host, at::Device device) {
  return std::make_unique<StagedCommunicator>(host, device);
}

}  // namespace smoe
