# Disk faults (issue 14): a full disk while writing a checkpoint is one line
# naming the file and the cause, exit 1, and the previous checkpoint stays the
# newest (HDF5 used to print ~118 lines and crash in its exit clean-up); the
# incomplete step_N.tmp a crash leaves is reported when resuming, not
# skipped silently. The full disk is a small tmpfs: the test needs root (as
# CI has) and says SKIP otherwise (exit 77).
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
small="$WORK/small"
trap 'umount "$small" 2>/dev/null || true; rm -rf "$WORK"' EXIT
args=(--set train.threads=1 --set checkpoint.every=2 --set train.eval_every=0 --set optim.warmup_steps=1)

# The space a run to step 2 takes (one checkpoint); the tmpfs holds it and half another.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${args[@]}" --set train.steps=2 --out "$WORK/probe"
one=$(du -sb "$WORK/probe/checkpoints/step_00000002" | cut -f1)
all=$(du -sb "$WORK/probe" | cut -f1)
mkdir -p "$small"
if ! mount -t tmpfs -o size=$((all + one / 2 + 8192)) tmpfs "$small" 2>/dev/null; then
  echo "SKIP: cannot mount a tmpfs (needs root)"
  exit 77
fi
expect_exit 1 "$DTRAIN" run "$WORK/tiny.toml" "${args[@]}" --set train.steps=10 --out "$small/r"
expect_err "dtrain: error: checkpoint of step 4: cannot"
expect_err "$small/r/checkpoints/step_00000004.tmp/"
expect_err "No space left on device"
expect_err "; the newest checkpoint is $small/r/checkpoints/step_00000002 (step 2); continue with: dtrain resume $small/r/checkpoints"
[ "$(wc -l <"$WORK/err")" -eq 1 ] || { cat "$WORK/err"; fail "a full disk gave $(wc -l <"$WORK/err") lines, expected 1"; }
[ "$(cat "$small/r/checkpoints/latest")" = step_00000002 ] || fail "latest is not step_00000002"
[ ! -e "$small/r/checkpoints/step_00000004" ] && [ ! -e "$small/r/checkpoints/step_00000004.tmp" ] ||
  fail "a partial step 4 was left: $(ls "$small/r/checkpoints")"
cp -r "$small/r" "$WORK/r"
umount "$small"
# A resumed run whose first save fails in its new --out: the checkpoint it resumed from is what
# is left, and the command continues it there again (the --out holds no checkpoint to resume).
mount -t tmpfs -o size=$((all - one + one / 2 + 8192)) tmpfs "$small"
expect_exit 1 "$DTRAIN" resume "$WORK/r/checkpoints/step_00000002" "${args[@]}" --set train.steps=10 --out "$small/r3"
expect_err "No space left on device"
expect_err "; the newest checkpoint is $WORK/r/checkpoints/step_00000002 (step 2); continue with: dtrain resume $WORK/r/checkpoints/step_00000002 --out $small/r3"
umount "$small"
expect_exit 0 "$DTRAIN" inspect "$WORK/r/checkpoints" --verify
grep -q "step         2" "$WORK/out" || fail "the newest checkpoint is not step 2"

# An incomplete step_N.tmp (a save cut short) is reported when resuming.
mkdir "$WORK/r/checkpoints/step_00000006.tmp"
cp "$WORK/r/checkpoints/step_00000002/rank_00000.h5" "$WORK/r/checkpoints/step_00000006.tmp/"
expect_exit 0 "$DTRAIN" resume "$WORK/r/checkpoints" --out "$WORK/r2" --set train.steps=4
expect_err "warning: skipped $WORK/r/checkpoints/step_00000006.tmp: incomplete (a save that did not finish"
grep -q "resuming from $WORK/r/checkpoints/step_00000002" "$WORK/out" || fail "did not resume from step 2"
expect_exit 0 "$DTRAIN" inspect "$WORK/r/checkpoints"
grep -q "skipped $WORK/r/checkpoints/step_00000006.tmp: incomplete" "$WORK/out" || fail "inspect does not mention the .tmp"
# The run's directory removed while it runs: its metrics are made again whole (read back from the
# open file), its config too, said once; the next checkpoint goes where it belongs.
"$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/gone" --set train.steps=150 --set log.every=1 --set train.eval_every=0 \
  --set checkpoint.every=100 --set train.threads=1 >"$WORK/out" 2>"$WORK/err" &
pid=$!
wait_lines "$WORK/gone/metrics.jsonl" 20
rm -rf "$WORK/gone"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$WORK/err"; fail "a removed run directory: exit $rc"; }
grep -q "warning: '$WORK/gone/metrics.jsonl' was deleted while the run wrote it (its directory removed?): made again" \
  "$WORK/out" || { cat "$WORK/out"; fail "no warning for the removed directory"; }
[ "$(step_losses "$WORK/gone/metrics.jsonl" | wc -l)" -eq 150 ] || fail "the metrics were not made again whole"
[ -f "$WORK/gone/config.toml" ] && [ -f "$WORK/gone/checkpoints/step_00000150/checkpoint.h5" ] ||
  fail "config.toml or the last checkpoint missing: $(ls -R "$WORK/gone" | head)"
echo "hostile_disk: ok"
