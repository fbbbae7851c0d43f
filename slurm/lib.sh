# Shared by slurm/submit and the sbatch templates: reading the study INI, the
# launcher, and the study's folders. Source it; it sets nothing else.

# ini_get FILE SECTION KEY [DEFAULT]: a value of the study INI (comments after ';').
ini_get() {
  local v
  v=$(awk -F '=' -v s="[$2]" -v k="$3" '
    /^[ \t]*[;#]/ {next}
    /^[ \t]*\[/ {gsub(/[ \t]/, ""); sect = $0; next}
    sect == s {key = $1; gsub(/[ \t]/, "", key); if (key == k) {sub(/^[^=]*=/, ""); sub(/;.*/, ""); gsub(/^[ \t]+|[ \t]+$/, ""); print; exit}}
  ' "$1")
  echo "${v:-${4:-}}"
}

# ini_list FILE SECTION KEY: a comma-separated value as words.
ini_list() { ini_get "$@" | tr ',' ' '; }

# launcher RANKS: sets LAUNCHER to the command that runs on RANKS MPI ranks:
# srun --mpi=pmix inside Slurm, else mpirun.
launcher() {
  if [ -n "${SLURM_JOB_ID:-}" ] && [ "${SMOE_LOCAL:-0}" != 1 ]; then
    LAUNCHER=(srun --mpi=pmix -n "$1")
  else
    LAUNCHER=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
              mpirun --oversubscribe --bind-to none -n "$1")
  fi
}

# launch RANKS COMMAND...: run COMMAND on RANKS ranks.
launch() {
  launcher "$1"
  shift
  "${LAUNCHER[@]}" "$@"
}

# run_resumable RANKS COMMAND...: like launch, but SIGUSR1/SIGTERM sent to this
# batch shell (sbatch --signal=B:USR1@N, or scancel --batch --signal=USR1) are
# passed to the launcher, which passes them to smoe; smoe checkpoints and exits 3;
# the job is then requeued and, rerun with --resume, continues where it stopped.
run_resumable() {
  launcher "$1"
  shift
  "${LAUNCHER[@]}" "$@" &
  local pid=$!
  trap "kill -USR1 $pid 2>/dev/null" USR1
  trap "kill -TERM $pid 2>/dev/null" TERM
  local status=0
  while :; do
    wait "$pid" && status=0 || status=$?
    kill -0 "$pid" 2>/dev/null || break  # wait returned for a trapped signal, not the end
  done
  trap - USR1 TERM
  if [ "$status" = 3 ] && [ -n "${SLURM_JOB_ID:-}" ] && [ "${SMOE_LOCAL:-0}" != 1 ]; then
    echo "smoe: checkpointed; requeueing job ${SLURM_JOB_ID}" >&2
    scontrol requeue "${SLURM_JOB_ID}"
    exit 0
  fi
  return "$status"
}
