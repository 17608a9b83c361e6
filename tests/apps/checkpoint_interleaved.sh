# Interleaved 1F1B (parallel.schedule = "interleaved", virtual_stages = 2) and
# checkpoints (mpirun, 2 ranks): the losses match one process; the same
# layout resumes bit for bit; an interleaved checkpoint resumes under 1F1B and
# on one process, and a 1F1B checkpoint under interleaving, with the one-process
# losses; interleaved with ZeRO-3 on dp 2 (4 ranks) resumes bit for bit, on plain dp 2, and
# under plain 1F1B without ZeRO with the one-process losses; bad combinations
# are one-line config errors (exit 2) naming the keys.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
make_tokens
tiny_gpt_config
base=(--set train.steps=8 --set train.threads=1 --set model.n_head=4 --set train.eval_every=4 --set checkpoint.every=4)
il=(--set parallel.pp=2 --set parallel.schedule=interleaved --set parallel.virtual_stages=2)
plain=(--set parallel.pp=2 --set parallel.schedule=1f1b --set parallel.virtual_stages=1)
ck=checkpoints/step_00000004

close_losses() {  # close_losses A B: B's losses within 1e-6 relative of A's at the same steps
  python3 - "$1" "$2" <<'PY' || fail "losses of $2 differ from $1"
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:])
assert b and all(abs(b[s] - a[s]) <= 1e-6 * abs(a[s]) for s in b), [(s, a[s], b[s]) for s in b]
PY
}

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --out "$WORK/one"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${il[@]}" --out "$WORK/il"
grep -q "pipeline virtual stages (top-level layers): \[0, 1) \[1, 2) \[2, 3) \[3, 5); schedule interleaved (v = 2: stage s holds virtual stages s + 2 c)" "$WORK/out" ||
  { cat "$WORK/out"; fail "no virtual stages in the layout line"; }
close_losses "$WORK/one/metrics.jsonl" "$WORK/il/metrics.jsonl"
# The same layout continues bit for bit.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/il/$ck" --out "$WORK/il_r"
same_losses "$WORK/il/metrics.jsonl" "$WORK/il_r/metrics.jsonl"
# Across schedules, and to one process without being told.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/il/$ck" "${plain[@]}" --out "$WORK/il_to_1f1b"
grep -q "override parallel.schedule: \"interleaved\" -> \"1f1b\"" "$WORK/out" || fail "no report of the schedule change"
close_losses "$WORK/one/metrics.jsonl" "$WORK/il_to_1f1b/metrics.jsonl"
expect_exit 0 "$DTRAIN" resume "$WORK/il/$ck" --out "$WORK/il_to_one"
close_losses "$WORK/one/metrics.jsonl" "$WORK/il_to_one/metrics.jsonl"
# Two ranks without a pipeline (tp 2): the schedule is dropped there too.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/il/$ck" --set parallel.pp=1 --set parallel.tp=2 --out "$WORK/il_to_tp"
grep -q "override parallel.schedule: \"interleaved\" -> \"1f1b\"" "$WORK/out" || fail "tp 2: no report of the schedule change"
close_losses "$WORK/one/metrics.jsonl" "$WORK/il_to_tp/metrics.jsonl"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${plain[@]}" --out "$WORK/p"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/p/$ck" "${il[@]}" --out "$WORK/p_to_il"
close_losses "$WORK/one/metrics.jsonl" "$WORK/p_to_il/metrics.jsonl"

# Interleaved with ZeRO-3 (dp 2 x pp 2, v = 2; the tied wte sharded on the
# first and last stage): a batch of 16 so that each dp rank runs 2 micro-batches.
b16=(--set train.grad_accum=4)
z3=(--set parallel.dp=2 --set parallel.zero=3 --set train.grad_accum=2)
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${b16[@]}" --out "$WORK/one16"
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${il[@]}" "${z3[@]}" --out "$WORK/ilz"
grep -q "ZeRO-3" "$WORK/out" || fail "the layout line does not name ZeRO-3"
close_losses "$WORK/one16/metrics.jsonl" "$WORK/ilz/metrics.jsonl"
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" resume "$WORK/ilz/$ck" --out "$WORK/ilz_r"
same_losses "$WORK/ilz/metrics.jsonl" "$WORK/ilz_r/metrics.jsonl"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/ilz/$ck" "${plain[@]}" --set parallel.dp=1 \
  --set parallel.zero=0 "${b16[@]}" --out "$WORK/ilz_to_1f1b"
grep -q "override parallel.schedule: \"interleaved\" -> \"1f1b\"" "$WORK/out" || fail "no report of the schedule change"
close_losses "$WORK/one16/metrics.jsonl" "$WORK/ilz_to_1f1b/metrics.jsonl"
# The ZeRO-3 checkpoint on plain dp 2 x pp 2, interleaved: each replica loads its range of the
# stage's one flat buffer (every chunk's parameters) and they gather the rest before the first step.
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" resume "$WORK/ilz/$ck" --set parallel.zero=0 --out "$WORK/ilz_to_dp"
close_losses "$WORK/one16/metrics.jsonl" "$WORK/ilz_to_dp/metrics.jsonl"

# Config errors: one line each, naming the keys and values.
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.virtual_stages=2 --out "$WORK/bad"
expect_err 'parallel.virtual_stages = 2 needs parallel.schedule = "interleaved" (unset, it is "1f1b")'
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.schedule=interleaved --set parallel.virtual_stages=2 --out "$WORK/bad"
expect_err 'parallel.schedule = "interleaved" needs parallel.pp > 1, got 1'
# (one process: the launch's rank count is reported too, but these lines come first)
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.pp=2 --set parallel.schedule=interleaved --out "$WORK/bad"
expect_err 'parallel.schedule = "interleaved" needs parallel.virtual_stages >= 2, got 1'
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" "${il[@]}" --set train.grad_accum=3 --out "$WORK/bad"
expect_err 'needs train.grad_accum (micro-batches per step, 3) to be a multiple of parallel.pp (2)'
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${il[@]}" --set parallel.virtual_stages=3 --out "$WORK/bad"
expect_err "parallel.pp (2) x parallel.virtual_stages (3) exceeds the model's 5 top-level layers"
echo "checkpoint_interleaved: ok"
