#!/usr/bin/env bash
# A throwaway single-node Slurm cluster on 127.0.0.1 for the tests (Debian's slurm-wlm and
# munge).
#
#   slurm-cluster.sh start DIR   write DIR/slurm.conf, start munged (if not running), slurmctld
#                                and slurmd; prints the path of slurm.conf (export it as
#                                SLURM_CONF) once the node takes jobs
#   slurm-cluster.sh stop DIR    stop slurmd and slurmctld (munged is left to the machine)
set -euo pipefail

command=${1:?usage: slurm-cluster.sh start DIR | stop DIR}
dir=$(mkdir -p "${2:?a directory}" && cd "$2" && pwd)

for tool in slurmctld slurmd munged sbatch; do
  command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin"
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$tool is not installed: apt-get install slurm-wlm munge" >&2
    exit 1
  }
done

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

case "$command" in
  start)
    mkdir -p "$dir/state" "$dir/spool"
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
    cat >"$dir/slurm.conf" <<CONF
ClusterName=mcp-test
SlurmctldHost=localhost
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=3600
KillWait=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$dir/slurm.conf"
    if ! pgrep -x munged >/dev/null 2>&1; then
      mkdir -p /run/munge /var/log/munge /var/lib/munge
      if [ "$(id -u)" = 0 ]; then
        chown munge: /run/munge /var/log/munge /var/lib/munge
        runuser -u munge -- munged --force
      else
        munged --force
      fi
    fi
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF" -N localhost
    for _ in $(seq 1 100); do
      if sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
        echo "$SLURM_CONF"
        exit 0
      fi
      sleep 0.1
    done
    echo "the Slurm node did not come up; logs in $dir" >&2
    sinfo -N >&2 || true
    tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    exit 1
    ;;
  stop)
    for daemon in slurmd slurmctld; do
      if [ -f "$dir/$daemon.pid" ]; then
        kill "$(cat "$dir/$daemon.pid")" 2>/dev/null || true
      fi
    done
    for _ in $(seq 1 50); do
      alive=0
      for daemon in slurmd slurmctld; do
        [ -f "$dir/$daemon.pid" ] && kill -0 "$(cat "$dir/$daemon.pid")" 2>/dev/null && alive=1
      done
      [ "$alive" = 0 ] && exit 0
      sleep 0.1
    done
    ;;
  *)
    echo "unknown command $command" >&2
    exit 2
    ;;
esac
