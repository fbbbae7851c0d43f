#include "smoe/core/process.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <csignal>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "smoe/core/error.h"

extern char** environ;

namespace smoe {

namespace {

std::string tail_of(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  return text.size() > 600 ? "..." + text.substr(text.size() - 600) : text;
}

}  // namespace

void run_program(const std::vector<std::string>& argv, const std::string& cwd, const std::string& log) {
  SMOE_ASSERT(!argv.empty(), "no program to run");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  SMOE_ASSERT(posix_spawn_file_actions_init(&actions) == 0, "posix_spawn_file_actions_init failed");
  // The log is opened after the change of folder: a relative name would be taken from there.
  const std::string log_path = std::filesystem::absolute(log).string();
  int rc = posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  if (rc == 0)
    rc = posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, 1, 2);
  if (rc == 0) rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  // The child starts with no signal blocked (smoe blocks its stop signals for the signal thread).
  posix_spawnattr_t attr;
  sigset_t none;
  sigemptyset(&none);
  SMOE_ASSERT(posix_spawnattr_init(&attr) == 0, "posix_spawnattr_init failed");
  if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
  if (rc == 0) rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  if (rc == 0) rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0)
    throw RuntimeError(str("cannot run ", argv[0], ": ", std::strerror(rc),
                           rc == ENOENT ? " (not found in PATH; Debian: apt install gnuplot-nox)" : ""));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    SMOE_CHECK_SYS(errno == EINTR ? 0 : -1, "waiting for ", argv[0]);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  throw RuntimeError(str(argv[0], " failed (", WIFEXITED(status) ? "exit status " : "signal ",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), "): ", tail_of(log)));
}

}  // namespace smoe
