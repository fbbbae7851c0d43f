#include "smoe/core/signals.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <thread>

#include "smoe/core/error.h"
#include "smoe/core/output.h"

namespace smoe {

namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_checkpointing{false};

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGUSR1, SIGINT, SIGHUP}) sigaddset(&set, s);
  return set;
}

void take_signals(sigset_t set) {
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (g_checkpointing && !g_stop) {
      g_stop = true;
      continue;
    }
    g_stop = true;
    remove_output_temporaries();
    const char* name = sigabbrev_np(sig);
    const std::string line = str("smoe: stopped by SIG", name ? name : "?", "; nothing was written\n");
    (void)!::write(2, line.data(), line.size());
    ::_exit(kExitCheckpointed);
  }
}

}  // namespace

void start_signal_thread() {
  const sigset_t set = stop_signals();
  const int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (rc != 0) throw RuntimeError(str("pthread_sigmask failed: ", std::strerror(rc)));
  std::thread(take_signals, set).detach();
}

void checkpoint_on_stop() { g_checkpointing = true; }

bool stop_requested() { return g_stop; }

}  // namespace smoe
