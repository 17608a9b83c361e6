# tools/slurm/dtrain.sbatch on a real Slurm: a private one-machine cluster
# (cluster.bash) runs
#   1. a 2-task data-parallel job to the end, whose losses must equal one
#      process's, in runs/<job name>-<job id>/ of the submit directory;
#   2. the same with DTRAIN_LAUNCHER=mpirun and pipeline parallelism;
#   3. stub binaries in place of dtrain: every task's rank, local rank, GPU
#      (CUDA_VISIBLE_DEVICES split by local rank) and arguments, under srun and
#      mpirun, and an error exit, which must end the job without a requeue;
#   4. a job signalled mid-run the way Slurm warns of its time limit
#      (SIGUSR1 to the batch shell): dtrain checkpoints and exits 4, the job
#      requeues itself, resumes from the checkpoint and finishes with the
#      losses of an uninterrupted run (same layout, to the bit). Skipped,
#      saying so, for a binary without `dtrain resume`.
# Exits 77 (skipped) where the machine cannot run a cluster (not root, no
# slurm-wlm/munge). Daemons and jobs it started are stopped on any exit.
source "$(dirname "$0")/../apps/common.bash"
source "$(dirname "$0")/cluster.bash"
SBATCH_SCRIPT=$DTRAIN_SOURCE_DIR/tools/slurm/dtrain.sbatch
T0=$SECONDS

missing=$(cluster_missing)
if [ -n "$missing" ]; then
  echo "SKIP: cannot start a test Slurm: $missing"
  exit 77
fi
# SLURM_TEST_KEEP=DIR keeps the work directory (jobs' outputs, runs/) there.
trap 'code=$?; [ $code -eq 0 ] || { cluster_logs; job_logs; }; cluster_stop
  [ -z "${SLURM_TEST_KEEP:-}" ] || cp -r "$WORK" "$SLURM_TEST_KEEP"; rm -rf "$WORK"; exit $code' EXIT
trap 'exit 143' TERM INT  # ctest's timeout: still stop what was started
cluster_start
echo "slurm: cluster up in $((SECONDS - T0))s"

make_tokens
tiny_gpt_config
chmod 755 "$WORK"
cd "$WORK"
export DTRAIN_BIN=$DTRAIN
base=(train.steps=12 train.eval_every=6 model.n_head=4)

