# Checkpoints across parallel layouts (mpirun): a tp=2 x pp=2 run writes one
# file per rank and its master file holds the same full tensors as a
# one-process run's; any layout resumes any other's checkpoint (one process
# from 4 ranks without being told, 4 ranks from one process, ZeRO-1 data
# parallelism) with the one-process losses; the same layout resumes bit for
# bit; plain data-parallel replicas share a save's bytes; SIGUSR1 to mpirun, or to one rank only, stops every rank at the same
# step with a checkpoint and exit status 4.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PY=/usr/bin/python3
make_tokens
tiny_gpt_config
base=(--set train.steps=12 --set train.threads=1 --set model.n_head=4 --set train.eval_every=6 --set checkpoint.every=6)
tp2pp2=(--set parallel.tp=2 --set parallel.pp=2)
zero=(--set parallel.dp=2 --set train.grad_accum=1 --set parallel.zero=1)

close_losses() {  # close_losses A B: B's losses within 1e-6 relative of A's at the same steps
  "$PY" - "$1" "$2" <<'PY' || fail "losses of $2 differ from $1"
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:])
assert b and all(abs(b[s] - a[s]) <= 1e-6 * abs(a[s]) for s in b), [(s, a[s], b[s]) for s in b]
PY
}

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --out "$WORK/one"
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${tp2pp2[@]}" --out "$WORK/four"
ck4="$WORK/four/checkpoints/step_00000006"
[ "$(ls "$ck4" | tr '\n' ' ')" = "checkpoint.h5 manifest rank_00000.h5 rank_00001.h5 rank_00002.h5 rank_00003.h5 " ] ||
  fail "4 ranks wrote: $(ls "$ck4")"
expect_exit 0 "$DTRAIN" inspect "$ck4" --verify
grep -q "layout       dp=1 tp=2 pp=2 (4 ranks)" "$WORK/out" || fail "inspect: no 4-rank layout"
grep -qE "^  model/blocks\.1\.attn\.qkv\.weight +\(96, 32\) +fp32 +2$" "$WORK/out" || fail "qkv is not 2 tp pieces"
grep -qE "^  model/ln_f\.weight +\(32\) +fp32 +1$" "$WORK/out" || fail "a replicated tensor stored twice"
# The same tensors, names and shapes as one process (up to the layouts' rounding).
"$PY" - "$WORK/one/checkpoints/step_00000006" "$ck4" <<'PY' || fail "4-rank tensors differ from one process"
import h5py, numpy as np, sys
with h5py.File(sys.argv[1] + "/checkpoint.h5") as a, h5py.File(sys.argv[2] + "/checkpoint.h5") as b:
    keys = a.attrs["tensors"].split()
    assert keys == b.attrs["tensors"].split() and len(keys) == 84
    for k in keys:
        x, y = a[k][...], b[k][...]
        assert x.shape == y.shape and np.isfinite(y).all(), k
        assert np.abs(x - y).max() <= 1e-3 * np.abs(x).max(), k
PY

# Across layouts: one process continues the 4-rank checkpoint (and says so), 4 ranks continue one process's.
expect_exit 0 "$DTRAIN" resume "$ck4" --out "$WORK/r1"
grep -q "override parallel.tp: 2 -> 1" "$WORK/out" || fail "no report of the layout change"
close_losses "$WORK/one/metrics.jsonl" "$WORK/r1/metrics.jsonl"
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" resume "$WORK/one/checkpoints/step_00000006" "${tp2pp2[@]}" --out "$WORK/r4"
close_losses "$WORK/one/metrics.jsonl" "$WORK/r4/metrics.jsonl"
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$ck4" --out "$WORK/bad"
expect_err "the checkpoint was written on dp=1 tp=2 pp=2 (4 ranks) and 2 were launched"
! grep -q "problems" "$WORK/err" || fail "resume on other ranks: more than the one line: $(cat "$WORK/err")"
# One degree given, the others the checkpoint's, not making the ranks launched: said as such.
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$ck4" --set parallel.dp=2 --out "$WORK/bad"
expect_err "the layout dp=2 tp=2 pp=2 (the degrees not given with --set are the checkpoint's, written on dp=1 tp=2 pp=2) makes 8 ranks and 2 were launched"
# ... and first, before the batch problems of that layout (which follow from it).
[ "$(grep -m1 "^dtrain: error:" "$WORK/err" | grep -c "were launched")" -eq 1 ] ||
  { cat "$WORK/err" >&2; fail "the layout that does not make the ranks launched is not the first line"; }
# parallel.mode = "auto": a run whose planner chose its layout, resumed on another number of ranks, is
# planned again for them (what the config fixed, here tp 2, stays), with the one-process losses.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set parallel.mode=auto \
  --set parallel.tp=2 --out "$WORK/a2"
grep -q '^planned = "parallel.dp,parallel.pp,train.grad_accum,' "$WORK/a2/config.toml" ||
  fail "auto: the planner's keys not recorded: $(grep '^planned' "$WORK/a2/config.toml")"
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" resume "$WORK/a2/checkpoints/step_00000006" --out "$WORK/a4"
grep -q "^auto layout for 4 ranks on cpu-local in fp32: dp=. tp=2 pp=." "$WORK/out" || fail "auto: not planned again for 4 ranks"
grep -q "^tp = 2$" "$WORK/a4/config.toml" || fail "auto: the fixed tp not kept"
close_losses "$WORK/one/metrics.jsonl" "$WORK/a4/metrics.jsonl"

