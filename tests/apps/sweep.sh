# dtrain sweep: bad sweep files (one line naming the file and key, exit 2,
# nothing started); a grid with ASHA that stops a bad trial at its rung;
# a re-run that re-runs nothing; best.toml runs; a seeded random search that
# draws the same trials twice; a sweep killed with SIGKILL mid-trial, whose
# trial checkpoints (it is told when its sweep dies) and resumes on the re-run
# with the losses of an uninterrupted run; SIGINT stops the trials cleanly
# (exit 4) and a second sweep on the same directory is refused meanwhile;
# trials behind a launcher (mpirun -np 2) that ASHA stops through it.
source "$(dirname "$0")/common.bash"
T0=$SECONDS
make_tokens
tiny_gpt_config
cd "$WORK"
sed -i 's/^threads = 2/threads = 1/' tiny.toml

# json_trials DIR FIELD: "id value" of every trial of DIR/sweep.json.
json_trials() {
  python3 -c 'import json,sys
for t in json.load(open(sys.argv[1] + "/sweep.json"))["trials"]: print(t["id"], t[sys.argv[2]])' "$1" "$2"
}
starts() { grep -c "^dtrain sweep: trial" "$1/output.log"; }

# 1. Bad sweep files: one line each, naming the file, line and key; exit 2; no directory made.
bad() {  # bad EXPECTED-TEXT: the sweep file bad.toml must fail with it
  expect_exit 2 "$DTRAIN" sweep bad.toml --out "$WORK/bad"
  expect_err "$1"
  [ ! -e "$WORK/bad" ] || fail "a bad sweep file made $WORK/bad"
}
printf 'base = "tiny.toml"\n[space]\n"optim.lrr" = [1e-3]\n' >bad.toml
bad "dtrain: error: bad.toml:3: space.\"optim.lrr\": unknown config key (did you mean 'optim.lr'?)"
printf 'base = "tiny.toml"\ntrials = 2\n[space]\n"optim.lr" = { dist = "log-normal", low = 1e-4, high = 1e-2 }\n' >bad.toml
bad 'bad.toml:4: space."optim.lr".dist: expected one of "uniform", "log-uniform", got "log-normal"'
printf 'base = "tiny.toml"\ntrials = 2\n[space]\n"optim.lr" = { dist = "log-uniform", low = 0, high = 1e-2 }\n' >bad.toml
bad 'bad.toml:4: space."optim.lr": log-uniform needs low > 0'
printf 'base = "tiny.toml"\n[space]\n' >bad.toml
bad "bad.toml:2: space: empty"
printf 'base = "nope.toml"\n[space]\n"optim.lr" = [1e-3]\n' >bad.toml
bad "bad.toml: base: nope.toml: no such config file"
mkdir -p adir && mkfifo afifo
printf 'base = "adir"\n[space]\n"optim.lr" = [1e-3]\n' >bad.toml
bad "bad.toml: base: adir: a directory, not a config file"
printf 'base = "afifo"\n[space]\n"optim.lr" = [1e-3]\n' >bad.toml
bad "bad.toml: base: afifo: a FIFO, not a config file"
printf 'base = "tiny.toml"\n[space]\n"model.n_head" = [2, 3]\n' >bad.toml
bad "bad.toml: trial 1 (model.n_head=3): "
# A training config given as the sweep file: one line saying so (it was one per key).
cp tiny.toml bad.toml
bad "bad.toml: not a sweep file but a training config (it has [model], [data], [train]"
[ "$(wc -l <"$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "a training config as a sweep file: not one line"; }
# A file that one trial reads is that trial's problem; one that every trial reads, the base's.
printf 'base = "tiny.toml"\n[space]\n"data.val" = ["%s", "%s/none.bin"]\n' "$WORK/tok_val.bin" "$WORK" >bad.toml
bad "bad.toml: trial 1 (data.val=\"$WORK/none.bin\"): data.val: data file '$WORK/none.bin' not found"
printf 'base = "tiny.toml"\nset = ["data.val=%s/none.bin"]\n[space]\n"optim.lr" = [1e-3, 1e-2]\n' "$WORK" >bad.toml
bad "bad.toml: base tiny.toml: data.val: data file '$WORK/none.bin' not found"
printf 'base = "tiny.toml"\nlauncher = ["mpirn", "-np", "2"]\n[space]\n"optim.lr" = [1e-3]\n' >bad.toml
bad "bad.toml: launcher: mpirn: no such program on PATH"
printf 'base = "tiny.toml"\nlauncher = [""]\n[space]\n"optim.lr" = [1e-3]\n' >bad.toml
bad "bad.toml: launcher: its first element (the program) is empty"
printf 'base = "tiny.toml"\nlauncher = ["%s"]\n[space]\n"optim.lr" = [1e-3]\n' "$WORK/adir" >bad.toml
bad "bad.toml: launcher: $WORK/adir: not an executable file"
printf 'base = "tiny.toml"\nset = ["train.step=40"]\n[space]\n"optim.lr" = [1e-3, 2e-3]\n' >bad.toml
bad "bad.toml: set: \"train.step=40\": unknown key 'train.step' (did you mean 'train.steps'?)"
printf 'base = "tiny.toml"\nmetrc = "loss"\n[space]\n"optim.lr" = [1e-3]\n' >bad.toml
bad "bad.toml:2: metrc: unknown sweep key (did you mean 'metric'?)"
[ "$(wc -l <"$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "one problem, one line"; }
# An sbatch that fails (no reachable controller): its error, and no trial said to start.
mkdir -p "$WORK/fakebin"
printf '#!/bin/sh\necho "sbatch: error: Unable to contact slurm controller" >&2\nexit 1\n' >"$WORK/fakebin/sbatch"
chmod +x "$WORK/fakebin/sbatch"
printf 'base = "tiny.toml"\n[space]\n"optim.lr" = [1e-3, 3e-3]\n' >slurm.toml
PATH="$WORK/fakebin:$PATH" expect_exit 1 "$DTRAIN" sweep slurm.toml --out "$WORK/slurm" --slurm
expect_err "--slurm: sbatch failed (status 1): sbatch: error: Unable to contact slurm controller"
! grep -q "trial . starts" "$WORK/out" "$WORK/err" || fail "a trial said to start when sbatch failed"
echo "sweep: 1. bad sweep files refused before anything starts ($((SECONDS - T0))s)"

