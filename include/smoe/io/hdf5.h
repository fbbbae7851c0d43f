// A thin RAII layer over the HDF5 C API, for files written by one process or by
// all MPI ranks together (parallel HDF5, MPI-IO driver: parallel/shared-file.h)
// and read by any reader (h5py).
//
// Collective rules (parallel HDF5): every rank creates the same groups, datasets
// and attributes with the same values; dataset writes are collective, each rank
// selecting its own part (possibly nothing).
#pragma once

#include <ATen/core/Tensor.h>
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace smoe::h5 {

// Owns an HDF5 identifier and closes it with the right H5*close.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  void reset();

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Creates (truncating) or opens a file with file-access properties `access`
// (H5P_DEFAULT: this process alone).
Handle create_file(const std::string& path, hid_t access = H5P_DEFAULT);
Handle open_file(const std::string& path, bool writable = false, hid_t access = H5P_DEFAULT);
// The 'format' attribute of an HDF5 file ("smoe-stats", "smoe-plan"); "" for a
// file that is not HDF5 or has none. Recognises smoe's earlier outputs.
std::string file_format(const std::string& path);
Handle create_group(hid_t parent, const std::string& name);
// InputError naming `file` when the group is missing.
Handle open_group(hid_t parent, const std::string& name, const std::string& file);
bool exists(hid_t parent, const std::string& name);
// The names of a group's members, in index order; InputError naming the file when
// they cannot be listed.
std::vector<std::string> child_names(hid_t group, const std::string& file);

void write_attr(hid_t obj, const std::string& name, int64_t value);
void write_attr(hid_t obj, const std::string& name, double value);
void write_attr(hid_t obj, const std::string& name, const std::string& value);
bool has_attr(hid_t obj, const std::string& name);
// InputError naming `file` when absent or of another type.
int64_t read_attr_int(hid_t obj, const std::string& name, const std::string& file);
double read_attr_double(hid_t obj, const std::string& name, const std::string& file);
std::string read_attr_string(hid_t obj, const std::string& name, const std::string& file);

// A dataset holding `t` (CPU; float64, float32, int64, int32 or uint8), written
// by `writer` alone (others pass a tensor of the same shape and dtype, unread).
void write_tensor(hid_t parent, const std::string& name, const at::Tensor& t, int writer, int rank);
// A dataset [ranks, ...t.shape] where each rank writes its own slab `t`.
void write_rank_slabs(hid_t parent, const std::string& name, const at::Tensor& t, int rank, int ranks);
// The most elements smoe reads from one dataset (2^31: 16 GiB of float64).
constexpr uint64_t kMaxDatasetElements = 1ull << 31;
// Reads a whole dataset; InputError naming `file` when missing, not numeric, or too large.
at::Tensor read_tensor(hid_t parent, const std::string& name, const std::string& file);
// Reads slab `rank` of a dataset written by write_rank_slabs.
at::Tensor read_rank_slab(hid_t parent, const std::string& name, int rank, const std::string& file);

}  // namespace smoe::h5
