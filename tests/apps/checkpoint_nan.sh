# A non-finite loss stops the run with a message naming the step, after the
# checkpoints of earlier steps and before any checkpoint with it; with
# train.skip_nonfinite = true the step's update is skipped and the run goes on.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
opts=(--set train.steps=10 --set train.threads=1 --set checkpoint.every=2 --set checkpoint.keep=10)

DTRAIN_TEST_NAN_AT_STEP=7 expect_exit 1 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/a" "${opts[@]}"
expect_err "training loss became nan at step 7; stopping before the update"
[ "$(ls "$WORK/a/checkpoints" | tr '\n' ' ')" = "latest run step_00000002 step_00000004 step_00000006 " ] ||
  fail "checkpoints after a NaN at step 7: $(ls "$WORK/a/checkpoints")"
[ "$(step_losses "$WORK/a/metrics.jsonl" | tail -1 | cut -d' ' -f1)" = 6 ] || fail "a record after the NaN step"
expect_exit 0 "$DTRAIN" inspect "$WORK/a/checkpoints" --verify

DTRAIN_TEST_NAN_AT_STEP=7 expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/b" "${opts[@]}" --set train.skip_nonfinite=true
grep -q "step 7: training loss became nan; update skipped (train.skip_nonfinite)" "$WORK/out" || fail "no skip message"
python3 - "$WORK/b/metrics.jsonl" <<'PY' || fail "metrics do not record the skipped step"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in recs if "skipped" in r] == [7], recs
assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3, 4, 5, 6, 8, 9, 10]
PY
expect_exit 0 "$DTRAIN" inspect "$WORK/b/checkpoints" --verify
grep -q "optimizer    adamw (9 updates)" "$WORK/out" || fail "the skipped step counted as an update"
# The skipped step changed nothing: resuming its checkpoint at step 6 and skipping again gives the same run.
DTRAIN_TEST_NAN_AT_STEP=7 expect_exit 0 "$DTRAIN" resume "$WORK/b/checkpoints/step_00000006" --out "$WORK/c"
same_losses "$WORK/b/metrics.jsonl" "$WORK/c/metrics.jsonl"
echo "checkpoint_nan: ok"
