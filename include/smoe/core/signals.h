// Stop requests from the batch system: SIGTERM (Slurm's end of time or scancel),
// SIGUSR1 (sbatch --signal=B:USR1@N), SIGINT and SIGHUP.
//
// They are taken by one thread (start_signal_thread, first thing in main), never
// by a handler interrupting the work. A job that checkpoints (collect, train)
// calls checkpoint_on_stop(): a stop signal then sets a flag that its loop checks
// between steps; it checkpoints and exits with kExitCheckpointed. In every other
// job, and at a second signal, the thread removes the temporaries of the job's
// outputs and ends the process with kExitCheckpointed at once, so a stop signal
// always ends a job and never leaves a partial output behind.
#pragma once

namespace smoe {

constexpr int kExitCheckpointed = 3;

// Blocks the stop signals in every thread (call before any other thread starts)
// and starts the thread that takes them.
void start_signal_thread();
// This job checkpoints on a stop signal and checks stop_requested() between steps.
void checkpoint_on_stop();
bool stop_requested();

}  // namespace smoe
