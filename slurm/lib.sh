# Shared by slurm/submit, slurm/nightly and the sbatch templates: reading the
# study INI (values are data: checked against a pattern before any use, never
# evaluated), the launcher, and the study's folders. Source it; it defines
# functions and sets nothing else.

# ini_value FILE SECTION KEY [DEFAULT]: sets INI_VALUE to a value of the study INI
# (comments after ';'), as written, or DEFAULT when it is missing or empty. A UTF-8
# byte order mark and CRLF or CR line ends are accepted. Plain bash: nothing of the
# file is evaluated, and no process is started (the sbatch templates read a dozen values).
ini_value() {
  local content="" line trimmed sect="" key v=""
  IFS= read -r -d '' content < "$1" || true
  content=${content#$'\357\273\277'}
  content=${content//$'\r\n'/$'\n'}
  content=${content//$'\r'/$'\n'}
  while IFS= read -r line; do
    trimmed=${line#"${line%%[![:blank:]]*}"}
    case "$trimmed" in
      [\;#]*) continue ;;
      \[*) line=${line%%[\;#]*}; sect=${line//[[:blank:]]/}; continue ;;
    esac
    [ "$sect" = "[$2]" ] && [[ $line == *=* ]] || continue
    key=${line%%=*}
    [ "${key//[[:blank:]]/}" = "$3" ] || continue
    v=${line#*=}
    v=${v%%;*}
    v=${v#"${v%%[![:blank:]]*}"}
    v=${v%"${v##*[![:blank:]]}"}
    break
  done <<< "$content"
  INI_VALUE=${v:-${4:-}}
}

# ini_get FILE SECTION KEY [DEFAULT]: the same value, printed.
ini_get() {
  ini_value "$@"
  printf '%s\n' "$INI_VALUE"
}

# ini_list FILE SECTION KEY: a comma-separated value as words.
ini_list() { ini_get "$@" | tr ',' ' '; }

# The kinds of value a study holds: ini_is KIND VALUE succeeds when VALUE is one.
ini_is() {
  local v=$2
  case "$1" in
    pos) [[ $v =~ ^[1-9][0-9]{0,17}$ ]] ;;                      # positive integer
    nat) [[ $v =~ ^(0|[1-9][0-9]{0,17})$ ]] ;;                  # non-negative integer
    decimal) [[ $v =~ ^[0-9]{1,18}(\.[0-9]{1,9})?$ ]] ;;         # a non-negative number, e.g. 45440.3
    name) [[ $v =~ ^[A-Za-z0-9_-]+$ ]] ;;                       # task, method
    label) [[ $v =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ;;          # study name (a folder name)
    metric) [[ $v =~ ^[A-Za-z0-9_.,:-]+$ ]] ;;                  # perplexity,none
    time) [[ $v =~ ^([0-9]{1,4}-)?[0-9]{1,9}(:[0-9]{1,2}){0,2}$ || $v =~ ^(UNLIMITED|INFINITE|unlimited|infinite)$ ]] ;;
    mem) [[ $v =~ ^[1-9][0-9]{0,17}[KMGTkmgt]?$ ]] ;;
    partition) [[ -z $v || $v =~ ^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$ ]] ;;
    gpus) [[ $v =~ ^([A-Za-z0-9_.-]+:)?(0|[1-9][0-9]{0,17})$ ]] ;;  # [type:]count
    hhmm) [[ $v =~ ^([01][0-9]|2[0-3]):[0-5][0-9]$ ]] ;;
    *) return 1 ;;
  esac
}

# ini_what KIND: how a message names the kind.
ini_what() {
  case "$1" in
    pos) echo "a positive integer" ;;
    nat) echo "a non-negative integer" ;;
    decimal) echo "a non-negative decimal number" ;;
    name) echo "a name (letters, digits, - and _)" ;;
    label) echo "a name (letters, digits, ., - and _)" ;;
    metric) echo "a metric name (letters, digits, _ . , : -)" ;;
    time) echo "a Slurm time limit (MM, HH:MM:SS, D-HH:MM:SS or UNLIMITED)" ;;
    mem) echo "a memory size (a positive integer, then K, M, G or T)" ;;
    partition) echo "a Slurm partition list (letters, digits, _ . -, comma-separated)" ;;
    gpus) echo "a GPU count ([type:]count)" ;;
    hhmm) echo "a time of day HH:MM" ;;
    *) echo "$1" ;;
  esac
}

# bad_value WHERE VALUE KIND: the message for a value that is not of KIND (control
# characters shown as ?), then exit 2. WHERE names the value, e.g. "STUDY.ini: [train] experts".
# The message starts with $SMOE_WHO (the script), or the script's file name.
bad_value() {
  printf "%s: %s: '%s' is not %s\n" "${SMOE_WHO:-${0##*/}}" "$1" "${2//[![:print:]]/?}" "$(ini_what "$3")" >&2
  exit 2
}