# 2. A grid with early stopping: trial 1's learning rate is far too small, and
# ASHA stops it at the rung (step 20), keeping the better half.
t=$SECONDS
cat >grid.toml <<'EOT'
base = "tiny.toml"
metric = "eval_loss"
mode = "min"
concurrency = 1
set = ["train.steps=1000", "train.eval_every=20", "train.eval_batches=1", "log.every=500"]
[space]
"optim.lr" = [3e-3, 1e-7]
"optim.warmup_steps" = [5]
[asha]
rungs = [20]
reduction = 2
EOT
expect_exit 0 "$DTRAIN" sweep grid.toml --out g
json_trials g state >states
grep -qx "0 finished" states && grep -qx "1 stopped" states || { cat states "$WORK/out" >&2; fail "grid: expected trial 0 finished, trial 1 stopped"; }
grep -qx "1 20" <(json_trials g stopped_at) || fail "grid: trial 1 not stopped at the rung"
steps1=$(json_trials g steps | sed -n 's/^1 //p')
[ "$steps1" -ge 20 ] && [ "$steps1" -lt 1000 ] || fail "grid: trial 1 ran $steps1 steps"
[ "$(json_trials g steps | sed -n "s/^0 //p")" -eq 1000 ] || fail "grid: trial 0 did not run to the end"
grep -q "stopped by SIGUSR1 after step" g/trial_001/output.log || fail "grid: trial 1 was not stopped cleanly"
grep -q "stopped by ASHA at step 20" "$WORK/out" || fail "grid: no ASHA line"
grep -qE "^1 +1e-07 +5 +[0-9.]+ +[0-9]+ +$steps1 +stopped at 20 \(ASHA\)" "$WORK/out" || { cat "$WORK/out"; fail "grid: table row of trial 1"; }
grep -qE "^0\* +0.003 +5 +" "$WORK/out" || { cat "$WORK/out"; fail "grid: trial 0 is not marked best"; }
grep -q "^lr = 0.003$" g/best.toml || fail "grid: best.toml lacks the best lr"
expect_exit 0 "$DTRAIN" run g/best.toml --set train.steps=6 --out "$WORK/best-run"
# Again: nothing runs.
expect_exit 0 "$DTRAIN" sweep grid.toml --out g
grep -q "resuming: 2 of 2 trials already done" "$WORK/out" || fail "re-run: not resumed"
[ "$(starts g/trial_000)" -eq 1 ] && [ "$(starts g/trial_001)" -eq 1 ] || fail "re-run: a done trial ran again"
# A damaged record is refused, naming it.
mkdir damaged && echo '{"trials": [' >damaged/sweep.json
expect_exit 2 "$DTRAIN" sweep grid.toml --out damaged
expect_err "damaged/sweep.json: not a sweep record dtrain can read"
# The same sweep with another `set` is another sweep: refused (a resumed trial would continue
# on another schedule than its siblings ran).
sed 's/"log.every=500"/"log.every=400"/' grid.toml >grid2.toml
expect_exit 2 "$DTRAIN" sweep grid2.toml --out g
expect_err "g/sweep.json: the sweep there ran with base $WORK/tiny.toml and set [train.steps=1000, train.eval_every=20, train.eval_batches=1, log.every=500]; grid2.toml gives"
# A fresh sweep whose trial directory holds a run it did not start: refused, not resumed as its own.
mkdir -p foreign && cp -r g/trial_000 foreign/trial_000
expect_exit 2 "$DTRAIN" sweep grid.toml --out foreign
expect_err "foreign/trial_000: holds a run (checkpoints or metrics.jsonl) that this sweep did not start"
[ ! -e foreign/sweep.json ] || fail "a refused sweep wrote its record"
# A rung no trial goes past stops nothing: refused.
sed 's/^rungs = \[20\]/rungs = [1000]/' grid.toml >late.toml
expect_exit 2 "$DTRAIN" sweep late.toml --out late
expect_err "late.toml: asha: rung 1000 is not before the trials' last step (train.steps = 1000)"
# eval_loss never recorded (eval_every = 0): said as such (it read "every 0 steps").
sed 's/"train.eval_every=20"/"train.eval_every=0"/' grid.toml >noeval.toml
expect_exit 2 "$DTRAIN" sweep noeval.toml --out noeval
expect_err "noeval.toml: asha: eval_loss is never recorded (train.eval_every = 0), so no rung can compare it"
echo "sweep: 2. grid with ASHA stopping trial 1 at step 20 (of $steps1 run); re-run runs nothing ($((SECONDS - t))s)"

# 3. Random search: reproducible draws, two trials at once.
t=$SECONDS
cat >random.toml <<'EOT'
base = "tiny.toml"
trials = 4
concurrency = 2
seed = 3
set = ["train.steps=20"]
[space]
"optim.lr" = { dist = "log-uniform", low = 1e-4, high = 1e-2 }
"model.n_layer" = [1, 2]
EOT
expect_exit 0 "$DTRAIN" sweep random.toml --out r1
[ "$(json_trials r1 state | grep -c finished)" -eq 4 ] || fail "random: not every trial finished"
python3 - r1/sweep.json <<'PY' || fail "random: values out of bounds"
import json, sys
for t in json.load(open(sys.argv[1]))["trials"]:
    v = dict(o.split("=") for o in t["overrides"])
    assert 1e-4 <= float(v["optim.lr"]) <= 1e-2 and v["model.n_layer"] in ("1", "2"), v
PY
# Five trials on the same directory: the first four are drawn again the same
# (else the record would not match) and only the fifth runs.
sed -i 's/^trials = 4/trials = 5/' random.toml
expect_exit 0 "$DTRAIN" sweep random.toml --out r1
grep -q "resuming: 4 of 5 trials already done" "$WORK/out" || { cat "$WORK/out"; fail "random: the draws changed"; }
[ "$(json_trials r1 state | grep -c finished)" -eq 5 ] || fail "random: trial 4 did not finish"
for i in 0 1 2 3; do [ "$(starts r1/trial_00$i)" -eq 1 ] || fail "random: trial $i ran again"; done
# Another seed draws other values: a different sweep for this directory.
sed -i 's/^seed = 3/seed = 4/' random.toml
expect_exit 2 "$DTRAIN" sweep random.toml --out r1
expect_err "a different sweep (give another --out)"
echo "sweep: 3. random search, 4 trials 2 at a time, extended to 5 ($((SECONDS - t))s)"

# 4. SIGKILL to the sweep mid-trial: the running trial is told (SIGUSR1 when
# its parent dies), checkpoints; the re-run resumes it, and its losses are
# those of an uninterrupted run.
t=$SECONDS
cat >long.toml <<'EOT'
base = "tiny.toml"
concurrency = 1
set = ["train.steps=1000", "train.eval_every=500", "train.eval_batches=1", "log.every=500"]
[space]
"optim.lr" = [3e-3, 1e-2]
EOT
"$DTRAIN" sweep long.toml --out k >k.out 2>&1 &
sweep_pid=$!
for _ in $(seq 300); do
  n=$(grep -c '"loss"' k/trial_001/metrics.jsonl 2>/dev/null || true)
  [ "${n:-0}" -ge 100 ] && break
  sleep 0.05
done
kill -9 "$sweep_pid"
wait "$sweep_pid" 2>/dev/null || true
for _ in $(seq 100); do grep -q "stopped by SIGUSR1 after step" k/trial_001/output.log && break; sleep 0.1; done
grep -q "stopped by SIGUSR1 after step" k/trial_001/output.log || { cat k.out k/trial_001/output.log; fail "kill -9: trial 1 did not checkpoint"; }
grep -qx "1 running" <(json_trials k state) || fail "kill -9: trial 1 not recorded as running"
expect_exit 0 "$DTRAIN" sweep long.toml --out k
grep -q "trial 1 resumes from its checkpoint" "$WORK/out" || { cat "$WORK/out"; fail "kill -9: trial 1 did not resume"; }
[ "$(starts k/trial_000)" -eq 1 ] && [ "$(starts k/trial_001)" -eq 2 ] || fail "kill -9: trials started $(starts k/trial_000) and $(starts k/trial_001) times"
grep -qx "1 finished" <(json_trials k state) || fail "kill -9: trial 1 did not finish"
expect_exit 0 "$DTRAIN" run tiny.toml --set train.steps=1000 --set train.eval_every=500 --set train.eval_batches=1 \
  --set log.every=500 --set optim.lr=1e-2 --out ref
same_losses ref/metrics.jsonl k/trial_001/metrics.jsonl
[ "$(step_losses k/trial_001/metrics.jsonl | wc -l)" -eq 1000 ] || fail "kill -9: trial 1's metrics do not hold each step once"
echo "sweep: 4. kill -9 mid-trial, re-run resumes trial 1 from its checkpoint, same losses ($((SECONDS - t))s)"

# 5. SIGINT: the trials stop cleanly, exit 4; a second sweep meanwhile is refused.
t=$SECONDS
"$DTRAIN" sweep long.toml --out i >i.out 2>&1 &
sweep_pid=$!
for _ in $(seq 300); do
  n=$(grep -c '"loss"' i/trial_000/metrics.jsonl 2>/dev/null || true)
  [ "${n:-0}" -ge 50 ] && break
  sleep 0.05
done
expect_exit 2 "$DTRAIN" sweep long.toml --out i
expect_err "i: another dtrain sweep is running in this directory (process $sweep_pid on $(hostname), since "
kill -INT "$sweep_pid"
status=0
wait "$sweep_pid" || status=$?
[ "$status" -eq 4 ] || { cat i.out; fail "SIGINT: the sweep exited $status, expected 4"; }
grep -qx "0 interrupted" <(json_trials i state) || { cat i.out; fail "SIGINT: trial 0 not recorded as interrupted"; }
grep -q "stopped by SIGUSR1 after step" i/trial_000/output.log || fail "SIGINT: trial 0 did not checkpoint"
[ ! -e i/trial_001 ] || fail "SIGINT: trial 1 started"
grep -q "run \`dtrain sweep long.toml --out i\` again to resume it" i.out || fail "SIGINT: no resume hint"
echo "sweep: 5. SIGINT stops the trials with a checkpoint, exit 4 ($((SECONDS - t))s)"

# 6. Trials behind a launcher: each an mpirun of 2 ranks; ASHA's stop goes
# through mpirun (which passes SIGUSR1 on to the ranks).
t=$SECONDS
cat >mpi.toml <<'EOT'
base = "tiny.toml"
ranks = 2
launcher = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2"]
set = ["parallel.dp=2", "train.grad_accum=1", "train.steps=600", "train.eval_every=20", "train.eval_batches=1", "log.every=500"]
[space]
"optim.lr" = [3e-3, 1e-7]
[asha]
rungs = [20]
reduction = 2
EOT
expect_exit 0 "$DTRAIN" sweep mpi.toml --out m
grep -qx "0 finished" <(json_trials m state) && grep -qx "1 stopped" <(json_trials m state) || { cat "$WORK/out"; fail "mpirun: expected trial 0 finished, trial 1 stopped"; }
grep -q "layout dp=2 tp=1 pp=1 on 2 ranks" m/trial_000/output.log || fail "mpirun: trial 0 did not run on 2 ranks"
# Rank 0 names SIGUSR1, or the other rank's signal when that rank saw it first.
grep -qE "stopped by SIGUSR1( on rank [0-9]+)? after step" m/trial_001/output.log ||
  { cat m/trial_001/output.log; fail "mpirun: trial 1 was not stopped cleanly"; }
# best.toml runs as the trials ran: behind the launcher.
grep -q "^# base tiny.toml; run it with: mpirun --allow-run-as-root --oversubscribe -np 2 dtrain run m/best.toml" \
  m/best.toml || { head -2 m/best.toml; fail "mpirun: best.toml's command lacks the launcher"; }
echo "sweep: 6. trials under mpirun -np 2, ASHA's stop through mpirun ($((SECONDS - t))s)"
# 7. The shipped example (configs/sweep/gpt-lr.toml) on the shipped base, shortened:
# its keys and values hold against configs/gpt.toml, and it runs to a best trial.
t=$SECONDS
mkdir -p shipped/sweep && cp "$DTRAIN_SOURCE_DIR/configs/gpt.toml" shipped/ && cp "$DTRAIN_SOURCE_DIR/configs/sweep/gpt-lr.toml" shipped/sweep/
sed -i -e 's/"train.steps=300", "train.eval_every=100"/"train.steps=6", "train.eval_every=2", "train.eval_batches=1", "model.n_layer=1", "train.threads=1"/' \
  -e 's/"optim.warmup_steps=30"/"optim.warmup_steps=1"/' -e 's/^rungs = .*/rungs = [2, 4]/' -e 's/^trials = 6/trials = 3/' \
  shipped/sweep/gpt-lr.toml
grep -q '"train.steps=6"' shipped/sweep/gpt-lr.toml && grep -q '^rungs = \[2, 4\]' shipped/sweep/gpt-lr.toml ||
  fail "configs/sweep/gpt-lr.toml changed: update this test's shortening"
(cd "$DTRAIN_SOURCE_DIR" && expect_exit 0 "$DTRAIN" sweep "$WORK/shipped/sweep/gpt-lr.toml" --out "$WORK/shipped_runs")
[ -f "$WORK/shipped_runs/best.toml" ] || fail "the shipped sweep wrote no best.toml"
echo "sweep: 7. the shipped example sweep ($((SECONDS - t))s)"
echo "sweep: ok in $((SECONDS - T0))s"
