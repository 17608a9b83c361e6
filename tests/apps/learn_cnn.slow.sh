# Acceptance: the default CNN reaches at least 98% MNIST test accuracy in one epoch.
source "$(dirname "$0")/common.bash"
cd "$DTRAIN_SOURCE_DIR"
expect_exit 0 "$DTRAIN" run configs/cnn-mnist.toml --out "$WORK/run"
tail -3 "$WORK/out"
python3 - "$WORK/run/metrics.jsonl" <<'PY' || fail "below 98% after one epoch"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if "eval_accuracy" in l]
print("final test accuracy", ev[-1]["eval_accuracy"])
assert ev[-1]["eval_accuracy"] >= 0.98
PY
