# A private one-machine Slurm for tests (sourced): its own munged, slurmctld
# and slurmd, with config, keys, state, spool, logs and sockets under one temp
# directory and ports picked free, so it touches nothing of the machine's and
# can run beside another copy. Needs root (slurmd launches jobs as their user)
# and Debian's slurm-wlm + munge. Every daemon runs in the foreground as a
# child of the test, and cluster_stop ends exactly those process ids.
#
#   cluster_start          sets CLUSTER (the directory) and exports SLURM_CONF
#   cluster_stop           cancels the jobs, stops the daemons, removes CLUSTER
#   cluster_wait_job ID S  waits until job ID has left the queue (at most S s)
#   job_field ID KEY       KEY=value from `scontrol show job ID`
CLUSTER=""
CLUSTER_PIDS=()

# cluster_missing: prints what the machine lacks to run a cluster, if anything.
cluster_missing() {
  local c
  for c in munged mungekey slurmctld slurmd sbatch scontrol squeue scancel srun setpriv python3; do
    command -v "$c" >/dev/null 2>&1 || { echo "$c is not installed (tools/setup.sh installs slurm-wlm and munge)"; return; }
  done
  [ "$(id -u)" -eq 0 ] || { echo "not root (slurmd must start jobs as their user)"; return; }
  id munge >/dev/null 2>&1 || echo "no munge user"
}

cluster_start() {
  CLUSTER=$(mktemp -d /tmp/dtrain-slurm.XXXXXX)
  chmod 755 "$CLUSTER"  # munged (user munge) must reach its socket directory
  mkdir -p "$CLUSTER"/{munge,state,spool,log}
  chown munge:munge "$CLUSTER/munge"
  setpriv --reuid=munge --regid=munge --init-groups mungekey --create --keyfile="$CLUSTER/munge/munge.key"
  setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
    --socket="$CLUSTER/munge/munge.socket" --key-file="$CLUSTER/munge/munge.key" \
    --log-file="$CLUSTER/munge/munged.log" --pid-file="$CLUSTER/munge/munged.pid" \
    --seed-file="$CLUSTER/munge/munged.seed" >"$CLUSTER/log/munged.out" 2>&1 &
  CLUSTER_PIDS+=($!)

  local ports
  ports=$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
  read -r ctld_port slurmd_port <<<"$ports"
  mkdir -p "$CLUSTER/tmp"
  cat >"$CLUSTER/slurm.conf" <<EOF
ClusterName=dtraintest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$CLUSTER/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$CLUSTER/state
SlurmdSpoolDir=$CLUSTER/spool
SlurmctldPidFile=$CLUSTER/slurmctld.pid
SlurmdPidFile=$CLUSTER/slurmd.pid
SlurmctldLogFile=$CLUSTER/log/slurmctld.log
SlurmdLogFile=$CLUSTER/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=pmix
# pmix names each step's directory spmix_appdir_<uid>_<job>.<step> under TmpFS;
# every test cluster numbers its jobs from 1, so each gets a TmpFS of its own
# (under /tmp, two clusters' job 7 would share one, and a killed step's
# leftover would stop the next cluster's job 7 from launching).
TmpFS=$CLUSTER/tmp
MailProg=/bin/true
# Jobs may be requeued (the default, written out: dtrain.sbatch relies on it).
JobRequeue=1
ReturnToService=2
KillWait=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$CLUSTER/slurm.conf
  for _ in $(seq 50); do [ -S "$CLUSTER/munge/munge.socket" ] && break; sleep 0.1; done
  [ -S "$CLUSTER/munge/munge.socket" ] || { cluster_logs; fail "munged did not start"; }
  slurmctld -D -f "$SLURM_CONF" >"$CLUSTER/log/slurmctld.out" 2>&1 &
  CLUSTER_PIDS+=($!)
  slurmd -D -N localhost -f "$SLURM_CONF" >"$CLUSTER/log/slurmd.out" 2>&1 &
  CLUSTER_PIDS+=($!)
  local state=""
  for _ in $(seq 100); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    [ "$state" = idle ] && return 0
    sleep 0.2
  done
  cluster_logs
  fail "the test cluster's node did not come up (state '$state')"
}

cluster_logs() {  # the daemons' logs, for a failure
  [ -n "$CLUSTER" ] || return 0
  local f
  for f in "$CLUSTER"/log/* "$CLUSTER"/munge/munged.log; do
    [ -s "$f" ] || continue
    echo "--- $f (last 30 lines)" >&2
    tail -n 30 "$f" >&2
  done
}

cluster_stop() {
  [ -n "$CLUSTER" ] || return 0
  local ids
  ids=$(squeue -h -o %i 2>/dev/null || true)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086
    scancel $ids 2>/dev/null || true
    for _ in $(seq 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  local pid i
  # slurmd, slurmctld, munged: the reverse of starting.
  for ((i = ${#CLUSTER_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${CLUSTER_PIDS[i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  CLUSTER_PIDS=()
  rm -rf "$CLUSTER"
  CLUSTER=""
}

job_field() {
  scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}

cluster_wait_job() {
  local id=$1 limit=$2 start=$SECONDS state
  while :; do
    state=$(job_field "$id" JobState)
    case $state in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | PREEMPTED | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) return 0 ;;
    esac
    if ((SECONDS - start > limit)); then
      cluster_logs
      fail "job $id still $state after ${limit}s"
    fi
    sleep 0.2
  done
}
