# Process faults (issue 14): a stop signal takes effect within seconds
# wherever the run is. SIGTERM during a long setup ends the run at once
# (exit 1, saying no checkpoint was written); SIGKILL to mpirun makes the
# orphaned ranks notice that their launcher is gone, checkpoint and stop; a
# rank blocked on a stopped peer leaves within its grace instead of
# parallel.timeout; a log reader that goes away (| head) does not end the run;
# SIGTERM, SIGINT and SIGHUP to mpirun checkpoint (and through tools/dtrain-mpirun exit 4).
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
bg=()  # background processes of this test: never left running, whatever fails
trap 'for p in "${bg[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
# wait_gone SECONDS PIDS...: fails unless every pid has exited within SECONDS.
wait_gone() {
  local limit=$1; shift
  for _ in $(seq 1 $((limit * 10))); do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
  fail "still running after $limit s: $*"
}
# wait_step FILE N: until metrics FILE has a training record of step >= N (60 s at most).
wait_step() {
  for _ in $(seq 1 600); do
    [ -f "$1" ] && [ -n "$(step_losses "$1" 2>/dev/null | awk -v n="$2" '$1 >= n')" ] && return 0
    sleep 0.1
  done
  fail "no step $2 in $1"
}

# 1. SIGTERM during setup (a 2000-layer model being built): exit 1 at once, no checkpoint.
"$DTRAIN" run "$WORK/tiny.toml" --set model.n_layer=2000 --set train.micro_batch=1 --set train.threads=1 \
  --out "$WORK/setup" >"$WORK/out" 2>"$WORK/err" &
pid=$!
bg+=($pid)
sleep 0.5  # the build takes seconds (about 3 s for 1000 layers under load, under 1 s idle: 2000 and 0.5 s)
kill -TERM $pid
t0=$(now)
set +e; wait $pid; rc=$?; set -e
[ $rc -eq 1 ] || { cat "$WORK/err"; fail "SIGTERM during setup: exit $rc, expected 1"; }
expect_err "stopped by SIGTERM during setup; no checkpoint written"
echo "setup: stopped $(elapsed "$t0") s after SIGTERM"
# A resume stopped while it loads its checkpoint says that what it would continue from is intact.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --set model.n_layer=500 --set train.micro_batch=1 --set train.threads=1 \
  --set train.steps=1 --set optim.warmup_steps=0 --set train.eval_every=0 --out "$WORK/big"
"$DTRAIN" resume "$WORK/big/checkpoints" --set train.steps=2 >"$WORK/out" 2>"$WORK/err" &
pid=$!
bg+=($pid)
sleep 0.3
kill -TERM $pid
set +e; wait $pid; rc=$?; set -e
[ $rc -eq 1 ] || { cat "$WORK/err"; fail "SIGTERM during a resume's setup: exit $rc, expected 1"; }
expect_err "stopped by SIGTERM during setup; no checkpoint written; the checkpoints are as they were: continue with: dtrain resume $WORK/big/checkpoints"
# A command that trains no run says which command stopped, not "during setup; no checkpoint".
"$DTRAIN" profile "$WORK/tiny.toml" --set model.n_layer=2000 --set train.micro_batch=1 --set train.threads=1 \
  --out "$WORK/prof" >"$WORK/out" 2>"$WORK/err" &
pid=$!
bg+=($pid)
sleep 0.5
kill -TERM $pid
set +e; wait $pid; rc=$?; set -e
[ $rc -eq 1 ] || { cat "$WORK/err"; fail "SIGTERM during profile: exit $rc, expected 1"; }
expect_err "stopped by SIGTERM (dtrain profile)"

