#include "smoe/core/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smoe/core/error.h"

namespace smoe {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

}  // namespace

void check_input_file(const std::string& path, const std::string& what) {
  struct stat st {};
  SMOE_CHECK_INPUT(!path.empty(), "the ", what, " file name is empty");
  SMOE_CHECK_INPUT(::stat(path.c_str(), &st) == 0, path, ": cannot open ", what, ": ", errno_text());
  SMOE_CHECK_INPUT(S_ISREG(st.st_mode), path, ": the ", what, " must be a regular file, found ", kind_of(st.st_mode));
}

void check_input_dir(const std::string& path, const std::string& what) {
  struct stat st {};
  SMOE_CHECK_INPUT(!path.empty(), "the ", what, " folder name is empty");
  SMOE_CHECK_INPUT(::stat(path.c_str(), &st) == 0, path, ": cannot open ", what, ": ", errno_text());
  SMOE_CHECK_INPUT(S_ISDIR(st.st_mode), path, ": the ", what, " must be a folder, found ",
                   S_ISREG(st.st_mode) ? "a file" : kind_of(st.st_mode));
}

std::string read_file(const std::string& path, const std::string& what, uint64_t limit) {
  check_input_file(path, what);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SMOE_CHECK_INPUT(fd >= 0, path, ": cannot open ", what, ": ", errno_text());
  std::string bytes;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || bytes.size() + static_cast<uint64_t>(n) > limit) {
      const std::string why = n < 0 ? errno_text() : "";
      ::close(fd);
      SMOE_CHECK_INPUT(n >= 0, path, ": read error: ", why);
      SMOE_CHECK_INPUT(n == 0, path, ": the ", what, " is larger than the limit of ", limit, " bytes");
      return bytes;
    }
    bytes.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace smoe
