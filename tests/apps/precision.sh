# bf16 mixed precision end to end: the default GPT trained in bf16 reaches a
# validation loss within 2% of the fp32 run's; checkpoints hold the fp32
# masters whatever the precision, so a run resumes fp32 -> bf16 and
# bf16 -> fp32 (the first resumed losses close to the uninterrupted run's);
# the log names the precision and the matrix-product path.
source "$(dirname "$0")/common.bash"
cd "$DTRAIN_SOURCE_DIR"

# 1. Learning: 200 steps of the default GPT (its warm-up and cosine schedule cut to 200).
short=(--set train.steps=200 --set train.eval_every=0 --set optim.warmup_steps=20 --set train.threads=2)
expect_exit 0 "$DTRAIN" run configs/gpt.toml "${short[@]}" --out "$WORK/fp32"
expect_exit 0 "$DTRAIN" run configs/gpt.toml "${short[@]}" --set train.precision=bf16 --out "$WORK/bf16"
grep -qE "precision bf16, (AMX bf16|AVX512-BF16|fp32 fallback) matmul" "$WORK/out" ||
  fail "the log does not name bf16 and its matrix-product path"
python3 - "$WORK/fp32/metrics.jsonl" "$WORK/bf16/metrics.jsonl" <<'PY' || fail "bf16 validation loss not within 2% of fp32"
import json, sys
def last_eval(p):
    return [json.loads(l)["eval_loss"] for l in open(p) if "eval_loss" in l][-1]
a, b = last_eval(sys.argv[1]), last_eval(sys.argv[2])
print(f"validation loss after 200 steps: fp32 {a:.4f}, bf16 {b:.4f} ({100 * (b - a) / a:+.2f}%)")
assert abs(b - a) <= 0.02 * a, (a, b)
assert b < 3.0, b  # and it learned (uniform: 5.5)
PY

# 2. Resume across precisions, on the tiny GPT: 10 steps, then 10 more in the
# other precision; their losses follow the uninterrupted run within bf16's reach.
make_tokens
tiny_gpt_config
run() { "$DTRAIN" run "$WORK/tiny.toml" --set train.threads=1 --set train.steps=20 --set checkpoint.every=10 "$@"; }
expect_exit 0 run --out "$WORK/t32"
expect_exit 0 run --out "$WORK/t16" --set train.precision=bf16
expect_exit 0 "$DTRAIN" inspect "$WORK/t16/checkpoints/step_00000010"
grep -qE "model/wte.weight +\(256, 32\) +fp32" "$WORK/out" || { cat "$WORK/out"; fail "a bf16 run's checkpoint does not hold fp32 masters"; }
for pair in "t32 bf16 t16" "t16 fp32 t32"; do
  set -- $pair
  expect_exit 0 "$DTRAIN" resume "$WORK/$1/checkpoints/step_00000010" --set train.precision=$2 --out "$WORK/$1-to-$2"
  grep -q "override train.precision" "$WORK/out" || fail "$1 -> $2: the precision change is not reported"
  python3 - "$WORK/$1/metrics.jsonl" "$WORK/$1-to-$2/metrics.jsonl" "$1 -> $2" <<'PY' || fail "$1 -> $2: resumed losses drift"
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert min(b) == 11, sorted(b)
worst = max(abs(b[s] - a[s]) / a[s] for s in b)
print(f"{sys.argv[3]}: resumed losses within {worst:.2g} relative of the uninterrupted run")
assert worst < 1e-2, worst
PY
done
