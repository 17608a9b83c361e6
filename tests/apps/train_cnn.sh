# Trains the MNIST CNN briefly: classifier metrics present and sensible, 3-channel
# input accepted, image/model mismatches rejected with the file named.
source "$(dirname "$0")/common.bash"
cd "$DTRAIN_SOURCE_DIR"
[ -f data/mnist/train-images-idx3-ubyte ] || fail "MNIST missing: run tools/setup.sh"

expect_exit 0 "$DTRAIN" run configs/cnn-mnist.toml --out "$WORK/a" --set train.steps=40 \
  --set optim.warmup_steps=5 --set train.eval_batches=10 --set train.threads=2
grep -q "img/s" "$WORK/out" || fail "no images/s in progress"
python3 - "$WORK/a/metrics.jsonl" <<'PY' || fail "bad classifier metrics"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if "eval_loss" in l]
assert all("eval_accuracy" in r for r in ev), ev
assert ev[-1]["eval_accuracy"] > 0.7, ev[-1]
assert ev[-1]["eval_loss"] < ev[0]["eval_loss"], ev
PY

# The model expects 3 channels, MNIST has 1: a clear input error naming the file.
expect_exit 2 "$DTRAIN" run configs/cnn-mnist.toml --out "$WORK/b" --set model.in_channels=3 \
  --set "data.mean=[0.5]" --set "data.std=[0.5]"
expect_err "train-images-idx3-ubyte"
echo "train_cnn: ok"