job_logs() {  # every job's output (dtrain.sbatch's lines and dtrain's), for a failure
  local f
  for f in "$WORK"/*-[0-9]*.out; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
  done
  return 0
}

# submit ARGS...: sbatch from $WORK, prints the job id.
submit() { sbatch --parsable "$@" | cut -d';' -f1; }

# job_ok ID: the job completed with exit 0, never requeued.
job_ok() {
  cluster_wait_job "$1" 60
  local state exit restarts
  state=$(job_field "$1" JobState) exit=$(job_field "$1" ExitCode) restarts=$(job_field "$1" Restarts)
  [ "$state" = COMPLETED ] && [ "$exit" = 0:0 ] && [ "$restarts" = 0 ] ||
    { cat "$WORK"/*-"$1".out >&2; fail "job $1: $state, exit $exit, $restarts restarts"; }
}

# same_losses A B: the "loss" records of two metrics files, equal to 1e-5.
same_losses() {
  json_field "$1" loss >"$WORK/a.loss"
  json_field "$2" loss >"$WORK/b.loss"
  python3 - "$WORK/a.loss" "$WORK/b.loss" <<'PY' || fail "losses of $2 differ from $1"
import sys
a = [float(x) for x in open(sys.argv[1])]
b = [float(x) for x in open(sys.argv[2])]
assert len(a) == len(b) and a, (len(a), len(b))
for i, (x, y) in enumerate(zip(a, b)):
    assert abs(x - y) <= 1e-5 * abs(x), (i, x, y)
PY
}

# The one-process reference: grad_accum 2 x micro 4 = dp 2 x micro 4.
sets=()
for s in "${base[@]}"; do sets+=(--set "$s"); done
expect_exit 0 "$DTRAIN" run tiny.toml "${sets[@]}" --set train.threads=1 --out "$WORK/one"

# 1. Two tasks, srun, data parallel, to the end.
t=$SECONDS
job=$(DTRAIN_SET="${base[*]} parallel.dp=2 train.grad_accum=1" submit -n 2 -J tiny "$SBATCH_SCRIPT" tiny.toml)
job_ok "$job"
run=$WORK/runs/tiny-$job
[ -f "$run/metrics.jsonl" ] || { cat "$WORK/tiny-$job.out" >&2; fail "job $job: no $run/metrics.jsonl"; }
same_losses "$WORK/one/metrics.jsonl" "$run/metrics.jsonl"
grep -q "layout dp=2 tp=1 pp=1 on 2 ranks" "$WORK/tiny-$job.out" || fail "job $job: no 2-rank layout line"
grep -q "srun --mpi=pmix" "$run/slurm.log" || fail "job $job: not launched by srun --mpi=pmix"
grep -q "dtrain finished (exit 0)" "$run/slurm.log" || fail "job $job: slurm.log does not say it finished"
echo "slurm: 1. srun dp=2 job $job finished with one process's losses ($((SECONDS - t))s)"

# 2. mpirun as the launcher, pipeline parallel; overrides after the config.
t=$SECONDS
job=$(DTRAIN_LAUNCHER=mpirun DTRAIN_OUT=pp submit -n 2 -J pp "$SBATCH_SCRIPT" tiny.toml "${sets[@]}" --set parallel.pp=2)
job_ok "$job"
same_losses "$WORK/one/metrics.jsonl" "$WORK/pp/metrics.jsonl"
grep -q "mpirun --bind-to none -np 2" "$WORK/pp/slurm.log" || fail "job $job: not launched by mpirun"
echo "slurm: 2. mpirun pp=2 job $job finished with one process's losses ($((SECONDS - t))s)"

# 3. What each task is given, through a stub in place of dtrain.
t=$SECONDS
cat >"$WORK/stub.sh" <<'EOF'
#!/usr/bin/env bash
rank=${OMPI_COMM_WORLD_RANK:-$SLURM_PROCID}
echo "rank $rank local $DTRAIN_LOCAL_RANK gpu ${CUDA_VISIBLE_DEVICES:-none} args $*" >>"$STUB_LOG.$rank"
exit "${STUB_EXIT:-0}"
EOF
chmod +x "$WORK/stub.sh"
job=$(CUDA_VISIBLE_DEVICES=4,5 STUB_LOG=$WORK/stub DTRAIN_BIN=$WORK/stub.sh DTRAIN_SET="train.steps=7" \
  submit -n 2 -J stub "$SBATCH_SCRIPT" tiny.toml --verbose)
job_ok "$job"
grep -q "^rank 0 local 0 gpu 4 args run tiny.toml --out $WORK/runs/stub-$job --set checkpoint.dir=$WORK/runs/stub-$job/checkpoints --set train.threads=1 --set train.steps=7 --verbose$" "$WORK/stub.0" ||
  { cat "$WORK/stub.0" >&2; fail "rank 0: wrong local rank, GPU or arguments"; }
grep -q "^rank 1 local 1 gpu 5 " "$WORK/stub.1" || { cat "$WORK/stub.1" >&2; fail "rank 1: wrong local rank or GPU"; }
job=$(CUDA_VISIBLE_DEVICES=4,5 STUB_LOG=$WORK/mpistub DTRAIN_BIN=$WORK/stub.sh DTRAIN_LAUNCHER=mpirun \
  submit -n 2 -J mpistub "$SBATCH_SCRIPT" tiny.toml)
job_ok "$job"
grep -q "^rank 0 local 0 gpu 4 args run" "$WORK/mpistub.0" && grep -q "^rank 1 local 1 gpu 5 args run" "$WORK/mpistub.1" ||
  { cat "$WORK"/mpistub.* >&2; fail "mpirun: wrong local rank or GPU"; }
job=$(STUB_EXIT=2 STUB_LOG=$WORK/fail DTRAIN_BIN=$WORK/stub.sh submit -n 1 -J fail "$SBATCH_SCRIPT" tiny.toml)
cluster_wait_job "$job" 60
[ "$(job_field "$job" JobState)" = FAILED ] && [ "$(job_field "$job" ExitCode)" = 2:0 ] &&
  [ "$(job_field "$job" Restarts)" = 0 ] || { cat "$WORK/fail-$job.out" >&2; fail "job $job: an error exit must fail the job unrequeued"; }
grep -q "dtrain failed (exit 2: see README, \"Exit status\"): not requeued" "$WORK/fail-$job.out" ||
  { cat "$WORK/fail-$job.out" >&2; fail "job $job: the log does not say why it was not requeued"; }
# A launcher that exits 0 without starting a rank (srun's "task 0 launch
# failed" after a requeue does that) is not a finished run: it is requeued,
# here not (DTRAIN_MAX_RESTARTS=0), and the job fails naming why.
mkdir -p "$WORK/fakebin"
printf '#!/bin/sh\necho "srun: error: task 0 launch failed: Unspecified error" >&2\nexit 0\n' >"$WORK/fakebin/srun"
chmod +x "$WORK/fakebin/srun"
job=$(PATH="$WORK/fakebin:$PATH" DTRAIN_MAX_RESTARTS=0 STUB_LOG=$WORK/nolaunch DTRAIN_BIN=$WORK/stub.sh \
  submit -n 1 -J nolaunch "$SBATCH_SCRIPT" tiny.toml)
cluster_wait_job "$job" 60
[ "$(job_field "$job" JobState)" = FAILED ] && [ ! -e "$WORK/nolaunch.0" ] ||
  { cat "$WORK/nolaunch-$job.out" >&2; fail "job $job: a launch that started no rank must not finish the job"; }
grep -q "srun exited 0 but started no rank of dtrain (a launch failure)" "$WORK/nolaunch-$job.out" ||
  { cat "$WORK/nolaunch-$job.out" >&2; fail "job $job: the log does not name the launch failure"; }
# A stop that lands while dtrain is still starting: it exits 1 ("stopped by SIGUSR1 during
# setup"; plain mpirun, signalled itself, ends its ranks with 1 too). Its newest checkpoint is
# untouched, so the job is requeued, not failed; the stub finishes on the next attempt. And a
# job requeued from outside (`scontrol requeue`, which is what stops that attempt) is said so,
# not reported as a failed requeue.
cat >"$WORK/setupstub.sh" <<'EOF'
#!/usr/bin/env bash
[ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && exit 0
trap 'echo "dtrain: stopped by SIGUSR1 during setup; no checkpoint written" >&2; exit 1' USR1
: >"$STUB_LOG.started"
for _ in $(seq 600); do sleep 0.1; done
exit 0
EOF
chmod +x "$WORK/setupstub.sh"
# until_requeued_done JOB: waits for its requeue, then starts each pending attempt at once (a
# requeued job waits ~2 minutes, Slurm's BeginTime; a requeue after a failed launch, see
# dtrain.sbatch, waits again), and waits for the end.
until_requeued_done() {
  for _ in $(seq 300); do
    [ "$(job_field "$1" Restarts)" = 1 ] && break
    sleep 0.1
  done
  for _ in $(seq 450); do
    state=$(job_field "$1" JobState)
    case $state in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL) break ;; esac
    [ "$state" != PENDING ] || scontrol update JobId="$1" StartTime=now 2>/dev/null || true
    sleep 0.2
  done
  cluster_wait_job "$1" 10
}
for how in batch-signal scontrol-requeue; do
  rm -f "$WORK/setup.started"
  job=$(STUB_LOG=$WORK/setup DTRAIN_BIN=$WORK/setupstub.sh DTRAIN_OUT=$WORK/setup-$how \
    submit -n 1 -J "setup-$how" "$SBATCH_SCRIPT" tiny.toml)
  for _ in $(seq 300); do
    [ -e "$WORK/setup.started" ] && break
    sleep 0.1
  done
  [ -e "$WORK/setup.started" ] || { cat "$WORK/setup-$how-$job.out" >&2; fail "job $job: the stub never started"; }
  if [ "$how" = batch-signal ]; then scancel --batch --signal=USR1 "$job"; else scontrol requeue "$job"; fi
  until_requeued_done "$job"
  [ "$(job_field "$job" JobState)" = COMPLETED ] && [ "$(job_field "$job" Restarts)" = 1 ] ||
    { cat "$WORK/setup-$how/slurm.log" >&2; fail "job $job ($how): a stop during setup must requeue the job"; }
  if [ "$how" = batch-signal ]; then
    grep -q "dtrain ended with status 1 after SIGUSR1, before writing a checkpoint" "$WORK/setup-$how/slurm.log" ||
      { cat "$WORK/setup-$how/slurm.log" >&2; fail "job $job: the log does not say why it was requeued"; }
  else  # (Slurm's SIGTERM reaches the task itself too)
    grep -q "was requeued already (state .*scontrol requeue from outside" "$WORK/setup-$how/slurm.log" &&
      ! grep -q "scontrol requeue failed" "$WORK/setup-$how/slurm.log" ||
      { cat "$WORK/setup-$how/slurm.log" >&2; fail "job $job: a requeue from outside reported as a failure"; }
  fi
done
# Without DTRAIN_BIN (nor dtrain on PATH): the build/dtrain of the checkout the
# script was submitted from, also when the job has arguments with slashes
# (Slurm's Command= then holds them after the script's path).
mkdir -p "$WORK/checkout/tools/slurm" "$WORK/checkout/build"
cp "$SBATCH_SCRIPT" "$WORK/checkout/tools/slurm/"
cp "$WORK/stub.sh" "$WORK/checkout/build/dtrain"
if ! command -v dtrain >/dev/null 2>&1; then
  job=$(unset DTRAIN_BIN; STUB_LOG=$WORK/found submit -n 1 -J found "$WORK/checkout/tools/slurm/dtrain.sbatch" "$WORK/tiny.toml" --verbose)
  job_ok "$job"
  grep -q "args run $WORK/tiny.toml .* --verbose$" "$WORK/found.0" ||
    { cat "$WORK/found-$job.out" >&2; fail "job $job: the submitted checkout's build/dtrain was not found"; }
fi
echo "slurm: 3. ranks, local ranks, GPUs, arguments, an error exit, a launch that started nothing, the checkout's binary ($((SECONDS - t))s)"

# 4. Signalled mid-run, requeued, resumed: the losses of an uninterrupted run.
if ! grep -qE '^ +resume ' <("$DTRAIN" --help); then  # (not a pipe: grep -q's early exit + pipefail)
  echo "slurm: 4. SKIPPED: this dtrain has no 'dtrain resume' (checkpoints): the signal ->" \
    "checkpoint -> requeue -> resume test needs it"
  echo "slurm: ok in $((SECONDS - T0))s (part 4 skipped)"
  exit 0
fi
t=$SECONDS
long=(train.steps=300 train.eval_every=100 log.every=50 parallel.dp=2 train.grad_accum=1
  model.context_length=64 model.n_embd=64 model.n_head=4 checkpoint.keep=2)
job=$(DTRAIN_SET="${long[*]}" submit -n 2 -J long "$SBATCH_SCRIPT" tiny.toml)
run=$WORK/runs/long-$job
# Wait for some steps, then warn the batch shell as --signal=B:USR1@N would.
for _ in $(seq 300); do
  n=$(grep -c '"loss"' "$run/metrics.jsonl" 2>/dev/null || true)
  [ "${n:-0}" -ge 20 ] && break
  sleep 0.1
done
scancel --batch --signal=USR1 "$job"
until_requeued_done "$job"
[ "$(job_field "$job" Restarts)" = 1 ] || { cat "$WORK/long-$job.out" >&2; fail "job $job was not requeued"; }
[ "$(job_field "$job" JobState)" = COMPLETED ] || { cat "$WORK/long-$job.out" >&2; fail "job $job did not complete after its requeue"; }
grep -q "got SIGUSR1" "$run/slurm.log" && grep -q "dtrain stopped after writing a checkpoint (exit 4)" "$run/slurm.log" &&
  grep -q "requeueing job $job" "$run/slurm.log" && grep -q "attempt 2 .*: resume" "$run/slurm.log" &&
  grep -q "dtrain finished (exit 0)" "$run/slurm.log" || { cat "$run/slurm.log" >&2; fail "job $job: slurm.log lacks a step of signal -> requeue -> resume -> finish"; }
# The reference: the same run uninterrupted, same layout (mpirun, outside
# Slurm): the same losses to the bit, each step once (cmp of the whole list).
lsets=()
for s in "${long[@]}"; do lsets+=(--set "$s"); done
expect_exit 0 mpirun --allow-run-as-root --oversubscribe -np 2 "$DTRAIN" run tiny.toml "${lsets[@]}" \
  --set train.threads=1 --out "$WORK/long-ref"
json_field "$WORK/long-ref/metrics.jsonl" loss >"$WORK/ref.loss"
json_field "$run/metrics.jsonl" loss >"$WORK/long.loss"
[ "$(wc -l <"$WORK/ref.loss")" -eq 300 ] || fail "reference run: expected 300 losses"
cmp -s "$WORK/ref.loss" "$WORK/long.loss" || { diff "$WORK/ref.loss" "$WORK/long.loss" | head >&2; fail "job $job: losses differ from an uninterrupted run"; }
echo "slurm: 4. job $job signalled, checkpointed, requeued, resumed, same losses ($((SECONDS - t))s)"
echo "slurm: ok in $((SECONDS - T0))s"
