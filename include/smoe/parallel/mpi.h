// MPI set-up and checked calls. Every MPI call is checked at its call site; a
// failure carries file:line and MPI's own text.
#pragma once

#include <mpi.h>

#include <string>

#include "smoe/core/error.h"

namespace smoe {

std::string mpi_error_text(int code);

#define SMOE_MPI_CHECK(call)                                                                        \
  do {                                                                                              \
    int smoe_mpi_rc_ = (call);                                                                      \
    if (smoe_mpi_rc_ != MPI_SUCCESS)                                                                \
      throw ::smoe::RuntimeError(::smoe::str(#call, " failed: ", ::smoe::mpi_error_text(smoe_mpi_rc_), \
                                             " (", __FILE__, ":", __LINE__, ")"));                  \
  } while (0)

// Initialises MPI for the process (MPI_THREAD_FUNNELED) and finalises it on
// destruction; works alone, under mpirun and under srun --mpi=pmix. Errors in MPI
// calls come back as return codes (MPI_ERRORS_RETURN) so they become exceptions.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  int rank_ = 0;
  int size_ = 1;
};

// This process's rank among the ranks of `comm` on its node, and their number
// (MPI's shared-memory split, whatever the launcher). It picks the GPU of a rank.
struct NodeRanks {
  int rank = 0, size = 1;
};
NodeRanks node_ranks(MPI_Comm comm);

// Ends every rank of the job with `status` (MPI_Abort) when MPI runs with more than
// one rank; otherwise returns. For a failure on one rank: its peers may be waiting
// in a collective and would otherwise hang.
void abort_job_if_parallel(int status);


}  // namespace smoe
