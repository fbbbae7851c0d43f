#include "smoe/parallel/mpi.h"

#include <cstdlib>

#include "smoe/core/error.h"
#include "smoe/core/log.h"
#include "smoe/core/output.h"

namespace smoe {

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(len));
}

MpiSession::MpiSession(int* argc, char*** argv) {
  // A process started without mpirun or srun lets Open MPI fork its daemon. (Its
  // "isolated" singletons start a third of a second sooner, but all of them share one
  // session directory, and concurrent ones on a node race on it: array tasks of the
  // Slurm study failed in MPI_Init_thread, "mkdir /tmp/ompi.<host>.<uid>/jf.0/1".)
  int provided = 0;
  SMOE_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  SMOE_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  SMOE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  SMOE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  set_log_rank(rank_);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

NodeRanks node_ranks(MPI_Comm comm) {
  MPI_Comm node;
  SMOE_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  NodeRanks r;
  SMOE_MPI_CHECK(MPI_Comm_rank(node, &r.rank));
  SMOE_MPI_CHECK(MPI_Comm_size(node, &r.size));
  SMOE_MPI_CHECK(MPI_Comm_free(&node));
  return r;
}

void abort_job_if_parallel(int status) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) {
    remove_output_temporaries();  // MPI_Abort kills the other ranks before their cleanup
    MPI_Abort(MPI_COMM_WORLD, status);
  }
}

}  // namespace smoe
