#!/usr/bin/env bash
# A throwaway one-node Slurm cluster on this machine, for tests/slurm/ (and CI, through .ci/run).
#
#   tests/slurm/cluster.sh start    install slurm-wlm and munge if missing, start munged, slurmctld, slurmd
#   tests/slurm/cluster.sh stop     stop the three daemons (nothing running is fine)
#   tests/slurm/cluster.sh status   exit 0 when the cluster answers and its node takes jobs
#
# Everything lives in $LTH_SLURM_DIR (default /tmp/lth-slurm): config, munge key and socket, state,
# spool and logs. The one partition, `lth`, is this machine as slurmd detects it (`slurmd -C`), so the
# config always matches the hardware. No cgroups (containers rarely delegate them): processes are
# tracked through /proc, and tasks are not pinned. Needs root (to install packages and to run slurmd,
# which starts jobs as their submitting user); it exits non-zero, saying what is missing, otherwise.
set -euo pipefail

# the daemons live in sbin, which a non-login shell may not have on its PATH
export PATH=$PATH:/usr/sbin:/sbin
DIR=${LTH_SLURM_DIR:-/tmp/lth-slurm}
CONF=$DIR/slurm.conf
# client commands (sinfo, sbatch from submitit) read /etc/slurm/slurm.conf unless SLURM_CONF is set;
# a link there lets every shell and the tests reach this cluster without extra environment
SYSTEM_CONF=/etc/slurm/slurm.conf
PARTITION=lth

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

pid_alive() {  # pid_alive <pid file>
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_state() {
  sinfo -h -p "$PARTITION" -o %t 2>/dev/null | head -n 1
}

running() {
  pid_alive "$DIR/munge/munged.pid" && pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid"
}

install_packages() {
  local missing=()
  for tool in munged slurmctld slurmd sbatch; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null ||
    die "needs Slurm and munge (missing: ${missing[*]}), and this machine has no apt-get to install them"
  echo "installing slurm-wlm and munge (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  # a fresh machine may have no package lists yet: update once, only when the first try fails
  if ! apt-get install -y -q slurm-wlm munge >"$DIR/apt.log" 2>&1; then
    apt-get update -q >>"$DIR/apt.log" 2>&1 || true
    apt-get install -y -q slurm-wlm munge >>"$DIR/apt.log" 2>&1 ||
      die "needs the Debian packages slurm-wlm and munge, and 'apt-get install -y slurm-wlm munge' failed:
$(tail -n 5 "$DIR/apt.log")"
  fi
}

start_munge() {
  pid_alive "$DIR/munge/munged.pid" && return 0
  mkdir -p "$DIR/munge"
  [ -s "$DIR/munge/munge.key" ] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  # munged refuses keys and folders that others can read or write, and refuses to run as root
  chown -R munge:munge "$DIR/munge"
  chmod 0755 "$DIR/munge"
  chmod 0400 "$DIR/munge/munge.key"
  runuser -u munge -- munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" ||
    die "munged did not start: $(tail -n 3 "$DIR/munge/munged.log" 2>/dev/null)"
}

write_config() {
  # slurmd -C prints this machine's NodeName line (CPUs, sockets, cores, threads, RealMemory)
  local node
  node=$(slurmd -C | head -n 1)
  [[ $node == NodeName=* ]] || die "slurmd -C did not describe this node: $node"
  cat >"$CONF" <<EOF
# written by tests/slurm/cluster.sh: a one-node test cluster; rewritten on every start
ClusterName=lth
SlurmctldHost=$(hostname -s)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
# cores only: jobs that ask for no memory must not each claim the whole node's memory
SelectTypeParameters=CR_Core
# a node that was down (this machine rebooted, slurmd restarted) takes jobs again once it registers
ReturnToService=2
# finished jobs leave slurmctld's memory after 10 s, not the default 5 min
MinJobAge=10
# a requeued or cancelled job's processes get SIGKILL 5 s after SIGTERM, not 30 s
KillWait=5
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$(hostname -s) Default=YES MaxTime=INFINITE State=UP
EOF
}

link_config() {
  if [ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ]; then
    [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ] && return 0
    die "$SYSTEM_CONF exists and is not this test cluster's; refusing to replace a real Slurm config"
  fi
  mkdir -p "$(dirname "$SYSTEM_CONF")"
  ln -s "$CONF" "$SYSTEM_CONF"
}

wait_for_node() {
  local state=""
  for _ in $(seq 60); do
    state=$(node_state)
    case $state in
      idle | mix | alloc) return 0 ;;
      drain* | drng | inval) break ;;
    esac
    sleep 0.5
  done
  die "the node is not taking jobs (state '${state:-no answer}'): $(scontrol show node 2>&1 | grep -i reason)
logs: $DIR/log/slurmctld.log, $DIR/log/slurmd.log"
}

start() {
  [ "$(id -u)" -eq 0 ] || die "needs root: it installs packages and runs slurmd, which runs jobs as their users"
  mkdir -p "$DIR"
  install_packages
  if running && [ -n "$(node_state)" ]; then
    echo "already running: partition '$PARTITION' ($(node_state)), config $CONF"
    return 0
  fi
  stop >/dev/null
  start_munge
  # a fresh state every start: no jobs left over from an earlier cluster
  rm -rf "$DIR/state" "$DIR/spool"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  write_config
  link_config
  slurmctld -f "$CONF" || die "slurmctld did not start: $(tail -n 5 "$DIR/log/slurmctld.log")"
  slurmd -f "$CONF" || die "slurmd did not start: $(tail -n 5 "$DIR/log/slurmd.log")"
  wait_for_node
  echo "running: $(sinfo --version), partition '$PARTITION' ($(sinfo -h -p "$PARTITION" -o '%c CPUs, %m MB')), config $CONF"
}

stop_daemon() {  # stop_daemon <name> <pid file>
  pid_alive "$2" || return 0
  local pid
  pid=$(cat "$2")
  kill "$pid"
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  echo "$1 ($pid) ignored SIGTERM for 10 s; killing it" >&2
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  [ "$(id -u)" -eq 0 ] || die "needs root to stop the daemons it started as root"
  # slurmd first: it may still be killing the jobs it started
  stop_daemon slurmd "$DIR/slurmd.pid"
  stop_daemon slurmctld "$DIR/slurmctld.pid"
  stop_daemon munged "$DIR/munge/munged.pid"
  if [ "$(readlink "$SYSTEM_CONF" 2>/dev/null)" = "$CONF" ]; then
    rm -f "$SYSTEM_CONF"
  fi
  echo "stopped"
}

status() {
  if running && [ -n "$(node_state)" ]; then
    echo "running: partition '$PARTITION' ($(node_state)), config $CONF, logs $DIR/log"
  else
    echo "not running"
    return 1
  fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
