# bf16 mixed precision on the CNN, as precision.sh does for the GPT: the MNIST
# CNN trained in bf16 reaches the fp32 run's test accuracy within 0.3 points
# (150 steps of its config with the warm-up and cosine schedule cut to them,
# evaluated on the whole test set; measured: fp32 96.63%, bf16 96.62% on the
# AMX path, 96.61% on AVX512-BF16, 96.40% on the fp32 fallback); the log names
# the precision and the matrix-product path; a bf16 checkpoint holds fp32
# masters and resumes in fp32.
source "$(dirname "$0")/common.bash"
cd "$DTRAIN_SOURCE_DIR"
[ -f data/mnist/train-images-idx3-ubyte ] || fail "MNIST missing: run tools/setup.sh"

# 1. Learning: both precisions side by side, one thread each.
short=(--set train.steps=150 --set optim.warmup_steps=15 --set train.eval_batches=0 --set train.threads=1)
"$DTRAIN" run configs/cnn-mnist.toml "${short[@]}" --out "$WORK/fp32" >"$WORK/fp32.log" 2>&1 &
fp32_pid=$!
"$DTRAIN" run configs/cnn-mnist.toml "${short[@]}" --set train.precision=bf16 --out "$WORK/bf16" \
  >"$WORK/bf16.log" 2>&1 || { cat "$WORK/bf16.log" >&2; fail "the bf16 run failed"; }
wait "$fp32_pid" || { cat "$WORK/fp32.log" >&2; fail "the fp32 run failed"; }
grep -qE "precision bf16, (AMX bf16|AVX512-BF16|fp32 fallback) matmul" "$WORK/bf16.log" ||
  fail "the log does not name bf16 and its matrix-product path"
python3 - "$WORK/fp32/metrics.jsonl" "$WORK/bf16/metrics.jsonl" <<'PY' || fail "bf16 accuracy not within 0.3 points of fp32"
import json, sys
def last_eval(p):
    return [json.loads(l) for l in open(p) if "eval_accuracy" in l][-1]
a, b = last_eval(sys.argv[1]), last_eval(sys.argv[2])
print(f"MNIST test accuracy after 150 steps: fp32 {100 * a['eval_accuracy']:.2f}%, "
      f"bf16 {100 * b['eval_accuracy']:.2f}% ({100 * (b['eval_accuracy'] - a['eval_accuracy']):+.2f} points)")
assert abs(b["eval_accuracy"] - a["eval_accuracy"]) <= 0.003, (a, b)
assert b["eval_accuracy"] > 0.95, b  # and it learned
PY

# 2. The bf16 run's checkpoint holds fp32 masters and resumes in fp32 (5 more steps).
expect_exit 0 "$DTRAIN" inspect "$WORK/bf16/checkpoints/step_00000150"
grep -qE "stem.conv.weight +\(16, 1, 3, 3\) +fp32" "$WORK/out" || { cat "$WORK/out"; fail "a bf16 checkpoint does not hold fp32 masters"; }
expect_exit 0 "$DTRAIN" resume "$WORK/bf16/checkpoints/step_00000150" --set train.precision=fp32 \
  --set train.steps=155 --set train.threads=1 --set train.eval_batches=5 --out "$WORK/resumed"
grep -q "override train.precision" "$WORK/out" || fail "the precision change is not reported"
echo "precision_cnn: ok"
