#include "smoe/core/output.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "smoe/core/error.h"

namespace smoe {

namespace fs = std::filesystem;

namespace {

fs::path resolved(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  return ec ? fs::absolute(path).lexically_normal() : p;
}

std::string random_suffix() {
  unsigned int r = 0;
  if (::getrandom(&r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) r = static_cast<unsigned>(::clock());
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", r);
  return buf;
}


void fsync_tree(const std::string& path, bool directory) {
  if (directory)
    for (const auto& e : fs::recursive_directory_iterator(path))
      if (e.is_regular_file() || e.is_directory()) fsync_path(e.path().string(), e.is_directory());
  fsync_path(path, directory);
}

// The temporaries of live outputs, for a stop signal.
std::mutex g_live_mutex;
std::set<std::string> g_live;

void track(const std::string& temp, bool live) {
  std::lock_guard<std::mutex> lock(g_live_mutex);
  if (live) g_live.insert(temp);
  else g_live.erase(temp);
}

bool marker_says(const std::string& dir, const std::string& job) {
  const std::string path = dir + "/" + kOutputMarker;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 4096) return false;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  std::string text(static_cast<size_t>(st.st_size), '\0');
  const size_t n = std::fread(text.data(), 1, text.size(), f);
  std::fclose(f);
  const auto j = nlohmann::json::parse(text.substr(0, n), nullptr, false);
  return j.is_object() && j.contains("job") && j["job"] == job;
}

// Puts `from` at `to`, which must not exist: renameat2(RENAME_NOREPLACE), or where
// the file system lacks it (NFS answers EINVAL) a hard link for a file and a rename
// after a last look for a folder. False when `to` exists.
bool move_new(const std::string& from, const std::string& to, bool directory) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return true;
  if (errno == EEXIST) return false;
  SMOE_CHECK_SYS(errno == EINVAL || errno == ENOSYS ? 0 : -1, "cannot rename ", from, " to ", to);
  if (!directory) {
    if (::link(from.c_str(), to.c_str()) != 0) {
      if (errno == EEXIST) return false;
      SMOE_CHECK_SYS(-1, "cannot link ", from, " to ", to);
    }
    SMOE_CHECK_SYS(::unlink(from.c_str()), "cannot remove ", from);
    return true;
  }
  struct stat st {};
  if (::lstat(to.c_str(), &st) == 0) return false;
  SMOE_CHECK_SYS(::rename(from.c_str(), to.c_str()), "cannot rename ", from, " to ", to);
  return true;
}

// Replaces the folder `to` (an earlier output) by `from`; the earlier one ends up
// at `aside`, for the caller to remove: an atomic swap where the file system can,
// else two renames.
void replace_folder(const std::string& from, const std::string& to, const std::string& aside) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) == 0) {
    SMOE_CHECK_SYS(::rename(from.c_str(), aside.c_str()), "cannot rename ", from, " to ", aside);
    return;
  }
  SMOE_CHECK_SYS(errno == EINVAL || errno == ENOSYS ? 0 : -1, "cannot swap ", from, " and ", to);
  SMOE_CHECK_SYS(::rename(to.c_str(), aside.c_str()), "cannot rename ", to, " to ", aside);
  SMOE_CHECK_SYS(::rename(from.c_str(), to.c_str()), "cannot rename ", from, " to ", to);
}

}  // namespace

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  SMOE_CHECK_SYS(fd, path, ": cannot open to sync");
  const int rc = ::fsync(fd);
  ::close(fd);
  SMOE_CHECK_SYS(rc, path, ": fsync failed");
}

void remove_output_temporaries() {
  std::lock_guard<std::mutex> lock(g_live_mutex);
  for (const auto& t : g_live) {
    std::error_code ec;
    fs::remove_all(t, ec);
  }
  g_live.clear();
}

void track_output_temporary(const std::string& temp) { track(temp, true); }
void untrack_output_temporary(const std::string& temp) { track(temp, false); }

std::string normalise_output_path(const std::string& path, const std::string& option) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const std::string name = fs::path(p).filename().string();
  SMOE_CHECK_INPUT(!p.empty() && p != "/" && name != "." && name != "..", option, " '", clip(path),
                   "' does not name a file or folder");
  return p;
}

bool path_within(const std::string& inner, const std::string& outer) {
  const fs::path a = resolved(inner), b = resolved(outer);
  auto end = std::find_if(b.begin(), b.end(), [](const fs::path& c) { return c.empty(); });
  return std::mismatch(b.begin(), end, a.begin(), a.end()).first == end;
}

