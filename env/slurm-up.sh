#!/usr/bin/env bash
# Starts a real one-node Slurm on this machine for the end-to-end test and the
# demo: munge, slurmctld and slurmd, with every state, spool, log and pid file
# under DIR, listening on the first free pair of ports from 6817 on (so that it
# runs beside another Slurm). Needs root (no systemd, no cgroups: the daemons are
# started by hand). Prints the line to export SLURM_CONF.
#   eval "$(bash env/slurm-up.sh DIR)"      # then sbatch, squeue, ...
#   bash env/slurm-down.sh DIR              # stops only these daemons
set -euo pipefail
unset CDPATH
[ $# -eq 1 ] || { echo "usage: bash env/slurm-up.sh DIR   (a folder for the daemons' state, logs and slurm.conf)" >&2; exit 2; }
dir=$1
[[ $dir == /* ]] || dir=$PWD/$dir   # the daemons do not run from here: absolute paths in slurm.conf
# DIR is written into slurm.conf, one value per line: only a plain path (no blank,
# newline, quote, comma, % or other character the config or a shell would read) is taken.
[[ $dir =~ ^[A-Za-z0-9_./+@-]+$ ]] ||
  { printf "slurm-up: DIR '%s' may hold only letters, digits and _ . / + @ -\n" "${dir//[![:print:]]/?}" >&2; exit 2; }

need=()
for p in slurm-wlm munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

mkdir -p -- "$dir"/{state,spool,log,run}
dir=$(cd -- "$dir" && pwd)
# alive PIDFILE NAME: the PID file holds the pid of a running process called NAME
# (not a number such as -1 or 0 that kill reads as a group, nor a reused pid).
alive() {
  local pid
  [ -f "$1" ] && pid=$(cat -- "$1") && [[ $pid =~ ^[1-9][0-9]{0,9}$ ]] &&
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && kill -0 "$pid" 2>/dev/null
}

# munge: our own daemon, socket and pid under DIR unless one already answers.
if ! alive "$dir/run/munged.pid" munged; then
  [ -f /etc/munge/munge.key ] || mungekey --create >&2
  install -d -o munge -g munge "$dir/munge"
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  runuser -u munge -- /usr/sbin/munged --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" --force >&2
  for _ in $(seq 50); do [ -f "$dir/munge/munged.pid" ] && break; sleep 0.1; done
  cp "$dir/munge/munged.pid" "$dir/run/munged.pid"
fi

host=$(hostname -s)
# The cores this process may use (nproc would also obey OMP_NUM_THREADS).
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))
# Ports: those of this DIR's Slurm when it runs already, else the first pair from
# 6817 on that nothing listens on.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ctld_port=""
if alive "$dir/run/slurmctld.pid" slurmctld && [ -f "$dir/slurm.conf" ]; then
  ctld_port=$(sed -n 's/^SlurmctldPort=\([0-9]\{4,5\}\)$/\1/p' "$dir/slurm.conf")
fi
if [ -z "$ctld_port" ]; then
  ctld_port=6817
  while listening "$ctld_port" || listening $((ctld_port + 1)); do
    ctld_port=$((ctld_port + 2))
    [ "$ctld_port" -lt 7817 ] || { echo "slurm-up: no free pair of ports in 6817-7817" >&2; exit 1; }
  done
fi
cat > "$dir/slurm.conf" <<CONF
ClusterName=smoe
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( mem / cpus ))
SchedulerType=sched/backfill
MpiDefault=pmix
DependencyParameters=kill_invalid_depend
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$ctld_port
SlurmdPort=$((ctld_port + 1))
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=main Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
export SLURM_CONF="$dir/slurm.conf"

alive "$dir/run/slurmctld.pid" slurmctld || /usr/sbin/slurmctld -f "$SLURM_CONF" -i >&2
alive "$dir/run/slurmd.pid" slurmd || /usr/sbin/slurmd -f "$SLURM_CONF" >&2
for _ in $(seq 100); do
  state=$(sinfo -h -o %T 2>/dev/null | head -1)
  [ "$state" = "idle" ] && break
  sleep 0.2
done
[ "$(sinfo -h -o %T 2>/dev/null | head -1)" = "idle" ] || { echo "slurm-up: the node did not become idle; see $dir/log" >&2; exit 1; }
printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"   # quoted for the eval above
