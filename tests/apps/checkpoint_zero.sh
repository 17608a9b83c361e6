# Checkpoints of ZeRO-sharded runs stay layout-free: a ZeRO-2 run on 2 dp
# ranks writes full tensors (each rank its own range: nothing is gathered, and
# the rank files are the same size), `dtrain inspect` names the stage it ran with,
# the same layout resumes bit for bit, one process (ZeRO-0) continues it and
# a ZeRO-2 run continues a one-process checkpoint, both with the one-process
# losses. ZeRO-3 (parameters sharded too) the same: full tensors, inspect,
# bit-identical resume (with an asynchronous checkpoint), and resume across
# modes: ZeRO-3 -> one process (ZeRO-0) and pp 2, one process -> ZeRO-3 (dp 2, dp 2 x pp 2).
# ZeRO-1 under bf16 (fp32 masters sharded, the bf16 copy whole): full fp32 tensors,
# bit-identical resume, resume on one process and from one process; ZeRO-3 under
# bf16 on dp 2 x tp 2 the same.
# Values outside 0..3 are refused in one line.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PY=/usr/bin/python3
make_tokens
tiny_gpt_config
base=(--set train.steps=8 --set train.threads=1 --set model.n_head=4 --set train.eval_every=4 --set checkpoint.every=4)
zero2=(--set parallel.dp=2 --set train.grad_accum=1 --set parallel.zero=2)
zero3=(--set parallel.dp=2 --set train.grad_accum=1 --set parallel.zero=3)

close_losses() {  # close_losses A B [REL]: B's losses within REL (1e-6) relative of A's at the same steps
  "$PY" - "$1" "$2" "${3:-1e-6}" <<'PY' || fail "losses of $2 differ from $1"
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:3])
rel = float(sys.argv[3])
assert b and all(abs(b[s] - a[s]) <= rel * abs(a[s]) for s in b), [(s, a[s], b[s]) for s in b]
PY
}
same_tensors() {  # same_tensors A B WHAT [REL]: checkpoint B's tensors A's (full, finite, fp32 masters)
  # within 1e-5 + 1e-4 of their largest, or REL of it
  "$PY" - "$1" "$2" "${4:-}" <<'PY' || fail "$3 tensors differ from one process"
import h5py, numpy as np, sys
rel = float(sys.argv[3]) if sys.argv[3] else None
with h5py.File(sys.argv[1] + "/checkpoint.h5") as a, h5py.File(sys.argv[2] + "/checkpoint.h5") as b:
    keys = a.attrs["tensors"].split()
    assert keys == b.attrs["tensors"].split()
    for k in keys:
        x, y = a[k][...], b[k][...]
        assert x.shape == y.shape and x.dtype == y.dtype and np.isfinite(y).all(), k
        if k.startswith("model/"): assert y.dtype == np.float32, k  # the masters, read whole
        bound = 1e-5 + 1e-4 * np.abs(x).max() if rel is None else rel * max(np.abs(x).max(), 1e-3)
        if rel is None or k.startswith("model/"): assert np.abs(x - y).max() <= bound, (k, np.abs(x - y).max())
PY
}

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --out "$WORK/one"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${zero2[@]}" --out "$WORK/z"
grep -q "ZeRO-2" "$WORK/out" || fail "the layout line does not name ZeRO-2"
close_losses "$WORK/one/metrics.jsonl" "$WORK/z/metrics.jsonl"
ck="$WORK/z/checkpoints/step_00000004"
expect_exit 0 "$DTRAIN" inspect "$ck" --verify
grep -q "sharding     ZeRO-2 (optimizer state and gradients sharded over dp); read back as full tensors by any layout" "$WORK/out" ||
  fail "inspect does not show the ZeRO stage"
expect_exit 0 "$DTRAIN" inspect "$WORK/one/checkpoints/step_00000004"
grep -q "sharding     none (every rank held all optimizer state and gradients); read back as full tensors by any layout" "$WORK/out" ||
  fail "inspect of an unsharded run"
# Full tensors, as one process writes them (up to the reduction order's rounding).
same_tensors "$WORK/one/checkpoints/step_00000004" "$ck" ZeRO-2
balanced() {  # balanced DIR N: N rank files, each within 25% of their mean size
  "$PY" - "$1" "$2" <<'PY' || fail "$1: the data-parallel ranks do not share the checkpoint's bytes"
import glob, os, sys
sizes = [os.path.getsize(f) for f in sorted(glob.glob(sys.argv[1] + "/rank_*.h5"))]
mean = sum(sizes) / max(len(sizes), 1)
assert len(sizes) == int(sys.argv[2]) and all(abs(s - mean) <= 0.25 * mean for s in sizes), sizes
PY
}
balanced "$ck" 2
# The same layout resumes bit for bit; one process (ZeRO-0) and ZeRO-2 from one process close.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$ck" --out "$WORK/zr"
same_losses "$WORK/z/metrics.jsonl" "$WORK/zr/metrics.jsonl"
expect_exit 0 "$DTRAIN" resume "$ck" --out "$WORK/z1"
close_losses "$WORK/one/metrics.jsonl" "$WORK/z1/metrics.jsonl"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/one/checkpoints/step_00000004" "${zero2[@]}" --out "$WORK/oz"
close_losses "$WORK/one/metrics.jsonl" "$WORK/oz/metrics.jsonl"

# ZeRO-3: each rank holds a shard of the parameters; checkpoints store each rank's.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${zero3[@]}" --out "$WORK/z3" \
  --set checkpoint.async=true
