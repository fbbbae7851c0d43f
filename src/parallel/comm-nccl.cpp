// The NCCL communicator: CUDA tensors, bootstrapped over MPI. Built only where
// CUDA and NCCL are found (SMOE_HAVE_NCCL).
//
// Operations run on the legacy default CUDA stream, which LibTorch's default
// stream is, so they are ordered after the kernels that produced their inputs and
// before the ones that consume their outputs without explicit events.
#include <ATen/ATen.h>

#include "smoe/core/error.h"
#include "smoe/parallel/comm.h"
#include "smoe/parallel/mpi.h"

#ifdef SMOE_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#define SMOE_CUDA_CHECK(call)                                                                             \
  do {                                                                                                    \
    cudaError_t smoe_cuda_rc_ = (call);                                                                   \
    if (smoe_cuda_rc_ != cudaSuccess)                                                                     \
      throw ::smoe::RuntimeError(::smoe::str(#call, " failed: ", cudaGetErrorString(smoe_cuda_rc_), " (", \
                                             __FILE__, ":", __LINE__, ")"));                              \
  } while (0)

#define SMOE_NCCL_CHECK(call)                                                                              \
  do {                                                                                                     \
    ncclResult_t smoe_nccl_rc_ = (call);                                                                   \
    if (smoe_nccl_rc_ != ncclSuccess)                                                                      \
      throw ::smoe::RuntimeError(::smoe::str(#call, " failed: ", ncclGetErrorString(smoe_nccl_rc_), " (",  \
                                             __FILE__, ":", __LINE__, ")"));                               \
  } while (0)

namespace smoe {

namespace {

ncclDataType_t nccl_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    case at::kChar: return ncclInt8;
    default: break;
  }
  SMOE_ASSERT(false, "no NCCL type for dtype ", c10::toString(t));
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(MPI_Comm bootstrap, int device) : bootstrap_(bootstrap), device_(device) {
    SMOE_MPI_CHECK(MPI_Comm_rank(bootstrap_, &rank_));
    SMOE_MPI_CHECK(MPI_Comm_size(bootstrap_, &size_));
    ncclUniqueId id;
    if (rank_ == 0) SMOE_NCCL_CHECK(ncclGetUniqueId(&id));
    SMOE_MPI_CHECK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, bootstrap_));
    SMOE_CUDA_CHECK(cudaSetDevice(device_));
    SMOE_NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool is_cuda() const override { return true; }
  MPI_Comm mpi_comm() const override { return bootstrap_; }

  void all_reduce_sum(at::Tensor& t) override { all_reduce(t, ncclSum); }
  void all_reduce_max(at::Tensor& t) override { all_reduce(t, ncclMax); }

  at::Tensor all_gather(const at::Tensor& t) override {
    check_cuda(t);
    at::Tensor in = t.contiguous();
    std::vector<int64_t> shape = {size_};
    for (int64_t d : in.sizes()) shape.push_back(d);
    at::Tensor out = at::empty(shape, in.options());
    SMOE_NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()),
                                  nccl_type(in.scalar_type()), comm_, stream()));
    return out;
  }

  void broadcast(at::Tensor& t, int root) override {
    check_cuda(t);
    SMOE_ASSERT(t.is_contiguous(), "broadcast needs a contiguous tensor");
    SMOE_NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                  nccl_type(t.scalar_type()), root, comm_, stream()));
  }

  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send_counts) override {
    return exchange_counts_over_mpi(bootstrap_, send_counts);
  }

  at::Tensor all_to_all(const at::Tensor& send, const std::vector<int64_t>& send_counts,
                        const std::vector<int64_t>& recv_counts) override {
    check_cuda(send);
    at::Tensor in = send.contiguous();
    at::Tensor out = empty_rows_like(in, recv_counts);
    int64_t row_elems = 1;
    for (int64_t i = 1; i < in.dim(); ++i) row_elems *= in.size(i);
    const size_t elem = in.element_size();
    const ncclDataType_t type = nccl_type(in.scalar_type());
    char* sp = static_cast<char*>(in.data_ptr());
    char* rp = static_cast<char*>(out.data_ptr());
    SMOE_NCCL_CHECK(ncclGroupStart());
    int64_t so = 0, ro = 0;
    for (int p = 0; p < size_; ++p) {
      const int64_t s = send_counts[static_cast<size_t>(p)], r = recv_counts[static_cast<size_t>(p)];
      if (s > 0)
        SMOE_NCCL_CHECK(ncclSend(sp + so * row_elems * elem, static_cast<size_t>(s * row_elems), type, p, comm_, stream()));
      if (r > 0)
        SMOE_NCCL_CHECK(ncclRecv(rp + ro * row_elems * elem, static_cast<size_t>(r * row_elems), type, p, comm_, stream()));
      so += s;
      ro += r;
    }
    SMOE_NCCL_CHECK(ncclGroupEnd());
    SMOE_ASSERT(so == in.size(0), "send counts sum to ", so, " for ", in.size(0), " rows");
    return out;
  }

  at::Tensor gather_rows(const at::Tensor& rows, int root) override {
    check_cuda(rows);
    int64_t n = rows.size(0);
    std::vector<int64_t> counts(static_cast<size_t>(size_));
    SMOE_MPI_CHECK(MPI_Allgather(&n, 1, MPI_INT64_T, counts.data(), 1, MPI_INT64_T, bootstrap_));
    // Every rank sends its rows to root; root receives counts[p] rows from each p.
    std::vector<int64_t> send(static_cast<size_t>(size_), 0), recv(static_cast<size_t>(size_), 0);
    send[static_cast<size_t>(root)] = n;
    if (rank_ == root) recv = counts;
    at::Tensor out = all_to_all(rows, send, recv);
    return rank_ == root ? out : at::Tensor();
  }

 private:
  static cudaStream_t stream() { return cudaStreamLegacy; }
  void check_cuda(const at::Tensor& t) const {
    SMOE_ASSERT(t.device().is_cuda(), "the NCCL communicator moves CUDA tensors; got one on ", t.device());
  }
  void all_reduce(at::Tensor& t, ncclRedOp_t op) {
    check_cuda(t);
    SMOE_ASSERT(t.is_contiguous(), "all-reduce needs a contiguous tensor");
    SMOE_NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                  nccl_type(t.scalar_type()), op, comm_, stream()));
  }

  MPI_Comm bootstrap_;
  int device_ = 0;
  int rank_ = 0;
  int size_ = 1;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm bootstrap, int device) {
  return std::make_unique<NcclCommunicator>(bootstrap, device);
}

bool have_nccl() { return true; }

}  // namespace smoe

#else  // no NCCL in this build

namespace smoe {

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm, int) {
  throw RuntimeError("this smoe was built without NCCL (CUDA and NCCL were not found at configure time)");
}

bool have_nccl() { return false; }

}  // namespace smoe

#endif