# ZeRO-1 over 2 data-parallel ranks: the same layout resumes bit for bit; 4 other ranks and 1 process close.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${zero[@]}" --out "$WORK/z"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/z/checkpoints/step_00000006" --out "$WORK/zr"
same_losses "$WORK/z/metrics.jsonl" "$WORK/zr/metrics.jsonl"
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" resume "$WORK/z/checkpoints/step_00000006" --out "$WORK/z4" \
  --set parallel.dp=1 "${tp2pp2[@]}"
grep -q "override train.grad_accum: 1 -> 2" "$WORK/out" || fail "grad_accum not re-derived for dp 2 -> 1"
close_losses "$WORK/one/metrics.jsonl" "$WORK/z4/metrics.jsonl"
expect_exit 0 "$DTRAIN" resume "$WORK/z/checkpoints/step_00000006" --out "$WORK/z1"
close_losses "$WORK/one/metrics.jsonl" "$WORK/z1/metrics.jsonl"

# Plain data parallelism on 2 x tp 2 (every replica holds everything): the replicas share the save,
# each writing one half of the flat parameters and state (4 rank files of equal size, also
# asynchronously); the tensors are one process's, and the same layout resumes bit for bit.
dp2tp2=(--set parallel.dp=2 --set parallel.tp=2 --set train.grad_accum=1)
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${dp2tp2[@]}" \
  --set checkpoint.async=true --out "$WORK/d"
ckd="$WORK/d/checkpoints/step_00000006"
"$PY" - "$WORK/one/checkpoints/step_00000006" "$ckd" <<'PY' || fail "dp 2 x tp 2: the replicas do not share the save"
import glob, h5py, os, numpy as np, sys
sizes = [os.path.getsize(f) for f in sorted(glob.glob(sys.argv[2] + "/rank_*.h5"))]
assert len(sizes) == 4 and max(sizes) <= 1.25 * min(sizes), sizes
with h5py.File(sys.argv[1] + "/checkpoint.h5") as a, h5py.File(sys.argv[2] + "/checkpoint.h5") as b:
    keys = a.attrs["tensors"].split()
    assert keys == b.attrs["tensors"].split()
    for k in keys:
        x, y = a[k][...], b[k][...]
        assert x.shape == y.shape and np.isfinite(y).all() and np.abs(x - y).max() <= 1e-3 * np.abs(x).max(), k
PY
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" resume "$ckd" --out "$WORK/dr"
same_losses "$WORK/d/metrics.jsonl" "$WORK/dr/metrics.jsonl"
# ... each replica reading its half and the replicas gathering the rest before the first step: also
# on dp 2 x pp 2 in bf16 (the last stage's copy of the tied embedding read by ranges too), bit for bit.
dp2pp2=(--set parallel.dp=2 --set parallel.pp=2 --set train.grad_accum=2 --set train.precision=bf16)
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${dp2pp2[@]}" --out "$WORK/e"
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" resume "$WORK/e/checkpoints/step_00000006" --out "$WORK/er"
same_losses "$WORK/e/metrics.jsonl" "$WORK/er/metrics.jsonl"

# Preemption under mpirun: SIGUSR1 to mpirun (forwarded to every rank), then to one rank only.
long=(--set train.steps=300 --set train.threads=1 --set model.n_head=4 --set log.every=100 --set train.eval_every=0 "${tp2pp2[@]}")
for target in mpirun one-rank; do
  out="$WORK/p_$target"
  "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" "${long[@]}" --out "$out" >"$WORK/out" 2>"$WORK/err" &
  job=$!
  for _ in $(seq 600); do
    [ -f "$out/metrics.jsonl" ] && [ "$(wc -l <"$out/metrics.jsonl")" -ge 10 ] && break
    sleep 0.05
  done
  if [ "$target" = mpirun ]; then kill -USR1 "$job"; else kill -USR1 "$(pgrep -P "$job" | tail -1)"; fi
  set +e
  wait "$job"
  rc=$?
  set -e
  [ "$rc" -eq 4 ] || { cat "$WORK/err"; fail "$target: exit status $rc, expected 4"; }
  step=$(sed -n 's/^dtrain: stopped by .* after step \([0-9]*\) of 300.*/\1/p' "$WORK/err")
  [ -n "$step" ] || { cat "$WORK/err"; fail "$target: no 'stopped by' line"; }
  [ "$(cat "$out/checkpoints/latest")" = "$(printf 'step_%08d' "$step")" ] || fail "$target: no checkpoint at step $step"
  # The same layout continues bit for bit: compare with an uninterrupted run to step + 4.
  expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" resume "$out/checkpoints" --set train.steps=$((step + 4))
  expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" "${long[@]}" --out "$out.ref" \
    --set train.steps=$((step + 4)) --set optim.decay_steps=300 --set checkpoint.at_end=false
  cmp -s <(step_losses "$out.ref/metrics.jsonl") <(step_losses "$out/metrics.jsonl") ||
    fail "$target: stop at step $step + resume differs from an uninterrupted run"
done
echo "checkpoint_layouts: ok"
