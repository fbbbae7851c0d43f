// HDF5 files that every rank of a communicator creates or opens together
// (parallel HDF5, MPI-IO driver); the collective rules of io/hdf5.h apply.
#pragma once

#include <string>

#include "smoe/io/hdf5.h"
#include "smoe/parallel/comm.h"

namespace smoe {

// Every rank of `comm` calls these together.
h5::Handle create_shared_file(const std::string& path, const Communicator& comm);
h5::Handle open_shared_file(const std::string& path, const Communicator& comm, bool writable = false);

}  // namespace smoe
