#include "smoe/io/hdf5.h"

#include <ATen/ATen.h>

#include "smoe/core/error.h"

namespace smoe::h5 {

namespace {

// HDF5 calls return a negative value on failure.
template <typename T>
T checked(T rc, const char* call, const char* file, int line) {
  if (rc < 0) throw RuntimeError(str("HDF5: ", call, " failed (", file, ":", line, ")"));
  return rc;
}
#define SMOE_H5(call) checked((call), #call, __FILE__, __LINE__)

struct Quiet {
  // Our own messages say what failed; HDF5's stack dumps would only repeat it.
  Quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};
const Quiet quiet;

hid_t h5_type(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return H5T_NATIVE_DOUBLE;
    case at::kFloat: return H5T_NATIVE_FLOAT;
    case at::kLong: return H5T_NATIVE_INT64;
    case at::kInt: return H5T_NATIVE_INT32;
    case at::kByte: return H5T_NATIVE_UINT8;
    default: break;
  }
  SMOE_ASSERT(false, "no HDF5 type for dtype ", c10::toString(t));
}

at::ScalarType scalar_type(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT) return size == 8 ? at::kDouble : at::kFloat;
  if (cls == H5T_INTEGER) {
    if (size == 8) return at::kLong;
    if (size == 4) return at::kInt;
    if (size == 1) return at::kByte;
  }
  return at::kFloat;  // converted by HDF5 on read
}

// Collective transfers for a file shared over MPI-IO; the default for one opened alone.
Handle transfer_for(hid_t obj) {
  Handle dxpl(SMOE_H5(H5Pcreate(H5P_DATASET_XFER)), H5Pclose);
  Handle file(SMOE_H5(H5Iget_file_id(obj)), H5Fclose);
  Handle access(SMOE_H5(H5Fget_access_plist(file.get())), H5Pclose);
  if (SMOE_H5(H5Pget_driver(access.get())) == H5FD_MPIO) SMOE_H5(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE));
  return dxpl;
}

Handle string_type() {
  Handle t(SMOE_H5(H5Tcopy(H5T_C_S1)), H5Tclose);
  SMOE_H5(H5Tset_size(t.get(), H5T_VARIABLE));
  SMOE_H5(H5Tset_cset(t.get(), H5T_CSET_UTF8));
  return t;
}

Handle open_attr(hid_t obj, const std::string& name, const std::string& file) {
  SMOE_CHECK_INPUT(H5Aexists(obj, name.c_str()) > 0, file, ": attribute '", name, "' is missing");
  return Handle(SMOE_H5(H5Aopen(obj, name.c_str(), H5P_DEFAULT)), H5Aclose);
}

std::vector<hsize_t> extent(hid_t space) {
  const int rank = SMOE_H5(H5Sget_simple_extent_ndims(space));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  SMOE_H5(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
  return dims;
}

Handle open_dataset(hid_t parent, const std::string& name, const std::string& file) {
  SMOE_CHECK_INPUT(exists(parent, name), file, ": dataset '", name, "' is missing");
  return Handle(SMOE_H5(H5Dopen2(parent, name.c_str(), H5P_DEFAULT)), H5Dclose);
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && close_) close_(id_);
  id_ = -1;
}

Handle create_file(const std::string& path, hid_t access) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access);
  if (f < 0) throw RuntimeError(str(path, ": cannot create HDF5 file"));
  return Handle(f, H5Fclose);
}

Handle open_file(const std::string& path, bool writable, hid_t access) {
  SMOE_CHECK_INPUT(H5Fis_hdf5(path.c_str()) > 0, path, ": missing or not an HDF5 file");
  hid_t f = H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, access);
  SMOE_CHECK_INPUT(f >= 0, path, ": cannot open HDF5 file");
  return Handle(f, H5Fclose);
}

std::string file_format(const std::string& path) {
  if (H5Fis_hdf5(path.c_str()) <= 0) return "";
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file.get() < 0 || H5Aexists(file.get(), "format") <= 0) return "";
  try {
    return read_attr_string(file.get(), "format", path);
  } catch (const Error&) {
    return "";
  }
}

Handle create_group(hid_t parent, const std::string& name) {
  return Handle(SMOE_H5(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)), H5Gclose);
}

Handle open_group(hid_t parent, const std::string& name, const std::string& file) {
  SMOE_CHECK_INPUT(exists(parent, name), file, ": group '", name, "' is missing");
  return Handle(SMOE_H5(H5Gopen2(parent, name.c_str(), H5P_DEFAULT)), H5Gclose);
}