# check_value WHERE KIND VALUE: exit 2 (bad_value) unless VALUE is of KIND.
check_value() { ini_is "$2" "$3" || bad_value "$1" "$3" "$2"; }

# ini_check KIND VAR FILE SECTION KEY [DEFAULT]: sets VAR to the value (or DEFAULT)
# after checking that it is of KIND; else a message naming the key and exit 2.
# Call it as a command of its own (not inside $(...)), so that exit ends the script.
ini_check() {
  local _ic_v
  ini_value "$3" "$4" "$5" "${6:-}"
  _ic_v=$INI_VALUE
  ini_is "$1" "$_ic_v" || bad_value "$3: [$4] $5" "$_ic_v" "$1"
  printf -v "$2" '%s' "$_ic_v"
}

# ini_check_list KIND ARRAY FILE SECTION KEY [DEFAULT]: sets ARRAY to the items of a
# comma-separated value (blanks around items dropped), each checked to be of KIND;
# an empty list is refused too.
ini_check_list() {
  local -n _il_out=$2
  local _il_v _il_item _il_items=()
  ini_value "$3" "$4" "$5" "${6:-}"
  _il_v=$INI_VALUE
  list_items "$_il_v"
  for _il_item in "${LIST_ITEMS[@]}"; do
    ini_is "$1" "$_il_item" || bad_value "$3: [$4] $5" "$_il_item" "$1"
    _il_items+=("$_il_item")
  done
  [ ${#_il_items[@]} -gt 0 ] || bad_value "$3: [$4] $5" "$_il_v" "$1"
  _il_out=("${_il_items[@]}")
}

# list_items VALUE: sets LIST_ITEMS to the comma-separated items of VALUE, blanks
# around each dropped, empty items skipped.
list_items() {
  local item parts=()
  LIST_ITEMS=()
  IFS=, read -r -a parts <<< "$1"
  for item in "${parts[@]}"; do
    item=${item#"${item%%[![:space:]]*}"}
    item=${item%"${item##*[![:space:]]}"}
    [ -n "$item" ] && LIST_ITEMS+=("$item")
  done
  return 0
}

# check_env NAME KIND: exit 2 unless the environment variable NAME (set by
# slurm/submit or Slurm) is of KIND, e.g. check_env SLURM_ARRAY_TASK_ID nat.
check_env() { check_value "$1" "$2" "${!1-}"; }

# suite_tasks DIR: sets TASKS to the tasks of the suite in DIR (its folders, in
# order), each checked to be a name; exit 2 on another name or on none.
suite_tasks() {
  local d t
  TASKS=()
  for d in "$1"/*/; do
    [ -d "$d" ] || continue
    t=${d%/}
    t=${t##*/}
    check_value "$1: task folder" name "$t"
    TASKS+=("$t")
  done
  [ ${#TASKS[@]} -gt 0 ] || { printf '%s: %s: no task folders\n' "${SMOE_WHO:-${0##*/}}" "$1" >&2; exit 2; }
}

# slurm_path PATH: PATH for an sbatch --output pattern (each % doubled), so that
# only the %x %j %A %a the caller appends are replaced.
slurm_path() { printf '%s' "${1//%/%%}"; }

# measure_speed MODEL CORPUS: sets SPEED_LABEL to (--label tokens_per_second=X),
# X measured by smoe score over CORPUS with one thread, or to () when CORPUS is
# missing (a suite not written by smoe data synth) or score printed no figure.
# A failing score fails the job (set -e), its message in the job's log.
measure_speed() {
  local tps=""
  SPEED_LABEL=()
  [ -f "$2" ] || return 0
  # score's messages go to the job's log: a failure there ends the job with its reason.
  tps=$("$SMOE" score --model "$1" --corpus "$2" --threads 1 --device "${SMOE_DEVICE:-cpu}" | sed -n 's/^tokens_per_second=//p')
  if ini_is decimal "$tps"; then SPEED_LABEL=(--label "tokens_per_second=$tps"); fi
  return 0
}

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
  SMOE_CHILD=$!
  # The traps read the pid when a signal comes: their text holds no data.
  trap 'kill -USR1 "$SMOE_CHILD" 2>/dev/null' USR1
  # SIGTERM goes on as SIGUSR1: mpirun, given SIGTERM, ends with status 1 even when
  # every rank checkpointed and exited 3; given SIGUSR1 it passes the 3 on.
  trap 'kill -USR1 "$SMOE_CHILD" 2>/dev/null' TERM
  local status=0
  while :; do
    wait "$SMOE_CHILD" && status=0 || status=$?
    kill -0 "$SMOE_CHILD" 2>/dev/null || break  # wait returned for a trapped signal, not the end
  done
  trap - USR1 TERM
  if [ "$status" = 3 ] && [ -n "${SLURM_JOB_ID:-}" ] && [ "${SMOE_LOCAL:-0}" != 1 ]; then
    echo "smoe: checkpointed; requeueing job ${SLURM_JOB_ID}" >&2
    scontrol requeue "${SLURM_JOB_ID}"
    exit 0
  fi
  return "$status"
}
