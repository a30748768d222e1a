#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for testing the slurm profile.
#   sudo-less root only (CI and the dev containers run as root).
#   scripts/slurm_local.sh install   # Debian packages slurm-wlm + munge
#   scripts/slurm_local.sh start     # munged, slurmctld, slurmd; waits until the node is idle
#   scripts/slurm_local.sh stop      # stops only the daemons this script started (by pid)
# Facts this follows: shared/reference/local-slurm.md (measured on a machine like this).
set -euo pipefail
STATE=/tmp/olmpool-slurm
mkdir -p "$STATE"

install() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return 0; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  mkdir -p /etc/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  mkdir -p /etc/slurm
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=olmpool
SlurmctldHost=${host}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=${host} CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=main Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
  # munged runs as the munge user, which cannot write into this root-owned state dir: record
  # the pid of the daemon we started ourselves, so `stop` ends exactly that process.
  local before
  before=$(pgrep -x munged | tr '\n' ' ' || true)
  runuser -u munge -- munged --force 2>/dev/null || munged --force
  for _ in $(seq 1 20); do
    for p in $(pgrep -x munged || true); do
      case " ${before} " in *" ${p} "*) ;; *) echo "${p}" > "${STATE}/munged.pid" ;; esac
    done
    [ -s "${STATE}/munged.pid" ] && break
    sleep 0.2
  done
  slurmctld
  slurmd
  for _ in $(seq 1 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^idle'; then
      echo "slurm: node ${host} idle (${cpus} CPUs, ${mem} MB)"; return 0
    fi
    sleep 1
  done
  echo "slurm: node did not become idle; see /var/log/slurm/" >&2
  sinfo >&2 || true
  return 1
}

stop() {
  for d in slurmd slurmctld munged; do
    if [ -s "${STATE}/${d}.pid" ]; then
      kill "$(cat "${STATE}/${d}.pid")" 2>/dev/null || true
      rm -f "${STATE}/${d}.pid"
    fi
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