std::vector<std::string> child_names(hid_t group, const std::string& file) {
  H5G_info_t info{};
  SMOE_CHECK_INPUT(H5Gget_info(group, &info) >= 0, file, ": cannot list the members of a group");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    SMOE_CHECK_INPUT(n >= 0 && n < 4096, file, ": cannot read the name of group member ", i);
    std::string name(static_cast<size_t>(n) + 1, '\0');
    SMOE_CHECK_INPUT(H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(),
                                        H5P_DEFAULT) == n,
                     file, ": cannot read the name of group member ", i);
    name.resize(static_cast<size_t>(n));
    names.push_back(std::move(name));
  }
  return names;
}

bool exists(hid_t parent, const std::string& name) { return H5Lexists(parent, name.c_str(), H5P_DEFAULT) > 0; }

void write_attr(hid_t obj, const std::string& name, int64_t value) {
  Handle space(SMOE_H5(H5Screate(H5S_SCALAR)), H5Sclose);
  Handle a(SMOE_H5(H5Acreate2(obj, name.c_str(), H5T_NATIVE_INT64, space.get(), H5P_DEFAULT, H5P_DEFAULT)), H5Aclose);
  SMOE_H5(H5Awrite(a.get(), H5T_NATIVE_INT64, &value));
}

void write_attr(hid_t obj, const std::string& name, double value) {
  Handle space(SMOE_H5(H5Screate(H5S_SCALAR)), H5Sclose);
  Handle a(SMOE_H5(H5Acreate2(obj, name.c_str(), H5T_NATIVE_DOUBLE, space.get(), H5P_DEFAULT, H5P_DEFAULT)),
           H5Aclose);
  SMOE_H5(H5Awrite(a.get(), H5T_NATIVE_DOUBLE, &value));
}

void write_attr(hid_t obj, const std::string& name, const std::string& value) {
  Handle type = string_type();
  Handle space(SMOE_H5(H5Screate(H5S_SCALAR)), H5Sclose);
  Handle a(SMOE_H5(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT)), H5Aclose);
  const char* p = value.c_str();
  SMOE_H5(H5Awrite(a.get(), type.get(), &p));
}

bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

int64_t read_attr_int(hid_t obj, const std::string& name, const std::string& file) {
  Handle a = open_attr(obj, name, file);
  Handle type(SMOE_H5(H5Aget_type(a.get())), H5Tclose);
  SMOE_CHECK_INPUT(H5Tget_class(type.get()) == H5T_INTEGER, file, ": attribute '", name, "' is not an integer");
  int64_t v = 0;
  SMOE_H5(H5Aread(a.get(), H5T_NATIVE_INT64, &v));
  return v;
}

double read_attr_double(hid_t obj, const std::string& name, const std::string& file) {
  Handle a = open_attr(obj, name, file);
  Handle type(SMOE_H5(H5Aget_type(a.get())), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  SMOE_CHECK_INPUT(cls == H5T_FLOAT || cls == H5T_INTEGER, file, ": attribute '", name, "' is not a number");
  double v = 0;
  SMOE_H5(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v));
  return v;
}

std::string read_attr_string(hid_t obj, const std::string& name, const std::string& file) {
  Handle a = open_attr(obj, name, file);
  Handle type(SMOE_H5(H5Aget_type(a.get())), H5Tclose);
  SMOE_CHECK_INPUT(H5Tget_class(type.get()) == H5T_STRING, file, ": attribute '", name, "' is not a string");
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem = string_type();
    char* p = nullptr;
    SMOE_H5(H5Aread(a.get(), mem.get(), &p));
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  std::string s(H5Tget_size(type.get()), '\0');
  SMOE_H5(H5Aread(a.get(), type.get(), s.data()));
  return s.substr(0, s.find('\0'));
}

void write_tensor(hid_t parent, const std::string& name, const at::Tensor& t, int writer, int rank) {
  at::Tensor c = t.cpu().contiguous();
  std::vector<hsize_t> dims(c.sizes().begin(), c.sizes().end());
  Handle space(SMOE_H5(dims.empty() ? H5Screate(H5S_SCALAR)
                                    : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)),
               H5Sclose);
  Handle d(SMOE_H5(H5Dcreate2(parent, name.c_str(), h5_type(c.scalar_type()), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT)),
           H5Dclose);
  Handle mem(SMOE_H5(H5Scopy(space.get())), H5Sclose);
  Handle file(SMOE_H5(H5Scopy(space.get())), H5Sclose);
  if (rank != writer) {
    SMOE_H5(H5Sselect_none(mem.get()));
    SMOE_H5(H5Sselect_none(file.get()));
  }
  Handle dxpl = transfer_for(d.get());
  SMOE_H5(H5Dwrite(d.get(), h5_type(c.scalar_type()), mem.get(), file.get(), dxpl.get(), c.data_ptr()));
}

