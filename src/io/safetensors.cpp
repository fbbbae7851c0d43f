#include "smoe/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "smoe/core/error.h"
#include "smoe/io/json.h"

namespace smoe {

namespace {

struct DtypeEntry {
  Dtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeEntry kDtypes[] = {
    {Dtype::F64, "F64", 8},  {Dtype::F32, "F32", 4},         {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2}, {Dtype::I64, "I64", 8},        {Dtype::I32, "I32", 4},
    {Dtype::I16, "I16", 2},  {Dtype::I8, "I8", 1},           {Dtype::U8, "U8", 1},
    {Dtype::BOOL, "BOOL", 1}, {Dtype::F8_E4M3, "F8_E4M3", 1}, {Dtype::F8_E5M2, "F8_E5M2", 1},
};

// A header larger than this is not a tensor index but a broken or hostile file.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

size_t dtype_size(Dtype dtype) {
  for (const auto& e : kDtypes)
    if (e.dtype == dtype) return e.size;
  SMOE_ASSERT(false, "unknown dtype");
}

const char* dtype_name(Dtype dtype) {
  for (const auto& e : kDtypes)
    if (e.dtype == dtype) return e.name;
  SMOE_ASSERT(false, "unknown dtype");
}

bool parse_dtype(const std::string& name, Dtype* dtype) {
  for (const auto& e : kDtypes) {
    if (name == e.name) {
      *dtype = e.dtype;
      return true;
    }
  }
  return false;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const TensorInfo* SafetensorsHeader::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

namespace {

// One tensor's header entry: dtype, shape and data offsets, each checked, and
// its bytes against its dtype and shape; `data_size`: the bytes after the header.
TensorInfo parse_tensor_entry(const std::string& name, const nlohmann::json& v, uint64_t data_size,
                              const std::string& path) {
  SMOE_CHECK_INPUT(v.is_object(), path, ": entry for tensor '", name, "' must be an object");
  TensorInfo t;
  t.name = name;

  auto dt = v.find("dtype");
  SMOE_CHECK_INPUT(dt != v.end() && dt->is_string(), path, ": tensor '", name, "' has no dtype string");
  SMOE_CHECK_INPUT(parse_dtype(dt->get<std::string>(), &t.dtype), path, ": tensor '", name,
                   "' has unknown dtype '", dt->get<std::string>(), "'");

  auto sh = v.find("shape");
  SMOE_CHECK_INPUT(sh != v.end() && sh->is_array(), path, ": tensor '", name, "' has no shape array");
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    const int64_t signed_n = json_to_int(d, path, "tensor '" + name + "' shape entry");
    SMOE_CHECK_INPUT(signed_n >= 0, path, ": tensor '", name, "' has a negative shape entry ", signed_n);
    const uint64_t n = static_cast<uint64_t>(signed_n);
    SMOE_CHECK_INPUT(n == 0 || numel <= std::numeric_limits<uint64_t>::max() / 8 / n, path, ": tensor '", name,
                     "' shape ", json_quote(*sh), " is too large");
    numel *= n;
    t.shape.push_back(static_cast<int64_t>(n));
  }

  auto off = v.find("data_offsets");
  SMOE_CHECK_INPUT(off != v.end() && off->is_array() && off->size() == 2 && (*off)[0].is_number_unsigned() &&
                       (*off)[1].is_number_unsigned(),
                   path, ": tensor '", name, "' needs data_offsets [begin, end] of non-negative integers");
  t.begin = (*off)[0].get<uint64_t>();
  t.end = (*off)[1].get<uint64_t>();
  SMOE_CHECK_INPUT(t.begin <= t.end, path, ": tensor '", name, "' has data_offsets [", t.begin, ", ", t.end,
                   "] with begin after end");
  SMOE_CHECK_INPUT(t.end <= data_size, path, ": tensor '", name, "' data_offsets [", t.begin, ", ", t.end,
                   "] run past the end of the data (", data_size, " bytes): truncated or corrupt");
  const uint64_t expected = numel * dtype_size(t.dtype);
  SMOE_CHECK_INPUT(t.nbytes() == expected, path, ": tensor '", name, "' holds ", t.nbytes(), " bytes but dtype ",
                   dtype_name(t.dtype), " with shape ", json_quote(*sh), " needs ", expected);
  return t;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& path) {
  SMOE_CHECK_INPUT(size >= 8, path, ": not a safetensors file: ", size,
                   " bytes, too short to hold the 8-byte header length");
  const uint64_t header_len = read_le64(bytes);
  SMOE_CHECK_INPUT(header_len <= kMaxHeaderBytes, path, ": header length ", header_len,
                   " bytes exceeds the limit of ", kMaxHeaderBytes, " bytes (corrupt or not a safetensors file)");
  SMOE_CHECK_INPUT(header_len <= size - 8, path, ": header length ", header_len,
                   " runs past the end of the file (", size, " bytes): truncated or corrupt");

  const char* text = reinterpret_cast<const char*>(bytes + 8);
  const nlohmann::json j = parse_json(text, text + header_len, path + ": header");
  SMOE_CHECK_INPUT(j.is_object(), path, ": header must be a JSON object, found ", j.type_name());

  SafetensorsHeader h;
  h.data_start = 8 + header_len;
  const uint64_t data_size = size - h.data_start;

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      SMOE_CHECK_INPUT(v.is_object(), path, ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        SMOE_CHECK_INPUT(m.value().is_string(), path, ": __metadata__ value for '", m.key(),
                         "' must be a string, found ", m.value().type_name());
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    h.tensors.push_back(parse_tensor_entry(name, v, data_size, path));
  }

  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Non-empty ranges must not overlap; an empty tensor holds no bytes and may sit anywhere.
  const TensorInfo* last = nullptr;  // the non-empty tensor reaching furthest so far
  for (const auto& t : h.tensors) {
    if (t.nbytes() == 0) continue;
    SMOE_CHECK_INPUT(!last || t.begin >= last->end, path, ": tensors '", last ? last->name : "", "' [",
                     last ? last->begin : 0, ", ", last ? last->end : 0, ") and '", t.name, "' [", t.begin, ", ",
                     t.end, ") overlap");
    last = &t;
  }
  return h;
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SMOE_CHECK_INPUT(fd >= 0, path, ": cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw InputError(str(path, ": cannot stat: ", errno_text()));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(str(path, ": not a regular file"));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw RuntimeError(str(path, ": mmap failed: ", errno_text()));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

bool MappedFile::pages(uint64_t offset, uint64_t length, uint64_t* begin, uint64_t* end) const {
  if (!data_ || length == 0) return false;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  *begin = offset / page * page;
  *end = std::min<uint64_t>(size_, offset + length);
  return *end > *begin;
}

void MappedFile::release(uint64_t offset, uint64_t length) const {
  uint64_t begin = 0, end = 0;
  if (!pages(offset, length, &begin, &end)) return;
  // Advice only: a failure leaves the pages resident, which is harmless.
  ::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, MADV_DONTNEED);
}

void MappedFile::populate(uint64_t offset, uint64_t length) const {
  uint64_t begin = 0, end = 0;
  if (!pages(offset, length, &begin, &end)) return;
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif
  if (::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, MADV_POPULATE_READ) == 0) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  volatile uint8_t sink = 0;
  for (uint64_t at = begin; at < end; at += page) sink = sink + data_[at];
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(path), header_(parse_safetensors_header(file_.data(), file_.size(), path)) {}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const TensorInfo* t = header_.find(name);
  SMOE_CHECK_INPUT(t != nullptr, path(), ": no tensor named '", name, "'");
  return *t;
}

std::map<std::string, std::string> read_safetensors_index(const std::string& path) {
  nlohmann::json j = read_json_file(path);
  SMOE_CHECK_INPUT(j.is_object(), path, ": index must be a JSON object");
  auto wm = j.find("weight_map");
  SMOE_CHECK_INPUT(wm != j.end() && wm->is_object(), path, ": index has no 'weight_map' object");
  std::map<std::string, std::string> map;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    SMOE_CHECK_INPUT(it.value().is_string(), path, ": weight_map entry for '", it.key(), "' must be a file name");
    std::string shard = it.value().get<std::string>();
    SMOE_CHECK_INPUT(!shard.empty() && shard.find('/') == std::string::npos && shard != "." && shard != "..", path,
                     ": weight_map entry for '", it.key(), "' names '", shard,
                     "', which is not a file name in the checkpoint folder");
    map[it.key()] = shard;
  }
  SMOE_CHECK_INPUT(!map.empty(), path, ": weight_map is empty");
  return map;
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<TensorSpec> specs,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), specs_(std::move(specs)) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& s : specs_) {
    SMOE_ASSERT(!header.contains(s.name), "tensor '", s.name, "' given twice for ", path);
    uint64_t n = dtype_size(s.dtype);
    for (int64_t d : s.shape) {
      SMOE_ASSERT(d >= 0, "negative dimension for '", s.name, "'");
      n *= static_cast<uint64_t>(d);
    }
    header[s.name] = {{"dtype", dtype_name(s.dtype)}, {"shape", s.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  // Pad so that the data buffer starts 8-byte aligned, as the reference writer does.
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');

  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw RuntimeError(str(path_, ": cannot create: ", errno_text()));
  uint8_t len[8];
  uint64_t l = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(l >> (8 * i));
  std::string head(reinterpret_cast<const char*>(len), 8);
  head += text;
  size_t done = 0;
  while (done < head.size()) {
    ssize_t w = ::write(fd_, head.data() + done, head.size() - done);
    SMOE_CHECK_SYS(w, path_, ": write failed");
    done += static_cast<size_t>(w);
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(path_.c_str());
}

void SafetensorsWriter::write(const std::string& name, const void* data, size_t nbytes) {
  SMOE_ASSERT(next_ < specs_.size(), "more tensors written than declared for ", path_);
  const TensorSpec& s = specs_[next_];
  SMOE_ASSERT(s.name == name, "tensor '", name, "' written where '", s.name, "' was declared, for ", path_);
  uint64_t n = dtype_size(s.dtype);
  for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
  SMOE_ASSERT(n == nbytes, "tensor '", name, "' has ", nbytes, " bytes, declared ", n);
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < nbytes) {
    ssize_t w = ::write(fd_, p + done, nbytes - done);
    SMOE_CHECK_SYS(w, path_, ": write failed");
    done += static_cast<size_t>(w);
  }
  ++next_;
}

void SafetensorsWriter::finish() {
  SMOE_ASSERT(next_ == specs_.size(), "only ", next_, " of ", specs_.size(), " tensors written to ", path_);
  SMOE_CHECK_SYS(::close(fd_), path_, ": close failed");
  fd_ = -1;
  finished_ = true;
}

}  // namespace smoe
