# Preemption: SIGTERM or SIGUSR1 (what Slurm sends before it kills a job), Ctrl-C (SIGINT) and
# a closed terminal (SIGHUP), make a run finish its step, write a checkpoint and exit with status 4 within
# a bounded time; resuming gives exactly the losses of an uninterrupted run.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
opts=(--set train.steps=400 --set train.threads=2 --set train.eval_every=100 --set log.every=100)

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/ref" "${opts[@]}" --set checkpoint.at_end=false
for sig in TERM USR1 INT HUP; do
  out="$WORK/p_$sig"
  # SIGINT and SIGHUP with their default actions, as in a terminal (a script's background
  # job would inherit SIGINT ignored, a test under nohup SIGHUP): Ctrl-C or a hangup on a run
  # stops it as preemption does.
  python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); signal.signal(signal.SIGHUP, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$DTRAIN" run "$WORK/tiny.toml" --out "$out" "${opts[@]}" >"$WORK/out" 2>"$WORK/err" &
  pid=$!
  wait_lines "$out/metrics.jsonl" 20
  start=$(date +%s%N)
  kill -"$sig" "$pid"
  set +e
  wait "$pid"
  rc=$?
  set -e
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  [ "$rc" -eq 4 ] || { cat "$WORK/err"; fail "SIG$sig: exit status $rc, expected 4"; }
  [ "$elapsed_ms" -lt 10000 ] || fail "SIG$sig: took $elapsed_ms ms to stop"
  step=$(sed -n "s/^dtrain: stopped by SIG$sig after step \([0-9]*\) of 400.*/\1/p" "$WORK/err")
  [ -n "$step" ] && [ "$step" -lt 400 ] || { cat "$WORK/err"; fail "SIG$sig: no 'stopped by' line"; }
  grep -q "dtrain resume $out/checkpoints" "$WORK/err" || fail "SIG$sig: no resume hint"
  grep -q "SIG$sig received: stopping after step $step with a checkpoint" "$WORK/out" || fail "SIG$sig: no log line"
  ck="$out/checkpoints/$(printf 'step_%08d' "$step")"
  [ -f "$ck/checkpoint.h5" ] || fail "SIG$sig: no checkpoint at step $step"
  [ "$(cat "$out/checkpoints/latest")" = "$(basename "$ck")" ] || fail "SIG$sig: latest is not step $step"
  expect_exit 0 "$DTRAIN" resume "$out/checkpoints"
  grep -q "resuming from $ck: step $step of 400" "$WORK/out" || fail "SIG$sig: did not resume from step $step"
  cmp -s <(step_losses "$WORK/ref/metrics.jsonl") <(step_losses "$out/metrics.jsonl") ||
    fail "SIG$sig: stop at step $step + resume differs from an uninterrupted run"
done
# A second Ctrl-C while the first one's checkpoint is written ends the process at once, saying so
# (killed by SIGINT: 130), and leaves the unfinished save aside (.tmp), never half a checkpoint.
python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
  "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/twice" --set model.n_layer=300 --set train.micro_batch=1 \
  --set train.steps=50 --set optim.warmup_steps=0 --set train.eval_every=0 --set log.every=1 --set train.threads=1 \
  >"$WORK/out" 2>"$WORK/err" &
pid=$!
wait_lines "$WORK/twice/metrics.jsonl" 1
kill -INT "$pid"
wait_glob "$WORK/twice/checkpoints/step_*.tmp"
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 130 ] || { cat "$WORK/err"; fail "a second Ctrl-C: exit $rc, expected 130"; }
expect_err "dtrain: interrupted again: stopped at once, without the checkpoint (the ones already written are whole)"
! compgen -G "$WORK/twice/checkpoints/step_*[0-9]" >/dev/null || fail "a half-written checkpoint: $(ls "$WORK/twice/checkpoints")"

# A stop signal that waits on a long save (over a second) is acknowledged at once, not only when
# the step loop takes it.
"$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/ack" --set model.n_layer=800 --set train.micro_batch=1 \
  --set train.steps=50 --set optim.warmup_steps=0 --set train.eval_every=0 --set checkpoint.every=1 \
  --set train.threads=1 >"$WORK/out" 2>"$WORK/err" &
pid=$!
wait_glob "$WORK/ack/checkpoints/step_*.tmp"
kill -USR1 "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 4 ] || { cat "$WORK/err"; fail "USR1 during a save: exit $rc, expected 4"; }
expect_err "dtrain: SIGUSR1 received: the run stops with a checkpoint once the step or save in progress ends"

