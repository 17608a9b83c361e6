# Crash safety: a run is SIGKILLed right after each file operation of its
# checkpoint writes in turn (every step of the protocol and a sample of the
# tensor writes, over two saves and a keep-N deletion); each time,
# `dtrain resume DIR` must find a complete, undamaged newest checkpoint (no
# fallback needed) and finish the run with the losses of an uninterrupted one.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
small=(--set model.n_layer=1 --set optim.warmup_steps=1 --set optim.decay_steps=8 --set train.threads=1
  --set checkpoint.every=2 --set checkpoint.keep=2 --set train.eval_every=0)

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/ref" "${small[@]}" --set train.steps=8
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/base" "${small[@]}" --set train.steps=4
# The file operations of resuming to step 8 (saves at 6 and 8, deleting 2 and 4).
cp -r "$WORK/base" "$WORK/list"
DTRAIN_TEST_KILL_AT_FILE_OP=0 expect_exit 0 "$DTRAIN" resume "$WORK/list" --out "$WORK/list" --set train.steps=8
grep -o "file operation [0-9]*: .*" "$WORK/err" >"$WORK/ops"
total=$(wc -l <"$WORK/ops")
[ "$total" -gt 100 ] || fail "only $total file operations listed"
grep -q "rename step_00000008.tmp -> step_00000008" "$WORK/ops" || fail "no publish of step 8 listed"
grep -q "delete step_00000004.old" "$WORK/ops" || fail "no deletion listed"
# Every protocol step, every 12th tensor write.
ks=$(awk '{k = $3 + 0; if ($4 != "write" || $5 != "rank_00000.h5" || k % 12 == 0) print k}' "$WORK/ops")

tried=0
for k in $ks; do
  rm -rf "$WORK/c" && cp -r "$WORK/base" "$WORK/c"
  # (through an inner shell, which reports the kill into $WORK/err rather than onto the test's output)
  DTRAIN_TEST_KILL_AT_FILE_OP=$k expect_exit 137 bash -c '"$@"; exit $?' _ \
    "$DTRAIN" resume "$WORK/c" --out "$WORK/c" --set train.steps=8
  what=$(sed -n "${k}p" "$WORK/ops")
  expect_exit 0 "$DTRAIN" resume "$WORK/c" --out "$WORK/c" --set train.steps=8
  # (the .tmp of the save that was cut short is reported as skipped: that is no damage)
  # (no grep -q after a pipe: under pipefail, the writer's SIGPIPE would hide a match)
  grep "warning" "$WORK/err" | grep -v "incomplete (a save that did not finish" >/dev/null &&
    { cat "$WORK/err"; fail "after a kill at $what: a complete checkpoint was damaged"; }
  cmp -s <(step_losses "$WORK/ref/metrics.jsonl") <(step_losses "$WORK/c/metrics.jsonl") ||
    fail "after a kill at $what: the losses differ from an uninterrupted run"
  for d in "$WORK"/c/checkpoints/step_*; do
    [[ "$d" == *.tmp || "$d" == *.old ]] && continue
    "$DTRAIN" inspect "$d" --verify >/dev/null 2>"$WORK/verr" || { cat "$WORK/verr"; fail "after a kill at $what: $d does not verify"; }
  done
  tried=$((tried + 1))
done
[ "$tried" -gt 25 ] || fail "only $tried kill points tried"
echo "checkpoint_atomic: ok ($tried kill points of $total file operations)"