# 2. SIGKILL to mpirun: the ranks notice, checkpoint at the next step and stop (each
# rank's stderr goes to a file of its own: mpirun, which forwarded it, is dead).
cat >"$WORK/wrap.sh" <<EOF
#!/bin/bash
exec "\$@" 2>"$WORK/rank_\${OMPI_COMM_WORLD_RANK}.err" >/dev/null
EOF
chmod +x "$WORK/wrap.sh"
long=(--set train.steps=100000 --set train.eval_every=0 --set train.threads=1 --set parallel.timeout=60 --set log.every=1)
# orphan NAME [WRAPPER]: a dp 2 run under mpirun (each rank started through
# WRAPPER, if given) whose mpirun is SIGKILLed after 3 steps; returns once both
# ranks are gone, with mpirun's pid in $mp and the kill's time in $t0.
orphan() {
  local name=$1 ranks
  shift
  "${MPIRUN[@]}" -np 2 "$@" "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 --set train.grad_accum=1 \
    "${long[@]}" --out "$WORK/$name" >/dev/null 2>&1 &
  mp=$!
  bg+=($mp)
  wait_step "$WORK/$name/metrics.jsonl" 3
  ranks=$(ps -o pid= --ppid $mp | tr '\n' ' ')
  [ -n "$ranks" ] || fail "no ranks under mpirun"
  bg+=($ranks)
  kill -KILL $mp
  t0=$(now)
  wait_gone 30 $ranks
}
orphan orphan "$WORK/wrap.sh"
echo "orphans: gone $(elapsed "$t0") s after SIGKILL to mpirun"
# Each rank noticed, or stopped with the checkpoint the other's notice
# started (only world rank 0 prints that stop line: rank 1 may say nothing).
for r in 0 1; do
  grep -qE "rank $r: the launcher \(process $mp\) is gone; stopping|stopped by SIG[A-Z0-9]+( on rank [0-9]+)? after step" \
    "$WORK/rank_$r.err" || [ "$r" = 1 ] || { cat "$WORK"/rank_*.err; fail "rank $r did not notice"; }
done
grep -q "the launcher (process $mp) is gone; stopping" "$WORK"/rank_*.err || fail "no rank noticed the launcher gone"
ls -d "$WORK"/orphan/checkpoints/step_* >/dev/null 2>&1 || fail "the orphaned ranks wrote no checkpoint"
# The same with the ranks' output going through mpirun (no wrapper, as a user
# runs it): with mpirun dead their stdout and stderr are pipes nobody reads,
# and writing the notice there must not end a rank before its checkpoint (it
# did: an EPIPE thrown in the watchdog's thread aborted both ranks).
orphan orphan2
ls -d "$WORK"/orphan2/checkpoints/step_* >/dev/null 2>&1 || fail "orphaned ranks writing to mpirun's dead pipes wrote no checkpoint"

# 3. A rank blocked on a stopped peer leaves within seconds of SIGTERM (not parallel.timeout = 60 s).
# Its message names the peer it waited on and the newest checkpoint to continue from.
"${MPIRUN[@]}" -np 2 "$WORK/wrap.sh" "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 --set train.grad_accum=1 \
  "${long[@]}" --set checkpoint.every=2 --out "$WORK/peer" >/dev/null 2>&1 &
mp=$!
bg+=($mp)
wait_step "$WORK/peer/metrics.jsonl" 5
set -- $(ps -o pid= --ppid $mp)
r0=$1 r1=$2
bg+=($r0 $r1)
kill -STOP "$r1"
sleep 0.5
kill -TERM "$r0"
t0=$(now)
wait_gone 25 "$r0"
echo "blocked rank: gone $(elapsed "$t0") s after SIGTERM"
kill -KILL "$r1" 2>/dev/null || true
wait $mp 2>/dev/null || true
grep -qE "rank 0: stopped by SIGTERM after .* s blocked within step [0-9]+, waiting in .* on group '[a-z]+' .*(: |but )world rank 1 \((last here|silent) .*; no checkpoint written; the newest checkpoint is $WORK/peer/checkpoints/step_[0-9]+ \(step [0-9]+\); continue with: dtrain resume $WORK/peer/checkpoints$" "$WORK/rank_0.err" ||
  { cat "$WORK/rank_0.err"; fail "rank 0 did not say why it stopped, on whom it waited and what to resume"; }

# 4. One run per directory: a second run or a resume into the directory of a run still going is
# refused naming its process; once that process is gone (even SIGKILLed), the directory is free.
"$DTRAIN" run "$WORK/tiny.toml" --set train.steps=100000 --set checkpoint.every=2 --set train.threads=1 \
  --out "$WORK/busy" >/dev/null 2>&1 &