# Started under nohup (SIGHUP ignored), a hangup changes nothing: the run goes on to its end.
python3 -c 'import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])' \
  "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/nohup" --set train.steps=60 --set log.every=1 --set train.threads=2 \
  >"$WORK/out" 2>"$WORK/err" &
pid=$!
wait_lines "$WORK/nohup/metrics.jsonl" 5
kill -HUP "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] && [ "$(step_losses "$WORK/nohup/metrics.jsonl" | wc -l)" -eq 60 ] ||
  { cat "$WORK/err"; fail "under nohup, SIGHUP stopped the run (exit $rc)"; }

# A stop at a step whose evaluation is due skips it (to stop sooner); the resumed run evaluates
# that step first, so every evaluation of an uninterrupted run is logged, once, with its value.
ev=(--set train.steps=300 --set train.eval_every=1 --set train.eval_batches=1 --set log.every=1 --set train.threads=2)
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/evref" "${ev[@]}" --set checkpoint.at_end=false
"$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/evstop" "${ev[@]}" >"$WORK/out" 2>"$WORK/err" &
pid=$!
wait_lines "$WORK/evstop/metrics.jsonl" 20  # (10 evaluations: a loss and an eval_loss per step)
kill -USR1 "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 4 ] || { cat "$WORK/err"; fail "eval_every=1: exit status $rc, expected 4"; }
expect_exit 0 "$DTRAIN" resume "$WORK/evstop/checkpoints"
evals() { python3 -c 'import json,sys; [print(r["step"], r["eval_loss"]) for r in map(json.loads, open(sys.argv[1])) if "eval_loss" in r]' "$1"; }
cmp -s <(evals "$WORK/evref/metrics.jsonl") <(evals "$WORK/evstop/metrics.jsonl") ||
  { diff <(evals "$WORK/evref/metrics.jsonl") <(evals "$WORK/evstop/metrics.jsonl") | head; fail "the evaluation at the stop's step is missing or differs"; }

# A stop during a long evaluation abandons it at its next batch (it used to run to its end and
# then train one more step: seconds past a preemption's grace): the run stops at that step with
# its checkpoint, and the resume evaluates the step first. Before the first step, nothing is saved.
gpt=("$DTRAIN_SOURCE_DIR/configs/gpt.toml" --set "data.train=$DTRAIN_SOURCE_DIR/data/kjv_train.bin"
  --set "data.val=$DTRAIN_SOURCE_DIR/data/kjv_val.bin" --set train.eval_batches=120 --set train.threads=2)  # 2-3 s
"$DTRAIN" run "${gpt[@]}" --out "$WORK/ev0" >"$WORK/out" 2>"$WORK/err" &
pid=$!
wait_lines "$WORK/out" 1  # the model line: the evaluation before step 1 has begun
sleep 0.5
start=$(date +%s%N)
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
[ "$rc" -eq 4 ] || { cat "$WORK/err"; fail "stop during the first evaluation: exit status $rc, expected 4"; }
grep -q "SIGTERM received: the evaluation in progress is abandoned; stopping before step 1, without a checkpoint" "$WORK/out" ||
  { cat "$WORK/out"; fail "no abandoned-evaluation line"; }
expect_err "dtrain: stopped by SIGTERM during the evaluation at step 0 of 1000; no checkpoint written (the run had done no step): run it again"
[ ! -e "$WORK/ev0/checkpoints" ] || fail "a checkpoint of no step"
[ "$ms" -lt 5000 ] || fail "the stop took $ms ms (a whole evaluation?)"
"$DTRAIN" run "${gpt[@]}" --out "$WORK/ev5" --set train.eval_every=5 --set optim.warmup_steps=2 >"$WORK/out" 2>"$WORK/err" &
pid=$!
wait_lines "$WORK/ev5/metrics.jsonl" 6  # step 0's evaluation and 5 steps: step 5's evaluation has begun
sleep 0.3  # into it (the step's own stop check is behind it)
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 4 ] || { cat "$WORK/err"; fail "stop during step 5's evaluation: exit status $rc, expected 4"; }
grep -q "SIGTERM received: the evaluation in progress is abandoned; stopping after step 5 with a checkpoint" "$WORK/out" ||
  { cat "$WORK/out"; fail "no abandoned-evaluation line at step 5"; }
