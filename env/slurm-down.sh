#!/usr/bin/env bash
# Stops the daemons env/slurm-up.sh started under DIR, by their own PID files only:
# a pid is signalled only when it is a plain number (never -1, 0 or a group) and
# names a running process of the daemon's name (not a pid reused since).
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: bash env/slurm-down.sh DIR   (as given to env/slurm-up.sh)" >&2; exit 2; }
dir=$1
for d in slurmd slurmctld munged; do
  f="$dir/run/$d.pid"
  [ -f "$f" ] || continue
  pid=$(cat -- "$f")
  if [[ $pid =~ ^[1-9][0-9]{0,9}$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$d" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f -- "$f"
done
printf 'slurm-down: stopped the daemons under %s\n' "$dir" >&2
