# checkpoint.async = true: checkpoints written by a background thread.
#  - the training is unchanged (same losses as without checkpoints), and
#    resuming from an async checkpoint (on 1 rank and on tp=2) continues
#    bit for bit; the log says how long training stalled and the write took;
#  - crash safety: SIGKILL after each protocol step and some tensor writes
#    of a background save, then `dtrain resume`: a complete newest checkpoint
#    and the losses of an uninterrupted run (as checkpoint_atomic.sh);
#  - preemption (SIGUSR1) waits for the write in flight, writes its own and
#    exits 4; resuming gives the uninterrupted losses (as checkpoint_preempt.sh);
#  - a write that fails in the background is reported, the run goes on, and
#    the previous checkpoint stays `latest` and verifies.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PY=/usr/bin/python3
make_tokens
tiny_gpt_config
small=(--set model.n_layer=1 --set optim.warmup_steps=1 --set optim.decay_steps=8 --set train.threads=1
  --set checkpoint.every=2 --set checkpoint.keep=2 --set train.eval_every=0)
async=(--set checkpoint.async=true)
same_losses() { cmp -s <(step_losses "$1") <(step_losses "$2") || fail "$3: losses differ from an uninterrupted run"; }

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/ref" "${small[@]}" --set train.steps=8 --set checkpoint.every=0 \
  --set checkpoint.at_end=false
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/a" "${small[@]}" "${async[@]}" --set train.steps=8
same_losses "$WORK/ref/metrics.jsonl" "$WORK/a/metrics.jsonl" "async checkpoints every 2 steps"
grep -qE "^checkpoint step 4: training stalled [0-9.]+ s \(host copy\); writing in the background" "$WORK/out" ||
  fail "no stall line: $(cat "$WORK/out")"
grep -qE "^checkpoint step 4 -> $WORK/a/checkpoints/step_00000004 \(.*; training stalled [0-9.]+ s, written in [0-9.]+ s in the background\)" \
  "$WORK/out" || fail "no completion line: $(cat "$WORK/out")"
[ "$(cat "$WORK/a/checkpoints/latest")" = step_00000008 ] || fail "latest is not the final checkpoint"
[ -d "$WORK/a/checkpoints/step_00000006" ] || fail "keep = 2 should leave steps 6 and 8"
! compgen -G "$WORK/a/checkpoints/step_00000006/done_*" >/dev/null || fail "the done markers were published"
"$DTRAIN" inspect "$WORK/a/checkpoints/step_00000006" --verify >/dev/null || fail "step 6 does not verify"
for np in 1 2; do
  rm -rf "$WORK/r$np" && mkdir -p "$WORK/r$np" && cp -r "$WORK/a/checkpoints/step_00000006" "$WORK/r$np/"
  cp "$WORK/a/metrics.jsonl" "$WORK/r$np/metrics.jsonl"
  set_tp=(); [ "$np" = 2 ] && set_tp=(--set parallel.tp=2)
  expect_exit 0 "${MPIRUN[@]}" -np $np "$DTRAIN" resume "$WORK/r$np/step_00000006" --out "$WORK/r$np" "${set_tp[@]}"
  if [ "$np" = 1 ]; then same_losses "$WORK/ref/metrics.jsonl" "$WORK/r1/metrics.jsonl" "resume of an async checkpoint"; fi
done
"$PY" - "$WORK/ref/metrics.jsonl" "$WORK/r2/metrics.jsonl" <<'PY' || fail "tp=2 resume of an async checkpoint drifts"
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:])
assert all(abs(b[s] - a[s]) <= 1e-5 * abs(a[s]) for s in b), [(s, a[s], b[s]) for s in b]
PY

