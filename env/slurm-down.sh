#!/usr/bin/env bash
# Stops the daemons env/slurm-up.sh started under DIR, by their own PID files only.
set -uo pipefail
dir=${1:-/tmp/smoe-slurm}
for d in slurmd slurmctld munged; do
  f="$dir/run/$d.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
done
echo "slurm-down: stopped the daemons under $dir" >&2
