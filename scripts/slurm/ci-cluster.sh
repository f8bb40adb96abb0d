#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for CI (.ci/run) and for trying the Slurm recipe by hand.
#
#   scripts/slurm/ci-cluster.sh start    install Debian's slurm-wlm and munge if missing, write a
#                                        one-node slurm.conf, start munged, slurmctld and slurmd
#   scripts/slurm/ci-cluster.sh stop     stop the daemons it started
#   scripts/slurm/ci-cluster.sh status   say whether the cluster answers
#
# Needs root (or sudo). Process tracking is proctrack/cgroup when this machine lets slurmd use
# cgroups, else proctrack/linuxproc (containers often do not). State, logs and pid files live in
# $GAN_DIST_SLURM_DIR (default /var/tmp/gan-dist-slurm); /etc/slurm/slurm.conf is written only if
# it is absent or was written by this script, so a real cluster's configuration is never touched.
set -euo pipefail

base=${GAN_DIST_SLURM_DIR:-/var/tmp/gan-dist-slurm}
conf=/etc/slurm/slurm.conf
marker='# written by gan-dist scripts/slurm/ci-cluster.sh'
node=$(hostname -s)

say() { echo "ci-cluster: $*" >&2; }
as_root() { if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
  say "installing slurm-wlm and munge (apt)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null ||
    { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }
}

# cgroup v1 with a writable freezer (or cgroup v2 without systemd) is what proctrack/cgroup needs here.
proctrack() {
  if [[ -w /sys/fs/cgroup/freezer ]] && mkdir /sys/fs/cgroup/freezer/gan-dist-probe 2>/dev/null; then
    rmdir /sys/fs/cgroup/freezer/gan-dist-probe
    echo cgroup
  else
    echo linuxproc
  fi
}

write_conf() {
  local tracking=$1
  if [[ -e $conf ]] && ! grep -qF "$marker" "$conf"; then
    say "$conf exists and was not written by this script: not touching it"
    exit 1
  fi
  mkdir -p "$base/state" "$base/spool" "$base/log"
  # config_overrides: the node offers the CPUs written here whatever the machine has, so a 2-core
  # CI runner can hold a coordinator, two workers and an extra one at once.
  cat >"$base/slurm.conf" <<EOF
$marker
ClusterName=gan-dist-ci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/$tracking
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool
SlurmctldPidFile=$base/slurmctld.pid
SlurmdPidFile=$base/slurmd.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# scancel sends SIGTERM, then SIGKILL this many seconds later.
KillWait=5
InactiveLimit=0
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=8 RealMemory=1000 State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$base/cgroup.conf" <<EOF
$marker
CgroupAutomount=yes
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
  as_root mkdir -p /etc/slurm
  as_root cp "$base/slurm.conf" "$conf"
  as_root cp "$base/cgroup.conf" /etc/slurm/cgroup.conf
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

answers() { timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

start_daemons() {
  as_root mkdir -p /run/munge
  as_root chown munge:munge /run/munge
  if ! pid_alive /run/munge/munged.pid; then
    as_root runuser -u munge -- /usr/sbin/munged
  fi
  pid_alive "$base/slurmctld.pid" || as_root /usr/sbin/slurmctld -i
  pid_alive "$base/slurmd.pid" || as_root /usr/sbin/slurmd -N "$node"
  for _ in $(seq 150); do
    answers && return 0
    sleep 0.2
  done
  say "the node did not come up; the logs:"
  tail -n 20 "$base/log/slurmctld.log" "$base/log/slurmd.log" >&2 || true
  return 1
}

stop_daemons() {
  for pidfile in "$base/slurmd.pid" "$base/slurmctld.pid" /run/munge/munged.pid; do
    if pid_alive "$pidfile"; then
      local pid
      pid=$(cat "$pidfile")
      as_root kill -TERM "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  say "stopped"
}

# One task through srun: the end-to-end check that slurmd can start and track a job step.
probe() { timeout 30 srun -N1 -n1 --quiet true; }

case ${1:-} in
  start)
    t0=$(date +%s%N)
    install_packages
    tracking=$(proctrack)
    write_conf "$tracking"
    start_daemons
    if ! probe && [[ $tracking == cgroup ]]; then
      say "proctrack/cgroup cannot start a step here; falling back to proctrack/linuxproc"
      stop_daemons
      tracking=linuxproc
      write_conf "$tracking"
      start_daemons
      probe
    fi
    say "node $node up (proctrack/$tracking) in $((($(date +%s%N) - t0) / 1000000)) ms"
    ;;
  stop) stop_daemons ;;
  status)
    if answers; then say "up: $(sinfo -h -o '%N %T %C')"; else say "not answering"; exit 1; fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
