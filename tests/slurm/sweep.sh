# dtrain sweep --slurm on a private one-machine Slurm (cluster.bash): a grid
# of two trials runs as one job array of tools/slurm/dtrain.sbatch, one task
# at a time (ASHA's decisions then do not depend on which arrives first); ASHA stops the trial with a far too small learning rate at
# its rung (its task is signalled and cancelled); the table and best.toml
# come out as for local trials, and running the sweep again re-runs nothing;
# a sweep killed while its array runs is re-run and watches the tasks again;
# SIGINT stops the tasks with a checkpoint, and the re-run resumes them.
# Exits 77 (skipped) where the machine cannot run a cluster.
source "$(dirname "$0")/../apps/common.bash"
source "$(dirname "$0")/cluster.bash"
T0=$SECONDS
missing=$(cluster_missing)
if [ -n "$missing" ]; then
  echo "SKIP: cannot start a test Slurm: $missing"
  exit 77
fi
trap 'code=$?; [ $code -eq 0 ] || { cluster_logs; tail -n 30 "$WORK"/s/slurm/*.out "$WORK"/s/trial_*/output.log 2>/dev/null >&2; }
  cluster_stop; rm -rf "$WORK"; exit $code' EXIT
trap 'exit 143' TERM INT
cluster_start
echo "slurm sweep: cluster up in $((SECONDS - T0))s"
make_tokens
tiny_gpt_config
chmod 755 "$WORK"
cd "$WORK"
cat >grid.toml <<'EOT'
base = "tiny.toml"
concurrency = 1
set = ["train.steps=1000", "train.eval_every=20", "train.eval_batches=1", "log.every=200"]
[space]
"optim.lr" = [3e-3, 1e-7]
[asha]
rungs = [20]
reduction = 2
[slurm]
options = ["-n", "1"]
EOT
json_trials() {
  python3 -c 'import json,sys
for t in json.load(open(sys.argv[1] + "/sweep.json"))["trials"]: print(t["id"], t[sys.argv[2]])' "$1" "$2"
}
expect_exit 0 timeout 240 "$DTRAIN" sweep grid.toml --slurm --out s
grep -q "submitted 2 trials as Slurm job array" "$WORK/out" || fail "no job array submitted"
json_trials s state >states
grep -qx "0 finished" states || { cat states; fail "trial 0 should finish"; }
grep -qx "1 stopped" states || { cat states; fail "trial 1 (lr 1e-7) should be stopped by ASHA"; }
steps1=$(json_trials s steps | sed -n 's/^1 //p')
[ "$steps1" -ge 20 ] && [ "$steps1" -lt 1000 ] || fail "trial 1 ran $steps1 steps"
grep -q "got SIGTERM" s/trial_001/slurm.log || { cat s/trial_001/slurm.log; fail "trial 1: its batch shell was not signalled"; }
[ -z "$(squeue -h -o %i)" ] || { squeue; fail "tasks left in the queue"; }
grep -q "dtrain finished (exit 0)" s/trial_000/slurm.log || fail "trial 0: dtrain.sbatch did not run it to the end"
[ -f s/best.toml ] || fail "no best.toml"
expect_exit 0 "$DTRAIN" sweep grid.toml --slurm --out s
grep -q "resuming: 2 of 2 trials already done" "$WORK/out" || { cat "$WORK/out"; fail "re-run: not resumed"; }
! grep -q "submitted" "$WORK/out" || fail "re-run submitted a job"
echo "slurm sweep: 1. 2 trials as a job array, trial 1 stopped by ASHA at step 20 ($steps1 run) ($((SECONDS - T0))s)"

# 2. The sweep killed (SIGKILL) while its array runs: the re-run finds the
# tasks still in the queue and watches them to the end, submitting nothing.
t=$SECONDS
cat >two.toml <<'EOT'
base = "tiny.toml"
concurrency = 2
set = ["train.steps=1500", "train.eval_every=500", "train.eval_batches=1", "log.every=500"]
[space]
"optim.lr" = [3e-3, 1e-2]
EOT
"$DTRAIN" sweep two.toml --slurm --out k >k.out 2>&1 &
sweep_pid=$!
for _ in $(seq 600); do
  n=$(grep -c '"loss"' k/trial_000/metrics.jsonl 2>/dev/null || true)
  [ "${n:-0}" -ge 20 ] && break
  sleep 0.1
done
kill -9 "$sweep_pid"
wait "$sweep_pid" 2>/dev/null || true
expect_exit 0 timeout 240 "$DTRAIN" sweep two.toml --slurm --out k
grep -q "trial 0 is still running" "$WORK/out" || { cat k.out "$WORK/out"; fail "re-run: trial 0 not watched again"; }
! grep -q "submitted" "$WORK/out" || { cat "$WORK/out"; fail "re-run submitted the trials again"; }
[ "$(json_trials k state | grep -c finished)" -eq 2 ] || { cat "$WORK/out"; fail "re-run: not both trials finished"; }
[ "$(grep -c "attempt" k/trial_000/slurm.log)" -eq 1 ] || fail "trial 0 ran more than once"
[ -z "$(squeue -h -o %i)" ] || { squeue; fail "tasks left in the queue"; }
echo "slurm sweep: 2. sweep killed while its array ran; the re-run watched the tasks to the end ($((SECONDS - t))s)"

# 3. SIGINT to the sweep: its tasks checkpoint and leave the queue (exit 4);
# the re-run submits them again and dtrain.sbatch resumes them.
t=$SECONDS
"$DTRAIN" sweep two.toml --slurm --out i >i.out 2>&1 &
sweep_pid=$!
for _ in $(seq 600); do
  n=$(grep -c '"loss"' i/trial_000/metrics.jsonl 2>/dev/null || true)
  [ "${n:-0}" -ge 20 ] && break
  sleep 0.1
done
kill -INT "$sweep_pid"
status=0
wait "$sweep_pid" || status=$?
[ "$status" -eq 4 ] || { cat i.out; fail "SIGINT: the sweep exited $status, expected 4"; }
grep -qx "0 interrupted" <(json_trials i state) || { cat i.out; fail "SIGINT: trial 0 not interrupted"; }
[ -z "$(squeue -h -o %i)" ] || { squeue; fail "SIGINT: tasks left in the queue"; }
expect_exit 0 timeout 240 "$DTRAIN" sweep two.toml --slurm --out i
[ "$(json_trials i state | grep -c finished)" -eq 2 ] || { cat "$WORK/out"; fail "after SIGINT: not both trials finished"; }
grep -q "attempt 1 .*: resume from" i/trial_000/slurm.log || { cat i/trial_000/slurm.log; fail "after SIGINT: trial 0 did not resume"; }
echo "slurm sweep: 3. SIGINT: tasks checkpointed and left the queue; the re-run resumed them ($((SECONDS - t))s)"
echo "slurm sweep: ok in $((SECONDS - T0))s"
