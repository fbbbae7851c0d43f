#!/usr/bin/env bash
# Hostile input must never run a command. Study INI values, folder names, --at and
# the environment of the sbatch templates that hold shell syntax reach slurm/submit,
# slurm/nightly, the templates and env/slurm-*.sh as data: refused with exit 2 and a
# message naming the key, or passed on whole as one argument. No payload ever
# creates its file PWNED. Needs no Slurm: a fake smoe, sbatch and mpirun on PATH
# record their arguments (NUL-separated, one file per call); the fake smoe hands
# `smoe grid` (the grid entry of an array index) to the real binary.
#   bash tests/e2e/test_scripts_hostile.sh [SMOE]   # SMOE: default build/smoe; one line per check
set -uo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/../.." && pwd)
real_smoe=$(cd "$(dirname "${1:-$root/build/smoe}")" && pwd)/$(basename "${1:-$root/build/smoe}")
[ -x "$real_smoe" ] || { echo "test_scripts_hostile.sh: no smoe binary at $real_smoe" >&2; exit 1; }
tmp=$(mktemp -d)
sleeper=""
cleanup() { [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
unset SLURM_JOB_ID SLURM_ARRAY_TASK_ID SMOE_LOCAL SMOE_STUDY_DATE SMOE_DEVICE SMOE_ROOT STUDY WORK EXPERTS

failures=0
check() {  # STATUS WHAT: STATUS 0 passes
  if [ "$1" = 0 ]; then echo "ok   $2"; else echo "FAIL $2"; failures=$((failures + 1)); fi
}

# The fakes: each call writes its arguments, NUL-separated, to a file of its own in
# FAKE_LOG: smoe.PID.RANDOM (smoe runs two at a time under --local), sbatch.N (N:
# the call's number; its job id is 1000 + N).
bin=$tmp/bin log=$tmp/log
mkdir -p "$bin" "$log" "$tmp/cwd"
cat > "$bin/smoe" <<'EOF'
#!/usr/bin/env bash
if [ "${1:-}" = grid ]; then exec "$REAL_SMOE" "$@"; fi
printf '%s\0' "$@" > "$FAKE_LOG/smoe.$$.$RANDOM"
if [ "${1:-}" = data ]; then
  while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
  for t in capitals elements years symbols; do mkdir -p "$out/$t"; done
fi
exit 0
EOF
cat > "$bin/sbatch" <<'EOF'
#!/usr/bin/env bash
n=0
[ -f "$FAKE_LOG/.n" ] && read -r n < "$FAKE_LOG/.n"
n=$((n + 1))
echo "$n" > "$FAKE_LOG/.n"
printf '%s\0' "$@" > "$FAKE_LOG/sbatch.$n"
echo "$((1000 + n))"
EOF
cat > "$bin/mpirun" <<'EOF'
#!/usr/bin/env bash
while [ $# -gt 0 ]; do if [ "$1" = -n ]; then shift 2; break; fi; shift; done
exec "$@"
EOF
chmod +x "$bin"/*
export PATH="$bin:$PATH" FAKE_LOG=$log SMOE=$bin/smoe REAL_SMOE=$real_smoe
cd "$tmp/cwd" || exit 1

P=$tmp/PWNED  # every payload touches PWNED here, or PWNED in the current folder
pwned() { [ -z "$(find "$tmp" -name 'PWNED*' -print -quit)" ] && [ ! -e "$root/PWNED" ]; }
reset_log() { rm -f "$log"/* "$log/.n"; }
calls() { local f n=0; for f in "$log/$1".*; do [ -e "$f" ] && n=$((n + 1)); done; echo "$n"; }  # calls TOOL: how many
args() { mapfile -d '' -t ARGS < "$1"; }                 # args FILE: sets ARGS to the call's arguments
has_arg() { local a; for a in "${ARGS[@]}"; do [ "$a" = "$1" ] && return 0; done; return 1; }
args_are() { [ ${#ARGS[@]} = $# ] && args_end "$@"; }   # args_are WANT...: ARGS are these
args_end() {  # args_end WANT...: ARGS end with these, each one whole
  local i n=$#
  [ ${#ARGS[@]} -ge "$n" ] || return 1
  for (( i = 1; i <= n; i++ )); do [ "${ARGS[${#ARGS[@]} - n + i - 1]}" = "${!i}" ] || return 1; done
}
find_call() {  # find_call TOOL ARG: the file of a TOOL call with ARG among its arguments
  local f
  for f in "$log/$1".*; do [ -e "$f" ] && args "$f" && has_arg "$2" && { echo "$f"; return 0; }; done
  return 1
}
no_wrap() {  # no sbatch call has --wrap or --wrap=...
  local f a
  for f in "$log"/sbatch.*; do
    [ -e "$f" ] || continue
    args "$f"
    for a in "${ARGS[@]}"; do [[ $a == --wrap || $a == --wrap=* ]] && return 1; done
  done
  return 0
}

GOOD='; a reduced study
[study]
name = hostile
seed = 0
[data]
train = 20
eval = 5
[train]
experts = 4
steps = 2
ranks = 2
[collect]
ranks = 2
[cluster]
methods = frequency, uncurl
factors = 2
[eval]
ranks = 1
metric = perplexity,none
[slurm]
partition =
time = 00:20:00
mem_per_cpu = 1G
array_throttle = 4
signal_seconds = 30'

# write_study FILE [SECTION KEY VALUE]: the good study; with KEY = VALUE first in
# SECTION (the first one counts), the section added if it is not there.
write_study() {
  local line put=0
  {
    while IFS= read -r line; do
      printf '%s\n' "$line"
      if [ -n "${2:-}" ] && [ "$line" = "[$2]" ]; then printf '%s = %s\n' "$3" "$4"; put=1; fi
    done <<< "$GOOD"
    if [ -n "${2:-}" ] && [ "$put" = 0 ]; then printf '[%s]\n%s = %s\n' "$2" "$3" "$4"; fi
  } > "$1"
}

# A work folder name with quotes, command substitutions, a glob, a Slurm % pattern
# and a newline.
hostile="w'q\"d \$(touch PWNED) \`touch PWNED\`;x%j*"$'\n'"nl"
study=$tmp/study.ini
write_study "$study"

# ---- submit through (fake) Slurm, a hostile work folder -----------------------------
work=$tmp/s1/$hostile
reset_log
bash "$root/slurm/submit" "$study" --workdir "$work" > "$tmp/out" 2>&1
check $? "submit, work folder with ' \$( \` ; % * and a newline: exit 0"
check "$( [ "$(calls sbatch)" = 6 ] && echo 0)" "submit: 6 sbatch calls (train e2 e4, collect, cluster, prune-eval, report): $(calls sbatch)"
no_wrap; check $? "submit: no sbatch --wrap"
f=$(find_call sbatch --job-name=smoe-train-e4) && args "$f" && has_arg "--output=${work//%/%%}/logs/%x-%j.out" &&
  [ "${ARGS[-1]}" = "$root/slurm/train.sbatch" ]
check $? "submit: the work folder reaches sbatch whole, its % doubled for --output, the template last"
ids=$(seq -s ' ' 1001 $((1000 + $(calls sbatch))))
[ "$(cat "$work/jobs.txt")" = "$ids" ] && [ "$(cat "$work/report.jobid")" = "${ids##* }" ]
check $? "submit: jobs.txt and report.jobid in the hostile folder (jobs $ids)"
grep -qx 'methods = frequency,uncurl' "$work/grids/e4.ini" && grep -qx 'factors = 2' "$work/grids/e4.ini" &&
  [ "$(sed -n 's/^tasks = //p' "$work/grids/e4.ini" | tr ',' '\n' | sort | paste -sd, -)" = capitals,elements,symbols,years ]
check $? "submit: the grid file of e4 (4 tasks, 2 methods, factor 2)"
pwned; check $? "submit: no PWNED"

# ---- submit --local, the same folder: the templates run here (fake smoe, mpirun) ----
work=$tmp/s2/$hostile
reset_log
bash "$root/slurm/submit" "$study" --local --workdir "$work" > "$tmp/out" 2>&1
check $? "submit --local, hostile work folder: exit 0"
f=$(find_call smoe report) && args "$f" &&
  args_are report --results "$work/results" --out "$work/report" --metric perplexity,none
check $? "submit --local: report.sbatch passes the folder whole to smoe report"
want=() got=()
for t in capitals elements symbols years; do for m in frequency uncurl; do want+=("$work/plans/e4/$t-$m-2.h5"); done; done
for f in "$log"/smoe.*; do
  args "$f"
  [ "${ARGS[0]}" = prune ] && got+=("${ARGS[4]}")
done
[ "$(printf '%s\n' "${want[@]}" | sort)" = "$(printf '%s\n' "${got[@]}" | sort)" ]
check $? "submit --local: prune-eval.sbatch computed the 8 grid entries from the array index (${#got[@]} prune calls)"
[ "$(calls smoe)" = $((1 + 2 * 2 + 1 + 8 + 8 * 2 + 1)) ]
check $? "submit --local: every template ran smoe (data, train+eval x2, collect, cluster x8, prune+eval x8, report): $(calls smoe) calls"
pwned; check $? "submit --local: no PWNED"

# ---- bad values: exit 2, the key named, nothing submitted -------------------------
bad_cases=(
  "cluster|factors|2, x[\$(touch $P)]"
  "cluster|factors|2, x[\$(touch\${IFS}$P)]"
  "cluster|factors|0"
  "train|experts|4\$(touch $P)"
  "train|experts|x[\$(touch\${IFS}$P)]"
  "train|top_k|2\$(touch $P)"
  "train|ranks|a[\$(touch PWNED)]"
  "study|seed|\$(touch $P)"
  "study|name|../\$(touch PWNED)"
  "data|train|12 && touch $P"
  "data|eval|\`touch $P\`"
  "collect|ranks|2 \$(touch $P)"
  "collect|max_tokens|-1"
  "cluster|methods|frequency, \$(touch $P)"
  "cluster|methods|freq'uency"
  "eval|ranks|x[\$(touch $P)]"
  "eval|metric|perplexity,none'; touch $P; '"
  "slurm|signal_seconds|60\$(touch $P)"
  "slurm|time|00:30:00 --wrap=touch"
  "slurm|mem_per_cpu|2G\$(touch $P)"
  "slurm|partition|main --wrap touch"
  "slurm|gpus_per_rank|x[\$(touch $P)]"
  "slurm|array_throttle|4\$(touch $P)"
  "slurm|cpus_per_rank|08"
)
for c in "${bad_cases[@]}"; do
  IFS='|' read -r sect key value <<< "$c"
  write_study "$tmp/bad.ini" "$sect" "$key" "$value"
  reset_log
  rm -rf "$tmp/bad"
  bash "$root/slurm/submit" "$tmp/bad.ini" --workdir "$tmp/bad" > "$tmp/out" 2>&1
  rc=$?
  [ "$rc" = 2 ] && grep -qF "submit: $tmp/bad.ini: [$sect] $key: '" "$tmp/out" && grep -qF "is not" "$tmp/out" &&
    [ "$(calls sbatch)" = 0 ] && [ ! -e "$tmp/bad" ] && pwned
  check $? "submit refuses [$sect] $key = $value: exit $rc, $(head -c 160 "$tmp/out" | head -1)"
done

# ---- a UTF-8 BOM and CRLF line ends ------------------------------------------------
{ printf '\357\273\277'; write_study /dev/stdout | sed 's/$/\r/'; } > "$tmp/bom.ini"
reset_log
bash "$root/slurm/submit" "$tmp/bom.ini" --workdir "$tmp/bom" > "$tmp/out" 2>&1
check $? "submit, a study with a BOM and CRLF line ends: exit 0"
[ "$(calls sbatch)" = 6 ] && grep -qx 'methods = frequency,uncurl' "$tmp/bom/grids/e4.ini" && grep -qx 'factors = 2' "$tmp/bom/grids/e4.ini"
check $? "submit, BOM and CRLF: [study] (the first line) and every value read without the BOM or CR"
printf '[study]\rname = cr ; only CRs\r' > "$tmp/cr.ini"
[ "$(bash -c 'source "$1/slurm/lib.sh"; ini_get "$2" study name' _ "$root" "$tmp/cr.ini")" = cr ]
check $? "lib.sh ini_get: a file with CR line ends"

# ---- the templates' environment ----------------------------------------------------
work=$tmp/s1/$hostile  # from the first submit: its grids exist
tpl() {  # tpl TEMPLATE VAR=VALUE...: runs the template as submit would; sets rc, out
  env SMOE_ROOT="$root" STUDY="$study" WORK="$work" EXPERTS=4 "${@:2}" bash "$root/slurm/$1" > "$tmp/out" 2>&1
  rc=$?
}
for id in "x[\$(touch $P)]" garbage -1 8 " 1"; do
  reset_log
  tpl prune-eval.sbatch SLURM_ARRAY_TASK_ID="$id"
  [ "$rc" = 2 ] && grep -qF SLURM_ARRAY_TASK_ID "$tmp/out" && [ "$(calls smoe)" = 0 ] && pwned
  check $? "prune-eval.sbatch refuses SLURM_ARRAY_TASK_ID='$id': exit $rc"
done
reset_log
tpl prune-eval.sbatch SLURM_ARRAY_TASK_ID=7
last=$(sed -n 's/^tasks = .*,//p' "$work/grids/e4.ini")
f=$(find_call smoe prune) && args "$f" && [ "${ARGS[4]}" = "$work/plans/e4/$last-uncurl-2.h5" ]
check $? "prune-eval.sbatch SLURM_ARRAY_TASK_ID=7: the last grid entry (exit $rc)"
reset_log
tpl cluster.sbatch SLURM_ARRAY_TASK_ID="x[\$(touch $P)]"
[ "$rc" = 2 ] && [ "$(calls smoe)" = 0 ] && pwned
check $? "cluster.sbatch refuses a hostile SLURM_ARRAY_TASK_ID: exit $rc"
for t in train collect cluster prune-eval; do
  reset_log
  tpl "$t.sbatch" EXPERTS="4\$(touch $P)" SLURM_ARRAY_TASK_ID=0
  [ "$rc" = 2 ] && grep -qF "EXPERTS: '4\$(touch" "$tmp/out" && [ "$(calls smoe)" = 0 ] && pwned
  check $? "$t.sbatch refuses EXPERTS='4\$(touch PWNED)': exit $rc"
done
mkdir -p "$tmp/g/grids"
# shellcheck disable=SC2016 # the payload is meant literally
printf '[grid]\ntasks = arith\nmethods = frequency\nfactors = x[$(touch %s)]\n' "$P" > "$tmp/g/grids/e4.ini"
reset_log
work=$tmp/g tpl prune-eval.sbatch SLURM_ARRAY_TASK_ID=0
[ "$rc" = 2 ] && grep -qF "grids/e4.ini: factor:" "$tmp/out" && pwned
check $? "prune-eval.sbatch refuses a grid file with a hostile factor: exit $rc"
write_study "$tmp/bad.ini" train top_k "2\$(touch $P)"
reset_log
env SMOE_ROOT="$root" STUDY="$tmp/bad.ini" WORK="$work" EXPERTS=4 bash "$root/slurm/train.sbatch" > "$tmp/out" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -qF "[train] top_k:" "$tmp/out" && [ "$(calls smoe)" = 0 ] && pwned
check $? "train.sbatch refuses a hostile [train] top_k read at run time: exit $rc"

# ---- run_resumable: the signal reaches the child ------------------------------------
# resumable_signal SIG: sends SIG to a batch shell running run_resumable over a child
# that exits 7 on SIGUSR1 (9 on SIGTERM); prints the child's status.
resumable_signal() {
  rm -f "$tmp/ready"
  bash -c 'source "$1/slurm/lib.sh"; SMOE_LOCAL=1 run_resumable 1 bash -c "trap \"exit 7\" USR1; trap \"exit 9\" TERM; touch \"\$0\"; while :; do sleep 0.05; done" "$2"' \
    _ "$root" "$tmp/ready" &
  local rr=$!
  for _ in $(seq 100); do [ -e "$tmp/ready" ] && break; sleep 0.05; done
  kill "-$1" "$rr"
  wait "$rr"
  echo $?
}
check "$( [ "$(resumable_signal USR1)" = 7 ] && echo 0)" "lib.sh run_resumable: SIGUSR1 to the batch shell reaches smoe (its trap text holds no pid)"
check "$( [ "$(resumable_signal TERM)" = 7 ] && echo 0)" "lib.sh run_resumable: SIGTERM to the batch shell reaches the launcher as SIGUSR1 (mpirun passes exit 3 on)"

# ---- nightly: a hostile folder, the jobs as scripts with arguments ------------------
nwork=$tmp/n/$hostile
reset_log
bash "$root/slurm/nightly" "$study" --workdir "$nwork" --at 03:00 > "$tmp/out" 2>&1
check $? "nightly, hostile work folder: exit 0"
no_wrap; check $? "nightly: no sbatch --wrap (tonight's study, the trend job, the next night)"
f=$(find_call sbatch --job-name=smoe-trend) && args "$f" &&
  args_end "$root/slurm/trend.sbatch" "$nwork" perplexity,none &&
  has_arg "--dependency=afterany:$(cat "$nwork/$(date +%F)/report.jobid")" && has_arg "--output=${nwork//%/%%}/logs-trend-%j.out"
check $? "nightly: trend job = slurm/trend.sbatch, the folder and the metric as separate arguments, after tonight's report"
trend=("${ARGS[@]: -2}")
f=$(find_call sbatch --job-name=smoe-nightly) && args "$f" && n=${#ARGS[@]} &&
  args_end "$root/slurm/nightly.sbatch" "$study" --workdir "$nwork" --at 03:00 &&
  has_arg "--begin=$(date -d 'tomorrow 03:00' +%Y-%m-%dT%H:%M:%S)" && [ "$(cat "$nwork/next.jobid")" = $((1000 + ${f##*.})) ]
check $? "nightly: next night = slurm/nightly.sbatch STUDY --workdir DIR --at 03:00 as arguments, --begin tomorrow 03:00"
again=("${ARGS[@]:n-5}")
pwned; check $? "nightly: no PWNED"
reset_log
SMOE=$bin/smoe bash "$root/slurm/trend.sbatch" "${trend[@]}" > "$tmp/out" 2>&1
check $? "trend.sbatch run as Slurm would (with its recorded arguments): exit 0"
f=$(find_call smoe report) && args "$f" &&
  args_are report --results "$nwork" --out "$nwork/trend" --metric perplexity,none
check $? "trend.sbatch: smoe report gets the folder whole"
reset_log
SMOE_ROOT=$root bash "$root/slurm/nightly.sbatch" "${again[@]}" > "$tmp/out" 2>&1
check $? "nightly.sbatch run as Slurm would (with its recorded arguments): the next night submits again"
no_wrap && find_call sbatch --job-name=smoe-nightly > /dev/null && pwned
check $? "nightly.sbatch: again no --wrap, the chain goes on, no PWNED"
for at in "03:00\$(touch $P)" "03:00'; touch $P; '" 25:00 3:00 "03:00 "; do
  reset_log
  bash "$root/slurm/nightly" "$study" --workdir "$tmp/n2" --at "$at" > "$tmp/out" 2>&1
  rc=$?
  [ "$rc" = 2 ] && grep -qF -- "nightly: --at: '" "$tmp/out" && [ "$(calls sbatch)" = 0 ] && pwned
  check $? "nightly refuses --at '$at': exit $rc"
done
write_study "$tmp/bad.ini" nightly at "02:00'\$(touch $P)'"
reset_log
bash "$root/slurm/nightly" "$tmp/bad.ini" --workdir "$tmp/n2" > "$tmp/out" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -qF "[nightly] at:" "$tmp/out" && [ "$(calls sbatch)" = 0 ] && pwned
check $? "nightly refuses a hostile [nightly] at: exit $rc"

# ---- env/slurm-up.sh and env/slurm-down.sh -----------------------------------------
bash "$root/env/slurm-up.sh" "$tmp/up dir\$(touch $P)" > "$tmp/out" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -qF "slurm-up: DIR" "$tmp/out" && [ ! -e "$tmp/up dir" ] && pwned
check $? "slurm-up.sh refuses a DIR it would write into slurm.conf unquoted: exit $rc"
mkdir -p "$tmp/sd/run"
sleep 30 &
sleeper=$!
echo "$sleeper" > "$tmp/sd/run/slurmd.pid"
# shellcheck disable=SC2016 # the payload is meant literally
printf '$(touch %s)\n' "$P" > "$tmp/sd/run/slurmctld.pid"
echo abc > "$tmp/sd/run/munged.pid"
bash "$root/env/slurm-down.sh" "$tmp/sd" > "$tmp/out" 2>&1
rc=$?
kill -0 "$sleeper" 2>/dev/null && [ "$rc" = 0 ] && [ -z "$(ls "$tmp/sd/run")" ] && pwned
check $? "slurm-down.sh: a pid file naming another process (sleep) or no number signals nothing"
kill "$sleeper" 2>/dev/null; wait "$sleeper" 2>/dev/null; sleeper=""

if [ "$failures" -gt 0 ]; then echo "e2e.scripts-hostile: $failures failed"; exit 1; fi
echo "e2e.scripts-hostile: passed"