[ -d "$WORK/ev5/checkpoints/step_00000005" ] || fail "no checkpoint of step 5"
expect_exit 0 "$DTRAIN" resume "$WORK/ev5/checkpoints" --set train.steps=6 --set optim.decay_steps=1000
[ "$(evals "$WORK/ev5/metrics.jsonl" | awk '{print $1}' | tr '\n' ' ')" = "0 5 6 " ] ||
  fail "evaluations after the resume: $(evals "$WORK/ev5/metrics.jsonl" | awk '{print $1}' | tr '\n' ' '), want 0 5 6"

# A stop during the last step's evaluation is a stop, not the end: exit 4 (what a requeue acts on)
# with the last step's checkpoint, and the resume makes the evaluation. It said "done" and exited 0,
# and the run's last evaluation was never made.
"$DTRAIN" run "${gpt[@]}" --out "$WORK/evlast" --set train.steps=5 --set optim.warmup_steps=2 >"$WORK/out" 2>"$WORK/err" &
pid=$!
wait_lines "$WORK/evlast/metrics.jsonl" 6  # step 0's evaluation and 5 steps: the last evaluation has begun
sleep 0.3
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 4 ] || { cat "$WORK/err"; fail "stop during the last step's evaluation: exit status $rc, expected 4"; }
expect_err "dtrain: stopped by SIGTERM after the last step (5 of 5), before its evaluation; checkpoint $WORK/evlast/checkpoints/step_00000005; evaluate it with: dtrain resume $WORK/evlast/checkpoints"
expect_exit 0 "$DTRAIN" resume "$WORK/evlast/checkpoints"
[ "$(evals "$WORK/evlast/metrics.jsonl" | awk '{print $1}' | tr '\n' ' ')" = "0 5 " ] ||
  fail "evaluations after the resume: $(evals "$WORK/evlast/metrics.jsonl" | awk '{print $1}' | tr '\n' ' '), want 0 5"

# A stop at the last step skips the final evaluation too (its metrics then lack it, as made here):
# the resume has no step left to run, and evaluates that step instead of saying "nothing to do".
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/last" --set train.steps=20 --set train.eval_every=0 \
  --set optim.warmup_steps=2 --set train.threads=2
want=$(evals "$WORK/last/metrics.jsonl" | tail -1)
grep -v eval_loss "$WORK/last/metrics.jsonl" >"$WORK/m" && mv "$WORK/m" "$WORK/last/metrics.jsonl"
expect_exit 0 "$DTRAIN" resume "$WORK/last/checkpoints"
[ "$(evals "$WORK/last/metrics.jsonl")" = "$want" ] || fail "the last step's evaluation: $(evals "$WORK/last/metrics.jsonl"), want $want"
# Resumed into another --out (no metrics to complete): no evaluation before the first step.
expect_exit 0 "$DTRAIN" resume "$WORK/evstop/checkpoints" --out "$WORK/elsewhere" --set train.steps=305
first=$(evals "$WORK/elsewhere/metrics.jsonl" | awk 'NR == 1 {print $1}')  # (awk reads all: no broken pipe)
[ "$first" = 301 ] || fail "resumed into another --out: first evaluation at step $first, expected 301"

# A signal to one rank of a job: every rank stops at the step boundary with the checkpoint,
# and rank 0's log names the rank and the signal (it said "a signal on another rank").
out="$WORK/one_rank"
mpirun --allow-run-as-root --oversubscribe -np 2 "$DTRAIN" run "$WORK/tiny.toml" --out "$out" "${opts[@]}" \
  --set parallel.dp=2 --set train.grad_accum=1 --set train.threads=1 --set log.every=1 >"$WORK/out" 2>"$WORK/err" &
mp=$!
wait_lines "$out/metrics.jsonl" 5
r1=""
for p in $(pgrep -P "$mp"); do tr '\0' '\n' </proc/"$p"/environ | grep -qx OMPI_COMM_WORLD_RANK=1 && r1=$p; done
[ -n "$r1" ] || { kill -KILL "$mp"; fail "no rank 1 under mpirun"; }
kill -USR1 "$r1"
set +e
wait "$mp"
rc=$?
set -e
[ "$rc" -eq 4 ] || { cat "$WORK/err"; fail "SIGUSR1 to rank 1: exit status $rc, expected 4"; }
grep -qE "SIGUSR1 on rank 1 received: stopping after step [0-9]+ with a checkpoint" "$WORK/out" ||
  { cat "$WORK/out"; fail "rank 0's log does not name the rank and the signal"; }
grep -qE "^dtrain: stopped by SIGUSR1 on rank 1 after step [0-9]+ of 400; checkpoint " "$WORK/err" ||
  { cat "$WORK/err"; fail "no 'stopped by SIGUSR1 on rank 1' line"; }
echo "checkpoint_preempt: ok"
