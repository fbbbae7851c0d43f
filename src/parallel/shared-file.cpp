#include "smoe/parallel/shared-file.h"

#include "smoe/core/error.h"

namespace smoe {

namespace {

// File-access properties for MPI-IO over the communicator's MPI communicator.
h5::Handle mpi_io_access(const Communicator& comm) {
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0) throw RuntimeError("HDF5: H5Pcreate(H5P_FILE_ACCESS) failed");
  h5::Handle access(fapl, H5Pclose);
  if (H5Pset_fapl_mpio(fapl, comm.mpi_comm(), MPI_INFO_NULL) < 0) throw RuntimeError("HDF5: H5Pset_fapl_mpio failed");
  return access;
}

}  // namespace

h5::Handle create_shared_file(const std::string& path, const Communicator& comm) {
  return h5::create_file(path, mpi_io_access(comm).get());
}

h5::Handle open_shared_file(const std::string& path, const Communicator& comm, bool writable) {
  return h5::open_file(path, writable, mpi_io_access(comm).get());
}

}  // namespace smoe