AtomicOutput::AtomicOutput(OutputSpec spec) : spec_(std::move(spec)) {
  const std::string& opt = spec_.option;
  path_ = normalise_output_path(spec_.path, opt);
  for (const auto& input : spec_.inputs) {
    SMOE_CHECK_INPUT(!path_within(path_, input), opt, " ", path_, " is or lies inside the input ", input,
                     "; write the output elsewhere");
    SMOE_CHECK_INPUT(!path_within(input, path_), opt, " ", path_, " holds the input ", input,
                     "; write the output elsewhere");
  }
  struct stat st {};
  existed_ = ::lstat(path_.c_str(), &st) == 0;
  if (existed_) {
    device_ = st.st_dev;
    inode_ = st.st_ino;
    SMOE_CHECK_INPUT(!S_ISLNK(st.st_mode), opt, " ", path_, " is a symbolic link; smoe writes only where it can "
                     "replace what it wrote (give the link's target, or another name)");
    SMOE_CHECK_INPUT(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode), opt, " ", path_,
                     " is a special file (device, FIFO or socket), not a place for an output");
    SMOE_CHECK_INPUT(is_own(st) || spec_.overwrite, opt, " ", path_, " exists and is not an earlier output of smoe ",
                     spec_.job, "; remove it, choose another name, or give --overwrite to replace it");
  } else {
    SMOE_CHECK_INPUT(errno == ENOENT, opt, " ", path_, ": cannot create: ", errno_text());
  }

  const fs::path parent = fs::path(path_).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  SMOE_CHECK_INPUT(!ec, opt, " ", path_, ": cannot create the folder ", parent.string(), ": ", ec.message());
  temp_ = str(path_, ".tmp.", ::getpid(), ".", random_suffix());
  if (spec_.directory) {
    SMOE_CHECK_INPUT(::mkdir(temp_.c_str(), 0755) == 0, opt, " ", path_, ": cannot create ", temp_, ": ",
                     errno_text());
    track(temp_, true);
    const std::string marker = str("{\"job\": \"", spec_.job, "\", \"software\": \"smoe ", SMOE_VERSION, "\"}\n");
    std::FILE* f = std::fopen((temp_ + "/" + kOutputMarker).c_str(), "wb");
    const bool ok = f && std::fwrite(marker.data(), 1, marker.size(), f) == marker.size();
    if (f) std::fclose(f);
    if (!ok) {
      fs::remove_all(temp_, ec);
      throw InputError(str(opt, " ", path_, ": cannot write into ", temp_, ": ", errno_text()));
    }
  } else {
    const int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    SMOE_CHECK_INPUT(fd >= 0, opt, " ", path_, ": cannot create ", temp_, ": ", errno_text());
    ::close(fd);
    track(temp_, true);
  }
}

bool AtomicOutput::is_own(const struct stat& st) const {
  return spec_.directory ? S_ISDIR(st.st_mode) && marker_says(path_, spec_.job)
                         : S_ISREG(st.st_mode) && spec_.is_own && spec_.is_own(path_);
}

AtomicOutput::~AtomicOutput() {
  if (committed_ || kept_) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);
  track(temp_, false);
}

void AtomicOutput::commit() {
  SMOE_ASSERT(!committed_ && !kept_, "output ", path_, " committed twice");
  track(temp_, false);  // from here a stop signal leaves the commit to finish or not
  fsync_tree(temp_, spec_.directory);
  // The work is done: should the rename fail, its result stays in the temporary.
  kept_ = true;
  struct stat st {};
  const bool exists = ::lstat(path_.c_str(), &st) == 0;
  const std::string left = str("; the result is left in ", temp_);
  if (!exists) {
    if (!move_new(temp_, path_, spec_.directory))
      throw InputError(str(path_, ": appeared while the job ran", left));
  } else {
    // What the constructor saw is replaced; what appeared or changed since only when
    // it is an output of this same job (another run of it, say).
    const bool same = existed_ && st.st_dev == device_ && st.st_ino == inode_;
    SMOE_CHECK_INPUT(same || is_own(st), path_, existed_ ? ": replaced by something else" : ": appeared",
                     " while the job ran, and is not an output of smoe ", spec_.job, left);
    if (spec_.directory || S_ISDIR(st.st_mode)) {
      const std::string aside = str(path_, ".old.", ::getpid(), ".", random_suffix());
      replace_folder(temp_, path_, aside);
      std::error_code ec;
      fs::remove_all(aside, ec);  // the earlier output, checked above
    } else {
      SMOE_CHECK_SYS(::rename(temp_.c_str(), path_.c_str()), "cannot rename ", temp_, " to ", path_);
    }
  }
  committed_ = true;
  const fs::path parent = fs::path(path_).parent_path();
  fsync_path(parent.empty() ? "." : parent.string(), true);
}

}  // namespace smoe