# SIGKILL during background saves (steps 6 and 8 after resuming at 4; 6 is async).
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/base" "${small[@]}" "${async[@]}" --set train.steps=4
cp -r "$WORK/base" "$WORK/list"
DTRAIN_TEST_KILL_AT_FILE_OP=0 expect_exit 0 "$DTRAIN" resume "$WORK/list" --out "$WORK/list" --set train.steps=8
grep -o "file operation [0-9]*: .*" "$WORK/err" >"$WORK/ops"
grep -q "rename step_00000006.tmp -> step_00000006" "$WORK/ops" || fail "no publish of step 6 listed"
end6=$(grep -n "mkdir step_00000008.tmp" "$WORK/ops" | cut -d: -f1)  # step 6's save ends before
# The protocol steps of the background save of step 6 and two of its tensor writes.
ks=$(awk -v end="$end6" '{k = $3 + 0; if (k < end && ($4 != "write" || $5 != "rank_00000.h5" || k % 40 == 0)) print k}' "$WORK/ops")
tried=0
for k in $ks; do
  rm -rf "$WORK/c" && cp -r "$WORK/base" "$WORK/c"
  DTRAIN_TEST_KILL_AT_FILE_OP=$k expect_exit 137 bash -c '"$@"; exit $?' _ \
    "$DTRAIN" resume "$WORK/c" --out "$WORK/c" --set train.steps=8
  what=$(sed -n "${k}p" "$WORK/ops")
  expect_exit 0 "$DTRAIN" resume "$WORK/c" --out "$WORK/c" --set train.steps=8
  # (the .tmp of the save that was cut short is reported as skipped: that is no damage)
  # (no grep -q after a pipe: under pipefail, the writer's SIGPIPE would hide a match)
  grep "warning" "$WORK/err" | grep -v "incomplete (a save that did not finish" >/dev/null &&
    { cat "$WORK/err"; fail "after a kill at $what: a complete checkpoint was damaged"; }
  same_losses "$WORK/ref/metrics.jsonl" "$WORK/c/metrics.jsonl" "after a kill at $what"
  tried=$((tried + 1))
done
[ "$tried" -ge 8 ] || fail "only $tried kill points tried"

# Preemption: the stop waits for the write in flight and writes its own.
opts=(--set train.steps=150 --set train.threads=2 --set train.eval_every=50 --set log.every=50)
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/pref" "${opts[@]}" --set checkpoint.at_end=false
out="$WORK/p"
"$DTRAIN" run "$WORK/tiny.toml" --out "$out" "${opts[@]}" "${async[@]}" --set checkpoint.every=3 >"$WORK/out" 2>"$WORK/err" &
pid=$!
for _ in $(seq 600); do
  [ -f "$out/metrics.jsonl" ] && [ "$(wc -l <"$out/metrics.jsonl")" -ge 20 ] && break
  sleep 0.05
done
kill -USR1 "$pid"
set +e; wait "$pid"; rc=$?; set -e
[ "$rc" -eq 4 ] || { cat "$WORK/err"; fail "SIGUSR1 with async checkpoints: exit status $rc, expected 4"; }
step=$(sed -n "s/^dtrain: stopped by SIGUSR1 after step \([0-9]*\) of 150.*/\1/p" "$WORK/err")
[ -n "$step" ] || { cat "$WORK/err"; fail "no 'stopped by' line"; }
[ "$(cat "$out/checkpoints/latest")" = "$(printf 'step_%08d' "$step")" ] || fail "latest is not the stop step $step"
expect_exit 0 "$DTRAIN" resume "$out/checkpoints"
same_losses "$WORK/pref/metrics.jsonl" "$out/metrics.jsonl" "SIGUSR1 at step $step + resume"

# A background write that fails: reported, the run goes on, the previous checkpoint stays newest.
cp -r "$WORK/base" "$WORK/f"
n=$(grep -c . "$WORK/ops")
# (grep -m1, not | head -1: 7 KB of matches is two writes, and a SIGPIPE on the second one
# ends this script silently under pipefail)
k=$(grep -n -m1 "write rank_00000.h5" "$WORK/ops" | cut -d: -f1)  # the first tensor of step 6
DTRAIN_TEST_FAIL_AT_FILE_OP=$k expect_exit 0 "$DTRAIN" resume "$WORK/f" --out "$WORK/f" --set train.steps=7 \
  --set checkpoint.at_end=false
expect_err "warning: checkpoint step 6 failed in the background: "
expect_err "the newest checkpoint is still $WORK/f/checkpoints/step_00000004"
[ "$(cat "$WORK/f/checkpoints/latest")" = step_00000004 ] || fail "latest moved to a failed checkpoint"
[ ! -e "$WORK/f/checkpoints/step_00000006" ] && [ ! -e "$WORK/f/checkpoints/step_00000006.tmp" ] ||
  fail "the failed checkpoint left files"
expect_exit 0 "$DTRAIN" inspect "$WORK/f/checkpoints" --verify
grep -q "step         4" "$WORK/out" || fail "the newest checkpoint is not step 4"
[ "$(step_losses "$WORK/f/metrics.jsonl" | tail -1 | cut -d' ' -f1)" = 7 ] || fail "the run stopped after the failure"
echo "checkpoint_async: ok ($tried kill points)"