first=$!
bg+=($first)
wait_step "$WORK/busy/metrics.jsonl" 2
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=10 --out "$WORK/busy"
expect_err "'$WORK/busy' is in use by another dtrain run (process $first on "
expect_exit 2 "$DTRAIN" resume "$WORK/busy/checkpoints" --set train.steps=100000
expect_err "is in use by another dtrain run (process $first on "
[ "$(grep -c "error" "$WORK/err")" -eq 1 ] || { cat "$WORK/err"; fail "more than one error line"; }
kill -KILL $first
wait $first 2>/dev/null || true
# Free: what stops a new run there now is the killed run's checkpoints, which a resume continues.
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=10 --set train.threads=1 --out "$WORK/busy"
expect_err "checkpoint.dir: '$WORK/busy/checkpoints' already holds "
! grep -q "in use" "$WORK/err" || fail "the lock outlived its SIGKILLed process"
newest=$(ls "$WORK/busy/checkpoints" | grep -E '^step_[0-9]+$' | sort | tail -1)
expect_exit 0 "$DTRAIN" resume "$WORK/busy/checkpoints" --set train.steps=$((10#${newest#step_} + 2)) \
  --set train.threads=1
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=6 --set train.threads=1 --out "$WORK/busy2"
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=6 --set train.threads=1 --out "$WORK/busy2" \
  --set checkpoint.dir="$WORK/busy2/ck2"
echo "lock: refused while held, free after SIGKILL"

# 5. SIGTERM, SIGINT or SIGHUP to mpirun: Open MPI passes SIGTERM on to the ranks, which
# checkpoint and stop with 4 (this tiny model's checkpoint fits in the second Open MPI gives them
# before its SIGKILL), but mpirun itself exits 1 whatever they return (its own status, set before
# any rank stops; README, "Exit status"). tools/dtrain-mpirun turns the three into SIGUSR1, which
# mpirun forwards without a SIGKILL and then reports the ranks' 4. (wrap.sh: rank 0's stderr.)
# sig_run OUT SIGNAL LAUNCHER...: the 2-rank run under LAUNCHER gets SIGNAL after its third
# step; sets rc to the launcher's status. SIGINT's and SIGHUP's default actions are restored (a
# background job of a script starts with SIGINT ignored, under nohup with SIGHUP ignored, and a
# trap cannot undo that).
sig_run() {
  local out=$1 sig=$2; shift 2
  python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); signal.signal(signal.SIGHUP, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
    "$@" --allow-run-as-root --oversubscribe -np 2 "$WORK/wrap.sh" "$DTRAIN" run "$WORK/tiny.toml" \
    --set parallel.dp=2 --set train.grad_accum=1 "${long[@]}" --out "$out" >/dev/null 2>"$WORK/launcher.err" &
  local pid=$!
  bg+=($pid)
  wait_step "$out/metrics.jsonl" 3
  bg+=($(ps -o pid= --ppid $pid))  # tools/dtrain-mpirun's mpirun, in a session of its own
  kill -"$sig" $pid
  t0=$(now)
  set +e; wait $pid; rc=$?; set -e
  # printed by rank 0 just before it returns 4, once every rank has checkpointed
  grep -q "dtrain: stopped by .* after step [0-9]* of 100000; checkpoint $out/checkpoints/step_" "$WORK/rank_0.err" ||
    { cat "$WORK/rank_0.err" "$WORK/launcher.err"; fail "SIG$sig: no 'stopped by' line"; }
  [ -f "$out/checkpoints/$(cat "$out/checkpoints/latest")/checkpoint.h5" ] || fail "SIG$sig: no checkpoint"
}
sig_run "$WORK/s_mpirun" TERM mpirun
echo "SIGTERM to mpirun: the ranks checkpointed and stopped ($(elapsed "$t0") s); mpirun exited $rc (Open MPI's own status)"
for sig in TERM INT HUP; do
  sig_run "$WORK/s_$sig" $sig "$DTRAIN_SOURCE_DIR/tools/dtrain-mpirun"
  [ $rc -eq 4 ] || { cat "$WORK/launcher.err"; fail "SIG$sig to tools/dtrain-mpirun: exit $rc, expected 4"; }
  echo "SIG$sig to tools/dtrain-mpirun: checkpoint and exit 4 in $(elapsed "$t0") s"
done

# 6. | head: the run goes on to the end when its reader leaves.
set +e
"$DTRAIN" run "$WORK/tiny.toml" --set train.steps=40 --set log.every=1 --set train.threads=1 --out "$WORK/pipe" 2>"$WORK/err" | head -1 >/dev/null
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || { cat "$WORK/err"; fail "run | head: exit $rc"; }
[ "$(step_losses "$WORK/pipe/metrics.jsonl" | tail -1 | cut -d' ' -f1)" = 40 ] || fail "run | head did not reach step 40"
echo "hostile_process: ok"
