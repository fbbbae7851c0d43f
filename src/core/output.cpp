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

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  SMOE_CHECK_SYS(fd, path, ": cannot open to sync");
  const int rc = ::fsync(fd);
  ::close(fd);
  SMOE_CHECK_SYS(rc, path, ": fsync failed");
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

// Moves `from` to `to`: atomically swapped with what `to` holds when `swap`,
// refused when `to` exists otherwise.
void move(const std::string& from, const std::string& to, bool swap) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), swap ? RENAME_EXCHANGE : RENAME_NOREPLACE) == 0)
    return;
  if (errno == EEXIST)
    throw InputError(str(to, ": appeared while the job ran (another job writing the same output?); the result is left in ",
                         from));
  throw RuntimeError(str("cannot rename ", from, " to ", to, ": ", errno_text()));
}

}  // namespace

void remove_output_temporaries() {
  std::lock_guard<std::mutex> lock(g_live_mutex);
  for (const auto& t : g_live) {
    std::error_code ec;
    fs::remove_all(t, ec);
  }
  g_live.clear();
}

void track_output_temporary(const std::string& temp) { track(temp, true); }

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

Output::Output(OutputSpec spec) : spec_(std::move(spec)) {
  const std::string& opt = spec_.option;
  path_ = normalise_output_path(spec_.path, opt);
  for (const auto& input : spec_.inputs) {
    SMOE_CHECK_INPUT(!path_within(path_, input), opt, " ", path_, " is or lies inside the input ", input,
                     "; write the output elsewhere");
    SMOE_CHECK_INPUT(!path_within(input, path_), opt, " ", path_, " holds the input ", input,
                     "; write the output elsewhere");
  }
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    SMOE_CHECK_INPUT(!S_ISLNK(st.st_mode), opt, " ", path_, " is a symbolic link; smoe writes only where it can "
                     "replace what it wrote (give the link's target, or another name)");
    SMOE_CHECK_INPUT(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode), opt, " ", path_,
                     " is a special file (device, FIFO or socket), not a place for an output");
    const bool own = spec_.directory ? S_ISDIR(st.st_mode) && marker_says(path_, spec_.job)
                                     : S_ISREG(st.st_mode) && spec_.is_own && spec_.is_own(path_);
    SMOE_CHECK_INPUT(own || spec_.overwrite, opt, " ", path_, " exists and is not an earlier output of smoe ",
                     spec_.job, "; remove it, choose another name, or give --overwrite to replace it");
  } else {
    SMOE_CHECK_INPUT(errno == ENOENT, opt, " ", path_, ": cannot create: ", errno_text());
  }

  const fs::path parent = fs::path(path_).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  SMOE_CHECK_INPUT(!ec, opt, " ", path_, ": cannot create the folder ", parent.string(), ": ", ec.message());
  temp_ = str(path_, ".tmp.", ::getpid(), ".", random_suffix());
  track(temp_, true);
  if (spec_.directory) {
    SMOE_CHECK_INPUT(::mkdir(temp_.c_str(), 0755) == 0, opt, " ", path_, ": cannot create ", temp_, ": ",
                     errno_text());
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
  }
}

Output::~Output() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);
  track(temp_, false);
}

void Output::commit() {
  SMOE_ASSERT(!committed_, "output ", path_, " committed twice");
  track(temp_, false);  // from here a stop signal leaves the commit to finish or not
  fsync_tree(temp_, spec_.directory);
  struct stat st {};
  const bool exists = ::lstat(path_.c_str(), &st) == 0;
  if (exists && (spec_.directory || S_ISDIR(st.st_mode))) {
    move(temp_, path_, true);  // the earlier output now lies under temp_
    committed_ = true;
    std::error_code ec;
    fs::remove_all(temp_, ec);
  } else if (exists) {
    if (::rename(temp_.c_str(), path_.c_str()) != 0)
      throw RuntimeError(str("cannot rename ", temp_, " to ", path_, ": ", errno_text()));
    committed_ = true;
  } else {
    move(temp_, path_, false);
    committed_ = true;
  }
  const fs::path parent = fs::path(path_).parent_path();
  fsync_path(parent.empty() ? "." : parent.string(), true);
}

}  // namespace smoe