void write_rank_slabs(hid_t parent, const std::string& name, const at::Tensor& t, int rank, int ranks) {
  at::Tensor c = t.cpu().contiguous();
  std::vector<hsize_t> dims = {static_cast<hsize_t>(ranks)};
  for (int64_t s : c.sizes()) dims.push_back(static_cast<hsize_t>(s));
  Handle space(SMOE_H5(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)), H5Sclose);
  Handle d(SMOE_H5(H5Dcreate2(parent, name.c_str(), h5_type(c.scalar_type()), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT)),
           H5Dclose);
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = static_cast<hsize_t>(rank);
  count[0] = 1;
  Handle file(SMOE_H5(H5Scopy(space.get())), H5Sclose);
  SMOE_H5(H5Sselect_hyperslab(file.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr));
  Handle mem(SMOE_H5(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr)), H5Sclose);
  Handle dxpl = transfer_for(d.get());
  SMOE_H5(H5Dwrite(d.get(), h5_type(c.scalar_type()), mem.get(), file.get(), dxpl.get(), c.data_ptr()));
}

// The dataset's element type as a tensor dtype; InputError for a type smoe never
// writes (strings, compounds) or a dataset too large to be a statistic (a
// corrupt or hostile extent would otherwise ask for terabytes).
at::ScalarType checked_dtype(hid_t type, const std::vector<hsize_t>& dims, const std::string& name,
                             const std::string& file) {
  const H5T_class_t cls = H5Tget_class(type);
  SMOE_CHECK_INPUT(cls == H5T_INTEGER || cls == H5T_FLOAT, file, ": dataset '", name,
                   "' must hold numbers (integers or floats), found another type");
  uint64_t elements = 1;
  for (hsize_t n : dims) {
    SMOE_CHECK_INPUT(n == 0 || elements <= kMaxDatasetElements / n, file, ": dataset '", name, "' has ",
                     dims.size(), " dimensions totalling more than ", kMaxDatasetElements,
                     " elements, beyond what smoe reads");
    elements *= n;
  }
  return scalar_type(type);
}

at::Tensor read_tensor(hid_t parent, const std::string& name, const std::string& file) {
  Handle d = open_dataset(parent, name, file);
  Handle space(SMOE_H5(H5Dget_space(d.get())), H5Sclose);
  Handle type(SMOE_H5(H5Dget_type(d.get())), H5Tclose);
  const std::vector<hsize_t> dims = extent(space.get());
  checked_dtype(type.get(), dims, name, file);
  std::vector<int64_t> shape(dims.begin(), dims.end());
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(scalar_type(type.get())));
  if (t.numel() > 0)
    SMOE_H5(H5Dread(d.get(), h5_type(t.scalar_type()), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()));
  return t;
}

at::Tensor read_rank_slab(hid_t parent, const std::string& name, int slab, const std::string& file) {
  Handle d = open_dataset(parent, name, file);
  Handle space(SMOE_H5(H5Dget_space(d.get())), H5Sclose);
  Handle type(SMOE_H5(H5Dget_type(d.get())), H5Tclose);
  const std::vector<hsize_t> dims = extent(space.get());
  const int rank = static_cast<int>(dims.size());
  SMOE_CHECK_INPUT(rank >= 1 && static_cast<hsize_t>(slab) < dims[0], file, ": dataset '", name, "' has no slab ",
                   slab);
  checked_dtype(type.get(), dims, name, file);
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = static_cast<hsize_t>(slab);
  count[0] = 1;
  SMOE_H5(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr));
  Handle mem(SMOE_H5(H5Screate_simple(rank, count.data(), nullptr)), H5Sclose);
  std::vector<int64_t> shape(dims.begin() + 1, dims.end());
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(scalar_type(type.get())));
  SMOE_H5(H5Dread(d.get(), h5_type(t.scalar_type()), mem.get(), space.get(), H5P_DEFAULT, t.data_ptr()));
  return t;
}

}  // namespace smoe::h5
