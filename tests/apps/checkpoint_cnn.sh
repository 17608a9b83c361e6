# The CNN's checkpoints carry its batch-norm running statistics (buffers, not
# optimised) and SGD momentum: a resumed run continues bit for bit, also its
# evaluation, which uses the running statistics; on 2 data-parallel ranks too.
source "$(dirname "$0")/common.bash"
cd "$DTRAIN_SOURCE_DIR"
[ -f data/mnist/train-images-idx3-ubyte ] || fail "MNIST missing: run tools/setup.sh"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
small=(--set model.stem_channels=8 --set "model.channels=[8, 16]" --set "model.blocks=[1, 1]"
  --set train.micro_batch=16 --set train.steps=8 --set optim.warmup_steps=2 --set train.eval_every=4
  --set train.eval_batches=4 --set train.threads=1 --set optim.name=sgd --set optim.lr=0.05)

expect_exit 0 "$DTRAIN" run configs/cnn-mnist.toml "${small[@]}" --out "$WORK/full" --set checkpoint.at_end=false
expect_exit 0 "$DTRAIN" run configs/cnn-mnist.toml "${small[@]}" --out "$WORK/a" --set checkpoint.every=4
expect_exit 0 "$DTRAIN" inspect "$WORK/a/checkpoints/step_00000004"
grep -qE "^  model/stem\.bn\.running_var +\(8\) +fp32 +1$" "$WORK/out" || { cat "$WORK/out"; fail "no running statistics in the checkpoint"; }
grep -qE "^  optim/sgd\.momentum/stem\.conv\.weight " "$WORK/out" || fail "no SGD momentum in the checkpoint"
grep -q "(data.train_images as the run read it)" "$WORK/out" || fail "inspect names the CNN's data by another key"
expect_exit 0 "$DTRAIN" resume "$WORK/a/checkpoints/step_00000004" --out "$WORK/b"
same_losses "$WORK/full/metrics.jsonl" "$WORK/b/metrics.jsonl"
cmp -s <(json_field "$WORK/full/metrics.jsonl" eval_accuracy | tail -1) <(json_field "$WORK/b/metrics.jsonl" eval_accuracy | tail -1) ||
  fail "the resumed evaluation differs (running statistics not restored?)"

# 2 data-parallel ranks: the same layout resumes bit for bit.
dp2=(--set parallel.dp=2 --set train.micro_batch=8)
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run configs/cnn-mnist.toml "${small[@]}" "${dp2[@]}" --out "$WORK/d" --set checkpoint.every=4
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/d/checkpoints/step_00000004" --out "$WORK/e"
same_losses "$WORK/d/metrics.jsonl" "$WORK/e/metrics.jsonl"
echo "checkpoint_cnn: ok"
