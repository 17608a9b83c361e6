# Sequence parallelism end to end (mpirun, 2 ranks): a tp 2 run with
# parallel.sequence_parallel resumes bit for bit on the same layout and
# continues within 1e-6 of the uninterrupted losses without it (checkpoints
# hold no trace of the split), also on one process and on tp 1, which drop it
# by themselves; bad configurations are one line naming the keys.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PY=/usr/bin/python3
make_tokens
tiny_gpt_config
base=(--set train.steps=8 --set train.threads=1 --set train.eval_every=4 --set checkpoint.every=4
      --set model.dropout=0.1 --set parallel.tp=2)
sp=(--set parallel.sequence_parallel=true)

expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${sp[@]}" --out "$WORK/sp"
ck="$WORK/sp/checkpoints/step_00000004"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$ck" --out "$WORK/again"
same_losses "$WORK/sp/metrics.jsonl" "$WORK/again/metrics.jsonl"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$ck" --set parallel.sequence_parallel=false --out "$WORK/plain"
grep -q "override parallel.sequence_parallel: true -> false" "$WORK/out" "$WORK/err" || fail "resume did not drop sequence_parallel"
"$PY" - "$WORK/sp/metrics.jsonl" "$WORK/plain/metrics.jsonl" <<'PY' || fail "sequence parallel -> plain tp: losses differ"
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:])
assert b and all(abs(b[s] - a[s]) <= 1e-6 * abs(a[s]) for s in b), [(s, a[s], b[s]) for s in b]
PY
# On tp 1 (one process, or dp 2 on two ranks) the resume drops it by itself.
expect_exit 0 "$DTRAIN" resume "$ck" --out "$WORK/one"
grep -q "override parallel.sequence_parallel: true -> false" "$WORK/out" "$WORK/err" || fail "one process: sequence_parallel kept"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$ck" --set parallel.tp=1 --set parallel.dp=2 --out "$WORK/dp2"
grep -q "override parallel.sequence_parallel: true -> false" "$WORK/out" "$WORK/err" || fail "dp 2: sequence_parallel kept"
for run in one dp2; do
  "$PY" - "$WORK/sp/metrics.jsonl" "$WORK/$run/metrics.jsonl" <<'PY' || fail "sequence parallel -> $run: losses differ"
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:])
assert b and all(abs(b[s] - a[s]) <= 1e-6 * abs(a[s]) for s in b), [(s, a[s], b[s]) for s in b]
PY
done

# Errors: one line naming the keys, exit 2.
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" "${sp[@]}" --out "$WORK/bad1"
expect_err "parallel.sequence_parallel = true needs parallel.tp > 1"
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${sp[@]}" --set train.seq_len=15 --out "$WORK/bad2"
expect_err "must be divisible by parallel.tp (2)"
echo "seq_parallel: ok"
