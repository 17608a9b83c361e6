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

# A CNN whose batch-norm running variance overflows while its loss stays finite (one bright pixel
# in zero images normalised by a tiny std: the batch's statistics normalise it, the running ones
# become inf). It trained on to its first save, which refused the model; a skipped step kept them.
python3 - "$WORK/spike" <<'PY'
import random, struct, sys
random.seed(0)
def write(prefix, images, labels):
    with open(prefix + "-images", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(images), 28, 28))
        for i in images: f.write(bytes(i))
    with open(prefix + "-labels", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + bytes(labels))
images = [bytearray(784) for _ in range(64)]
images[5][14 * 28 + 14] = 255
write(sys.argv[1] + "_train", images, [random.randrange(10) for _ in range(64)])
write(sys.argv[1] + "_val", [bytearray(784) for _ in range(32)], [random.randrange(10) for _ in range(32)])
PY
cnn=(--set "data.train_images=$WORK/spike_train-images" --set "data.train_labels=$WORK/spike_train-labels"
  --set "data.val_images=$WORK/spike_val-images" --set "data.val_labels=$WORK/spike_val-labels"
  --set "data.mean=[0.0]" --set "data.std=[1e-20]" --set model.stem_channels=8 --set "model.channels=[8, 16]"
  --set "model.blocks=[1, 1]" --set train.micro_batch=8 --set train.steps=8 --set optim.warmup_steps=1
  --set train.eval_every=4 --set train.threads=1 --set checkpoint.every=1 --set checkpoint.keep=10)
expect_exit 1 "$DTRAIN" run "$DTRAIN_SOURCE_DIR/configs/cnn-mnist.toml" "${cnn[@]}" --out "$WORK/s1"
expect_err "batch norm's running statistic stem.bn.running_var became non-finite at step "
expect_err "; stopping before the update"
expect_exit 0 "$DTRAIN" inspect "$WORK/s1/checkpoints" --verify
# Under mpirun, said once (the ranks agree on it; no MPI_Abort), and skipped whole with the option.
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
expect_exit 1 timeout 120 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$DTRAIN_SOURCE_DIR/configs/cnn-mnist.toml" "${cnn[@]}" \
  --set parallel.dp=2 --set train.micro_batch=4 --out "$WORK/s2"
[ "$(grep -c "became non-finite" "$WORK/err")" = 1 ] || { cat "$WORK/err"; fail "the failure not said once"; }
! grep -q "MPI_ABORT" "$WORK/err" || fail "an agreed failure aborted the job"
expect_exit 0 timeout 120 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$DTRAIN_SOURCE_DIR/configs/cnn-mnist.toml" "${cnn[@]}" \
  --set parallel.dp=2 --set train.micro_batch=4 --set train.skip_nonfinite=true --set log.every=1 --out "$WORK/s3"
grep -q "became non-finite; update skipped (train.skip_nonfinite)" "$WORK/out" || fail "no skip message"
grep -qE "^step +[0-9]+/8 \| loss [0-9.]+ \| lr [0-9.e+-]+ \| update skipped \|" "$WORK/out" || fail "no skipped progress line"
expect_exit 0 "$DTRAIN" inspect "$WORK/s3/checkpoints" --verify
echo "checkpoint_nan: ok"
