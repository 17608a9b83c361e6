# Acceptance: the default GPT config lowers the validation loss on the shipped
# text well below its starting value (uniform over 256 bytes: ln 256 = 5.5).
source "$(dirname "$0")/common.bash"
cd "$DTRAIN_SOURCE_DIR"
expect_exit 0 "$DTRAIN" run configs/gpt.toml --out "$WORK/run"
tail -3 "$WORK/out"
python3 - "$WORK/run/metrics.jsonl" <<'PY' || fail "validation loss did not fall enough"
import json, sys
ev = [json.loads(l)["eval_loss"] for l in open(sys.argv[1]) if "eval_loss" in l]
print("validation loss", ev[0], "->", ev[-1])
assert ev[-1] < 0.4 * ev[0] and ev[-1] < 2.0, ev
PY
