#include <ATen/ATen.h>

#include <climits>

#include "smoe/core/error.h"
#include "smoe/parallel/comm.h"
#include "smoe/parallel/mpi.h"

namespace smoe {

namespace {

MPI_Datatype mpi_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    default: break;
  }
  SMOE_ASSERT(false, "no MPI reduction for dtype ", c10::toString(t));
}

int as_int(int64_t v, const char* what) {
  SMOE_ASSERT(v >= 0 && v <= INT_MAX, what, " ", v, " does not fit an MPI count");
  return static_cast<int>(v);
}

// A datatype of one row (all dimensions after the first) of `t`, freed on scope exit.
class RowType {
 public:
  explicit RowType(const at::Tensor& t) {
    int64_t bytes = static_cast<int64_t>(t.element_size());
    for (int64_t i = 1; i < t.dim(); ++i) bytes *= t.size(i);
    SMOE_MPI_CHECK(MPI_Type_contiguous(as_int(bytes, "row bytes"), MPI_BYTE, &type_));
    SMOE_MPI_CHECK(MPI_Type_commit(&type_));
  }
  ~RowType() { MPI_Type_free(&type_); }
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    SMOE_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    SMOE_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool is_cuda() const override { return false; }
  MPI_Comm mpi_comm() const override { return comm_; }

  void all_reduce_sum(at::Tensor& t) override { all_reduce(t, MPI_SUM); }
  void all_reduce_max(at::Tensor& t) override { all_reduce(t, MPI_MAX); }

  at::Tensor all_gather(const at::Tensor& t) override {
    check_cpu(t);
    at::Tensor in = t.contiguous();
    std::vector<int64_t> shape = {size_};
    for (int64_t d : in.sizes()) shape.push_back(d);
    at::Tensor out = at::empty(shape, in.options());
    SMOE_MPI_CHECK(MPI_Allgather(in.data_ptr(), as_int(static_cast<int64_t>(in.nbytes()), "bytes"), MPI_BYTE,
                                 out.data_ptr(), as_int(static_cast<int64_t>(in.nbytes()), "bytes"), MPI_BYTE, comm_));
    return out;
  }

  void broadcast(at::Tensor& t, int root) override {
    check_cpu(t);
    SMOE_ASSERT(t.is_contiguous(), "broadcast needs a contiguous tensor");
    SMOE_MPI_CHECK(MPI_Bcast(t.data_ptr(), as_int(static_cast<int64_t>(t.nbytes()), "bytes"), MPI_BYTE, root, comm_));
  }

  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send_counts) override {
    return exchange_counts_over_mpi(comm_, send_counts);
  }

  at::Tensor all_to_all(const at::Tensor& send, const std::vector<int64_t>& send_counts,
                        const std::vector<int64_t>& recv_counts) override {
    check_cpu(send);
    at::Tensor in = send.contiguous();
    at::Tensor out = empty_rows_like(in, recv_counts);
    std::vector<int> sc(static_cast<size_t>(size_)), sd(sc.size()), rc(sc.size()), rd(sc.size());
    int64_t so = 0, ro = 0;
    for (size_t p = 0; p < sc.size(); ++p) {
      sc[p] = as_int(send_counts[p], "send count");
      sd[p] = as_int(so, "send offset");
      rc[p] = as_int(recv_counts[p], "receive count");
      rd[p] = as_int(ro, "receive offset");
      so += send_counts[p];
      ro += recv_counts[p];
    }
    SMOE_ASSERT(so == in.size(0), "send counts sum to ", so, " for ", in.size(0), " rows");
    RowType row(in);
    SMOE_MPI_CHECK(MPI_Alltoallv(in.data_ptr(), sc.data(), sd.data(), row.get(), out.data_ptr(), rc.data(), rd.data(),
                                 row.get(), comm_));
    return out;
  }

  at::Tensor gather_rows(const at::Tensor& rows, int root) override {
    check_cpu(rows);
    at::Tensor in = rows.contiguous();
    int64_t n = in.size(0);
    std::vector<int64_t> counts(static_cast<size_t>(size_));
    SMOE_MPI_CHECK(MPI_Gather(&n, 1, MPI_INT64_T, counts.data(), 1, MPI_INT64_T, root, comm_));
    std::vector<int> rc(counts.size()), rd(counts.size());
    at::Tensor out;
    if (rank_ == root) {
      int64_t total = 0;
      for (size_t p = 0; p < counts.size(); ++p) {
        rc[p] = as_int(counts[p], "row count");
        rd[p] = as_int(total, "row offset");
        total += counts[p];
      }
      std::vector<int64_t> shape = in.sizes().vec();
      shape[0] = total;
      out = at::empty(shape, in.options());
    }
    RowType row(in);
    SMOE_MPI_CHECK(MPI_Gatherv(in.data_ptr(), as_int(n, "row count"), row.get(), out.defined() ? out.data_ptr() : nullptr,
                               rc.data(), rd.data(), row.get(), root, comm_));
    return out;
  }

 private:
  static void check_cpu(const at::Tensor& t) {
    SMOE_ASSERT(t.device().is_cpu(), "the MPI communicator moves CPU tensors; got one on ", t.device());
  }

  void all_reduce(at::Tensor& t, MPI_Op op) {
    check_cpu(t);
    SMOE_ASSERT(t.is_contiguous(), "all-reduce needs a contiguous tensor");
    SMOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), as_int(t.numel(), "elements"), mpi_type(t.scalar_type()),
                                 op, comm_));
  }

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

void Communicator::barrier() { SMOE_MPI_CHECK(MPI_Barrier(mpi_comm())); }

void Communicator::broadcast(std::string& s, int root) {
  long long n = static_cast<long long>(s.size());
  SMOE_MPI_CHECK(MPI_Bcast(&n, 1, MPI_LONG_LONG, root, mpi_comm()));
  s.resize(static_cast<size_t>(n));
  if (n > 0) SMOE_MPI_CHECK(MPI_Bcast(s.data(), as_int(n, "bytes"), MPI_CHAR, root, mpi_comm()));
}

std::vector<int64_t> exchange_counts_over_mpi(MPI_Comm comm, const std::vector<int64_t>& send_counts) {
  int size = 0;
  SMOE_MPI_CHECK(MPI_Comm_size(comm, &size));
  SMOE_ASSERT(static_cast<int>(send_counts.size()) == size, "one count per rank");
  std::vector<int64_t> recv(static_cast<size_t>(size));
  SMOE_MPI_CHECK(MPI_Alltoall(send_counts.data(), 1, MPI_INT64_T, recv.data(), 1, MPI_INT64_T, comm));
  return recv;
}

at::Tensor empty_rows_like(const at::Tensor& send, const std::vector<int64_t>& recv_counts) {
  std::vector<int64_t> shape = send.sizes().vec();
  shape[0] = 0;
  for (int64_t c : recv_counts) shape[0] += c;
  return at::empty(shape, send.options());
}

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm) { return std::make_unique<MpiCommunicator>(comm); }

}  // namespace smoe