grep -q "ZeRO-3" "$WORK/out" || fail "the layout line does not name ZeRO-3"
close_losses "$WORK/one/metrics.jsonl" "$WORK/z3/metrics.jsonl"
ck3="$WORK/z3/checkpoints/step_00000004"
expect_exit 0 "$DTRAIN" inspect "$ck3" --verify
grep -q "sharding     ZeRO-3 (optimizer state, gradients and parameters sharded over dp); read back as full tensors by any layout" \
  "$WORK/out" || fail "inspect does not show ZeRO-3"
same_tensors "$WORK/one/checkpoints/step_00000004" "$ck3" ZeRO-3
balanced "$ck3" 2
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$ck3" --out "$WORK/z3r"
same_losses "$WORK/z3/metrics.jsonl" "$WORK/z3r/metrics.jsonl"
expect_exit 0 "$DTRAIN" resume "$ck3" --out "$WORK/z3one"
close_losses "$WORK/one/metrics.jsonl" "$WORK/z3one/metrics.jsonl"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$ck3" --set parallel.dp=1 --set parallel.zero=0 \
  --set parallel.pp=2 --set train.grad_accum=2 --out "$WORK/z3pp"
close_losses "$WORK/one/metrics.jsonl" "$WORK/z3pp/metrics.jsonl"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/one/checkpoints/step_00000004" "${zero3[@]}" --out "$WORK/o3"
close_losses "$WORK/one/metrics.jsonl" "$WORK/o3/metrics.jsonl"
# ... and on dp 2 x pp 2 (each stage's shard and the last stage's tied wte copy take the load).
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" resume "$WORK/one/checkpoints/step_00000004" "${zero3[@]}" \
  --set parallel.pp=2 --out "$WORK/o3pp"
close_losses "$WORK/one/metrics.jsonl" "$WORK/o3pp/metrics.jsonl"

# ZeRO-1 under bf16 keeps the fp32 masters of each rank's range only (the bf16 copy
# whole): each rank saves its range of them (read as full fp32 tensors), the same layout resumes bit for
# bit, one process continues it, and ZeRO-1 continues a one-process checkpoint (its
# shards and bf16 copy taken from the load): within bf16's layout tolerance of the
# one-process bf16 run (2e-3 relative: layouts_test.cpp derives it).
bf=(--set train.precision=bf16)
zero1=(--set parallel.dp=2 --set train.grad_accum=1 --set parallel.zero=1)
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${bf[@]}" --out "$WORK/bone"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${bf[@]}" "${zero1[@]}" --out "$WORK/bz"
close_losses "$WORK/bone/metrics.jsonl" "$WORK/bz/metrics.jsonl" 2e-3
same_tensors "$WORK/bone/checkpoints/step_00000004" "$WORK/bz/checkpoints/step_00000004" "bf16 ZeRO-1" 0.03
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/bz/checkpoints/step_00000004" --out "$WORK/bzr"
same_losses "$WORK/bz/metrics.jsonl" "$WORK/bzr/metrics.jsonl"
expect_exit 0 "$DTRAIN" resume "$WORK/bz/checkpoints/step_00000004" --out "$WORK/bz1"
close_losses "$WORK/bz/metrics.jsonl" "$WORK/bz1/metrics.jsonl" 2e-3
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/bone/checkpoints/step_00000004" "${zero1[@]}" --out "$WORK/boz"
close_losses "$WORK/bone/metrics.jsonl" "$WORK/boz/metrics.jsonl" 2e-3
tz3=(--set parallel.dp=2 --set parallel.tp=2 --set train.grad_accum=1 --set parallel.zero=3)
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${bf[@]}" "${tz3[@]}" --out "$WORK/btz"
close_losses "$WORK/bone/metrics.jsonl" "$WORK/btz/metrics.jsonl" 2e-3
# Its checkpoint is the same layout's without ZeRO, bit for bit (tp in bf16 moves the
# weights from one process's by up to steps x lr: Adam's sign on tiny gradients).
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${bf[@]}" "${tz3[@]}" \
  --set parallel.zero=0 --out "$WORK/bt"
"$PY" - "$WORK/bt/checkpoints/step_00000004" "$WORK/btz/checkpoints/step_00000004" <<'PY' ||
import h5py, numpy as np, sys
with h5py.File(sys.argv[1] + "/checkpoint.h5") as a, h5py.File(sys.argv[2] + "/checkpoint.h5") as b:
    keys = a.attrs["tensors"].split()
    assert keys == b.attrs["tensors"].split()
    for k in keys: assert np.array_equal(a[k][...], b[k][...]), k
PY
  fail "the bf16 ZeRO-3 x tp 2 checkpoint differs from the same layout's without ZeRO"
balanced "$WORK/btz/checkpoints/step_00000004" 4
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" resume "$WORK/btz/checkpoints/step_00000004" --out "$WORK/btzr"
same_losses "$WORK/btz/metrics.jsonl" "$WORK/btzr/metrics.jsonl"
expect_exit 0 "$DTRAIN" resume "$WORK/btz/checkpoints/step_00000004" --out "$WORK/btz1"
close_losses "$WORK/btz/metrics.jsonl" "$WORK/btz1/metrics.jsonl" 2e-3

# Refused in one line naming the key.
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set parallel.zero=4 --out "$WORK/bad"
expect_err "parallel.zero"
echo "checkpoint_zero: ok"
