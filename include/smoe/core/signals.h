// Stop requests from the batch system: SIGTERM (Slurm's end of time or scancel)
// and SIGUSR1 (sbatch --signal=B:USR1@N) set a flag; long jobs check it between
// steps, checkpoint, and exit with kExitCheckpointed so the job can be requeued.
#pragma once

namespace smoe {

constexpr int kExitCheckpointed = 3;

void install_stop_handlers();
bool stop_requested();

}  // namespace smoe
