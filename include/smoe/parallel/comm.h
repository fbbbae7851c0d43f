// Communicators: the collective operations expert parallelism needs, over MPI
// for CPU tensors and over NCCL for CUDA tensors (bootstrapped over MPI).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace smoe {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The device of the tensors this communicator moves.
  virtual bool is_cuda() const = 0;
  // The MPI communicator underneath (NCCL's: the one it was bootstrapped over):
  // host collectives and HDF5's shared files go over it.
  virtual MPI_Comm mpi_comm() const = 0;

  // Returns once every rank has called it.
  void barrier();
  // In place: every rank ends with root's string (over MPI, whatever the device).
  void broadcast(std::string& s, int root);

  // In place: every rank ends with the element-wise sum over ranks.
  virtual void all_reduce_sum(at::Tensor& t) = 0;
  // In place: every rank ends with the element-wise maximum over ranks.
  virtual void all_reduce_max(at::Tensor& t) = 0;
  // Every rank's `t` (same shape everywhere) stacked along a new first dimension.
  virtual at::Tensor all_gather(const at::Tensor& t) = 0;
  // In place: every rank ends with root's `t`.
  virtual void broadcast(at::Tensor& t, int root) = 0;
  // Variable all-to-all over rows (dimension 0): the first send_counts[0] rows of
  // `send` go to rank 0, the next send_counts[1] to rank 1, and so on. Returns the
  // rows received, by source rank, recv_counts[p] from rank p.
  virtual at::Tensor all_to_all(const at::Tensor& send, const std::vector<int64_t>& send_counts,
                                const std::vector<int64_t>& recv_counts) = 0;
  // Every rank tells every other how many rows it will send it: returns recv_counts.
  virtual std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send_counts) = 0;
  // Rank root receives every rank's rows (dimension 0) concatenated by rank;
  // other ranks receive an undefined tensor.
  virtual at::Tensor gather_rows(const at::Tensor& rows, int root) = 0;
};

// What both backends share. Each rank's row counts for every other rank, exchanged
// over MPI (counts are host integers, even for NCCL).
std::vector<int64_t> exchange_counts_over_mpi(MPI_Comm comm, const std::vector<int64_t>& send_counts);
// An uninitialised tensor like `send` (same trailing shape, dtype, device) with
// sum(recv_counts) rows.
at::Tensor empty_rows_like(const at::Tensor& send, const std::vector<int64_t>& recv_counts);

// MPI over `comm` (not owned): CPU tensors.
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm = MPI_COMM_WORLD);

// NCCL on CUDA device `device`, its unique id broadcast over `bootstrap`. Throws
// RuntimeError where smoe was built without NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm bootstrap, int device);

// Tensors on `device` over `host` (not owned; it must outlive the result), each
// staged through host memory (pinned for CUDA): for ranks that share a GPU.
std::unique_ptr<Communicator> make_staged_communicator(Communicator& host, c10::Device device);

// Whether this build has the NCCL communicator.
bool have_nccl();

}  // namespace smoe
