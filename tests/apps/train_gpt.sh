# Trains a tiny GPT end to end: output files, metrics records, loss falls, and
# the same config and seed give bit-identical losses (also from the resolved config).
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/a"
grep -q "step     30/30" "$WORK/out" || { cat "$WORK/out"; fail "no final progress line"; }
grep -q "tok/s" "$WORK/out" || fail "no throughput in progress line"
[ -f "$WORK/a/config.toml" ] && [ -f "$WORK/a/metrics.jsonl" ] || fail "missing outputs"
[ "$(json_field "$WORK/a/metrics.jsonl" loss | wc -l)" -eq 30 ] || fail "expected 30 loss records"
[ "$(json_field "$WORK/a/metrics.jsonl" eval_loss | wc -l)" -eq 4 ] || fail "expected 4 eval records"
python3 - "$WORK/a/metrics.jsonl" <<'PY' || fail "loss did not fall"
import json, sys
ev = [json.loads(l)["eval_loss"] for l in open(sys.argv[1]) if "eval_loss" in l]
assert ev[-1] < 0.8 * ev[0], ev
PY

# Same config, same seed: the same losses to the last bit.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/b"
cmp -s <(json_field "$WORK/a/metrics.jsonl" loss) <(json_field "$WORK/b/metrics.jsonl" loss) ||
  fail "two runs of one config differ"
# The resolved config reproduces the run.
expect_exit 0 "$DTRAIN" run "$WORK/a/config.toml" --out "$WORK/c"
cmp -s <(json_field "$WORK/a/metrics.jsonl" loss) <(json_field "$WORK/c/metrics.jsonl" loss) ||
  fail "the resolved config does not reproduce the run"
# Warmup-stable-decay: the learning rate each step logged (1-based steps) is held at optim.lr
# from the warmup's end to decay_start, then falls as 1 - sqrt of the decay's progress.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/wsd" --set optim.schedule=sqrt --set optim.decay_start=20 \
  --set optim.min_lr=3e-4 --set train.eval_every=0
grep -qx "decay_start = 20" "$WORK/wsd/config.toml" || fail "the resolved config lacks decay_start"
python3 - "$WORK/wsd/metrics.jsonl" <<'PY' || fail "the WSD schedule's learning rates"
import json, math, sys
lr = {r["step"]: r["lr"] for r in map(json.loads, open(sys.argv[1])) if "lr" in r}
assert all(lr[s] == 3e-3 for s in range(6, 22)), lr            # stable: 0-based steps 5 .. 20
for s in range(22, 31):                                         # 0-based 21 .. 29 of the decay 20 -> 30
    want = 3e-4 + 2.7e-3 * (1 - math.sqrt((s - 1 - 20) / 10))
    assert abs(lr[s] - want) < 1e-12, (s, lr[s], want)
PY
grep -qx 'decay_start = 0' "$WORK/a/config.toml" || fail "decay_start 0 (at the warmup's end) is not kept as 0"
# A constant schedule with a warmup reads back (decay_start stays 0, not the warmup's 5).
expect_exit 0 "$DTRAIN" validate "$WORK/tiny.toml" --set optim.schedule=constant
cp "$WORK/out" "$WORK/constant.toml"
expect_exit 0 "$DTRAIN" validate "$WORK/constant.toml"

# Another seed differs.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/d" --set train.seed=7
cmp -s <(json_field "$WORK/a/metrics.jsonl" loss) <(json_field "$WORK/d/metrics.jsonl" loss) &&
  fail "a different seed gave the same losses"
# Gradient accumulation: 4 x 2 micro-batches equals one micro-batch of 8 (up to rounding).
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/e" --set train.micro_batch=8 --set train.grad_accum=1
python3 - "$WORK/a/metrics.jsonl" "$WORK/e/metrics.jsonl" <<'PY' || fail "accumulation changes the losses"
import json, sys
a, e = ([json.loads(l)["loss"] for l in open(p) if '"loss"' in l] for p in sys.argv[1:])
worst = max(abs(x - y) / abs(y) for x, y in zip(a, e))
assert len(a) == len(e) == 30 and worst < 1e-4, worst
PY
# train.threads = 0 takes OMP_NUM_THREADS where it is set (else every core).
OMP_NUM_THREADS=1 expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/t" --set train.threads=0 --set train.steps=2 \
  --set optim.warmup_steps=1 --set train.eval_every=0
grep -q "; 1 thread per rank" "$WORK/out" "$WORK/err" || fail "OMP_NUM_THREADS=1 not taken: $(grep -h 'per rank' "$WORK/out" "$WORK/err")"
echo "train_gpt: ok"
