# parallel.sync = "local" (local SGD / DiLoCo, train/local_sync.h) under mpirun:
# - H = 1 with plain averaging is data parallelism: bit for bit the dp run
#   (every loss, every final parameter and optimizer state) on 2 and 4 ranks,
#   also with a file per replica; H = 1 with an outer optimizer is not;
# - H = 4 trains the small GPT on the shipped text to within 0.1 of the dp
#   run's validation loss;
# - the dp bytes per step (dtrain profile) fall by H;
# - a checkpoint in the middle of a period resumes bit for bit (each replica's
#   own parameters and inner state, the anchor and the outer momentum), also
#   with tp and pp inside the replicas (and an asynchronous checkpoint); another
#   layout resumes from the anchor;
# - data.train with one file per replica: each replica reads its own (a missing
#   one is named with its replica), the list length must equal dp;
# - ZeRO with local sync is refused in one line (and dtrain plan lists no ZeRO
#   layouts for it); H = 1 with plain averaging runs with ZeRO.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PY=/usr/bin/python3
make_tokens
tiny_gpt_config
base=(--set train.threads=1 --set model.n_head=4 --set parallel.dp=2 --set train.grad_accum=1)
local1=(--set parallel.sync=local --set parallel.sync_every=1)

# --- H = 1 with plain averaging (outer_lr 1) is data parallelism: synced
# every step, the gradients are averaged before the one optimizer step
# (config.h: local_sync_is_dp), so the run equals sync = "step" bit for bit:
# every step's loss and evaluation, and every final parameter and optimizer
# state, on 2 and 4 ranks, with the default AdamW and gradient clipping (whose
# updates are not linear in the gradient: averaging the replicas' own steps
# would differ). The checkpoints hold the same keys (no outer state).
exact=(--set train.steps=12 --set train.eval_every=6 --set checkpoint.every=6)
same_run() {  # same_run A B: metrics and the final checkpoint's tensors bit-equal
  "$PY" - "$1" "$2" <<'PY' || fail "$2 differs from $1"
import h5py, json, sys
a, b = sys.argv[1:]
ma, mb = ({(r["step"], k): r[k] for r in map(json.loads, open(d + "/metrics.jsonl")) for k in ("loss", "eval_loss")
           if k in r} for d in (a, b))
assert ma.keys() == mb.keys() and len(ma) == 15, (sorted(ma), sorted(mb))
diff = [(s, ma[s], mb[s]) for s in ma if ma[s].hex() != mb[s].hex()]
assert not diff, diff
fa, fb = (h5py.File(d + "/checkpoints/step_00000012/checkpoint.h5") for d in (a, b))
ka, kb = fa.attrs["tensors"].split(), fb.attrs["tensors"].split()
assert ka == kb, sorted(set(ka) ^ set(kb))
bad = [k for k in ka if fa[k][...].tobytes() != fb[k][...].tobytes()]  # memcmp of every tensor
assert not bad, bad
print(f"{b}: {len(ma)} losses and {len(ka)} tensors bit-equal to {a}")
PY
}
for np in 2 4; do
  expect_exit 0 "${MPIRUN[@]}" -np $np "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set parallel.dp=$np "${exact[@]}" \
    --out "$WORK/s$np"
  expect_exit 0 "${MPIRUN[@]}" -np $np "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set parallel.dp=$np "${exact[@]}" \
    "${local1[@]}" --set parallel.outer_optim=average --set parallel.outer_lr=1 --out "$WORK/l$np"
  grep -q "parallel.sync = local with sync_every = 1 and plain averaging is data parallelism: gradients are averaged every step" \
    "$WORK/out" || fail "np=$np: no data-parallelism line"
  grep -q "sync local: the" "$WORK/out" && fail "np=$np: H = 1 with plain averaging ran as local sync"
  grep -q "layout dp=$np tp=1 pp=1" "$WORK/out" || fail "np=$np: not $np replicas"
  same_run "$WORK/s$np" "$WORK/l$np"
done
# Its checkpoint is a data-parallel one: inspect says so; a resume in the
# middle continues bit for bit.
expect_exit 0 "$DTRAIN" inspect "$WORK/l2/checkpoints/step_00000006"
grep -qF "sync         local with sync_every = 1 and plain averaging: data parallelism" "$WORK/out" || fail "inspect: no sync line"
grep -qE "^  replica/" "$WORK/out" && fail "H = 1 with plain averaging stored per-replica state"
expect_exit 0 "$DTRAIN" inspect "$WORK/s2/checkpoints/step_00000006"
grep -qF "sync         step (gradients all-reduced every step)" "$WORK/out" || fail "inspect: no sync line for step"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/l2/checkpoints/step_00000006" --out "$WORK/l2r"
same_losses "$WORK/l2/metrics.jsonl" "$WORK/l2r/metrics.jsonl"
# Per-replica data files: each replica reads its own file as under local sync
# (and under sync = "step": the sampling depends on the files, not the sync),
# so H = 1 equals dp on the same files bit for bit, and differs from the run
# on the shared file (replica 1 did read its own).
sites2=(--set "data.train=[\"$WORK/tok_train.bin\", \"$WORK/tok_val.bin\"]")
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${exact[@]}" "${sites2[@]}" --out "$WORK/ss"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${exact[@]}" "${sites2[@]}" "${local1[@]}" \
  --out "$WORK/ls"
grep -q "is data parallelism: gradients are averaged every step; each replica reads its own data.train file" "$WORK/out" ||
  fail "per-replica files: no data-parallelism line"
same_run "$WORK/ss" "$WORK/ls"
[ "$(step_losses "$WORK/ls/metrics.jsonl" | tail -1)" != "$(step_losses "$WORK/l2/metrics.jsonl" | tail -1)" ] ||
  fail "per-replica files: the same losses as on the shared file"

# dtrain validate says so too.
expect_exit 0 "$DTRAIN" validate "$WORK/tiny.toml" "${local1[@]}"
expect_err "note: parallel.sync = local with sync_every = 1 and plain averaging is data parallelism"
expect_exit 0 "$DTRAIN" validate "$WORK/tiny.toml" "${local1[@]}" --set parallel.outer_optim=nesterov
grep -q "data parallelism" "$WORK/err" && fail "validate: H = 1 with Nesterov called data parallelism"

# --- H = 1 with an outer optimizer (Nesterov, or plain averaging with
# outer_lr != 1) keeps the outer-optimizer semantics: local sync, not dp. The
# first step's loss (the same initial model and data) agrees; later ones differ.
for outer in "nesterov --set parallel.outer_lr=0.7 --set parallel.outer_momentum=0.9" "average --set parallel.outer_lr=0.5"; do
  set -- $outer
  name=$1
  shift
  expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${exact[@]}" "${local1[@]}" \
    --set parallel.outer_optim=$name "$@" --out "$WORK/o_$name"
  grep -q "sync local: the 2 data-parallel replicas sync every 1 steps (and after the last), outer optimizer $name" \
    "$WORK/out" || fail "H = 1 $name: no local sync line"
  grep -q "is data parallelism" "$WORK/out" && fail "H = 1 $name ran as data parallelism"
  "$PY" - "$WORK/s2/metrics.jsonl" "$WORK/o_$name/metrics.jsonl" <<'PY' || fail "H = 1 $name: not different from dp"
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:])
assert a.keys() == b.keys() and a[1] == b[1], (a, b)
assert all(a[s] != b[s] for s in a if s >= 2), [(s, a[s], b[s]) for s in a]
PY
  expect_exit 0 "$DTRAIN" inspect "$WORK/o_$name/checkpoints/step_00000006"
  grep -qF "sync         local every 1 steps, outer $name" "$WORK/out" || fail "inspect: no local sync line ($name)"
done

# --- Bytes per step over dp fall by H (the profile averages over whole periods).
# H = 1 with plain averaging is data parallelism: the gradients' bytes, as step.
for h in 0 1 4; do
  mode=(--set parallel.sync=local --set parallel.sync_every=$h)
  [ $h = 0 ] && mode=(--set parallel.sync=step)
  expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" profile "$WORK/tiny.toml" "${base[@]}" "${mode[@]}" --steps 4 --warmup 1 --out "$WORK/prof$h"
  if [ $h = 1 ]; then
    grep -q 'plain averaging is data parallelism: gradients all-reduced every step' "$WORK/out" ||
      fail "profile: no data-parallelism line"
  fi
done
grep -q 'parameters synced every 4 steps' "$WORK/out" || fail "profile: no sync line"
"$PY" - "$WORK/prof0/profile.json" "$WORK/prof4/profile.json" "$WORK/prof1/profile.json" <<'PY' || fail "bytes per step did not fall by H"
import json, sys
a, b, c = (json.load(open(p)) for p in sys.argv[1:])
assert b["sync"] == {"mode": "local", "every": 4, "measured_steps": 4} and b["warmup"] == 4, b["sync"]
assert c["sync"] == a["sync"] == {"mode": "step", "every": 1, "measured_steps": 4}, (a["sync"], c["sync"])
x, y = a["comm"]["dp"]["bytes_per_step"], b["comm"]["dp"]["bytes_per_step"]
assert c["comm"]["dp"]["bytes_per_step"] == x, (x, c["comm"]["dp"])
# step: every gradient (4 P bytes) + the loss (8 bytes); local: 4 P / 4 + 8.
P = (x - 8) / 4
assert P == int(P) and y == 4 * P / 4 + 8, (x, y)
print(f"dp bytes per step: sync step {x:.0f}, local H=4 {y:.0f} (x{x / y:.3f})")
PY

# --- Resume in the middle of a period (step 6 of H = 4), Nesterov outer
# momentum: bit for bit; then with tp = 2 inside each replica, and pp = 2.
nest=(--set parallel.sync=local --set parallel.sync_every=4 --set parallel.outer_optim=nesterov
      --set parallel.outer_lr=0.7 --set parallel.outer_momentum=0.9 --set train.steps=12 --set train.eval_every=6
      --set checkpoint.every=6)
for lay in "2 dp" "4 dptp --set parallel.tp=2" "4 dppp --set parallel.pp=2 --set checkpoint.async=true"; do
  set -- $lay
  np=$1 name=$2
  shift 2
  expect_exit 0 "${MPIRUN[@]}" -np "$np" "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${nest[@]}" "$@" --out "$WORK/n_$name"
  expect_exit 0 "${MPIRUN[@]}" -np "$np" "$DTRAIN" resume "$WORK/n_$name/checkpoints/step_00000006" --out "$WORK/nr_$name"
  same_losses "$WORK/n_$name/metrics.jsonl" "$WORK/nr_$name/metrics.jsonl"
  grep -q '"eval_loss"' "$WORK/nr_$name/metrics.jsonl" || fail "$name: resumed run has no evaluation"
done
# tp and pp inside the replicas compute what one rank per replica does.
"$PY" - "$WORK/n_dp/metrics.jsonl" "$WORK/n_dptp/metrics.jsonl" "$WORK/n_dppp/metrics.jsonl" <<'PY' || fail "tp/pp inside replicas differ"
import json, sys
a, *others = ({(r["step"], k): r[k] for r in map(json.loads, open(p)) for k in ("loss", "eval_loss") if k in r} for p in sys.argv[1:])
for b in others:
    assert a.keys() == b.keys() and all(abs(a[s] - b[s]) <= 1e-5 * abs(a[s]) for s in a), [(s, a[s], b[s]) for s in a]
PY
# The checkpoint holds the anchor (model/*), the outer momentum and each replica's own state.
expect_exit 0 "$DTRAIN" inspect "$WORK/n_dp/checkpoints/step_00000006" --verify
for key in model/ln_f.weight outer/momentum/ln_f.weight replica/0/model/ln_f.weight replica/1/model/ln_f.weight \
           replica/1/optim/adamw.m/ln_f.weight; do
  grep -qE "^  $key " "$WORK/out" || fail "checkpoint lacks $key"
done
grep -qF "sync         local every 4 steps, outer nesterov (lr 0.7, momentum 0.9); model/* is the last synced model, outer/momentum/* the outer momentum, replica/<d>/* each replica's own state" \
  "$WORK/out" || fail "inspect: no local sync line"
# Another layout (one process) starts from the synced parameters and runs on.
expect_exit 0 "$DTRAIN" resume "$WORK/n_dp/checkpoints/step_00000006" --out "$WORK/nr_one"
# Resumed as data parallelism (H = 1, plain averaging) it is a resume with
# sync = "step": both start from the anchor with replica 0's inner state.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/n_dp/checkpoints/step_00000006" --set parallel.sync=step \
  --out "$WORK/nr_step"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/n_dp/checkpoints/step_00000006" --set parallel.sync_every=1 \
  --set parallel.outer_optim=average --set parallel.outer_lr=1 --out "$WORK/nr_asdp"
grep -q "is data parallelism" "$WORK/out" || fail "resume as H = 1 plain averaging: no data-parallelism line"
same_losses "$WORK/nr_step/metrics.jsonl" "$WORK/nr_asdp/metrics.jsonl"

# --- The small GPT on the shipped text: H = 4 (plain averaging) within 0.1 of
# the dp run's validation loss after 100 steps (measured: about 0.02).
if [ -f "$DTRAIN_SOURCE_DIR/data/kjv_train.bin" ]; then
  cat >"$WORK/small.toml" <<EOT
[model]
type = "gpt"
vocab_size = 256
context_length = 64
n_layer = 2
n_head = 4
n_embd = 64

[data]
train = "$DTRAIN_SOURCE_DIR/data/kjv_train.bin"
val = "$DTRAIN_SOURCE_DIR/data/kjv_val.bin"

[train]
steps = 100
micro_batch = 8
eval_every = 0
eval_batches = 16
threads = 1

[optim]
lr = 3e-3
warmup_steps = 5

[parallel]
dp = 2

[checkpoint]
at_end = false
EOT
  expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/small.toml" --out "$WORK/kjv_dp"
  expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/small.toml" --set parallel.sync=local \
    --set parallel.sync_every=4 --out "$WORK/kjv_h4"
  "$PY" - "$WORK/kjv_dp/metrics.jsonl" "$WORK/kjv_h4/metrics.jsonl" <<'PY' || fail "H = 4 trains worse than dp by more than 0.1"
import json, sys
first, dp, h4 = None, None, None
ev = [[r["eval_loss"] for r in map(json.loads, open(p)) if "eval_loss" in r] for p in sys.argv[1:]]
print(f"validation loss after 100 steps: dp {ev[0][-1]:.4f}, local H=4 {ev[1][-1]:.4f} (start {ev[0][0]:.4f})")
assert ev[0][-1] < ev[0][0] - 2 and abs(ev[1][-1] - ev[0][-1]) <= 0.1, ev
PY
else
  echo "local_sgd: data/kjv_train.bin absent: the learning comparison is skipped"
fi

# --- Data that stays on its site: one file per replica.
cp "$WORK/tok_train.bin" "$WORK/site1.bin"
# Both replicas given the same samples stay identical: one process on half the batch.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --set train.threads=1 --set model.n_head=4 --set train.grad_accum=1 \
  --set train.steps=8 --out "$WORK/half"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=8 \
  --set parallel.sync=local --set parallel.sync_every=3 \
  --set "data.train=[\"$WORK/tok_train.bin\", \"$WORK/site1.bin\"]" --out "$WORK/sites"
grep -q "each replica reads its own data.train file" "$WORK/out" || fail "no per-replica data line"
"$PY" - "$WORK/half/metrics.jsonl" "$WORK/sites/metrics.jsonl" <<'PY' || fail "per-replica files: not each replica's own samples"
import json, sys
a, b = ({(r["step"], k): r[k] for r in map(json.loads, open(p)) for k in ("loss", "eval_loss") if k in r} for p in sys.argv[1:])
assert a.keys() == b.keys() and all(abs(a[s] - b[s]) <= 1e-6 * abs(a[s]) for s in a), [(s, a[s], b[s]) for s in a]
PY
# Replica 1's file missing: named, with its replica.
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" \
  --set "data.train=[\"$WORK/tok_train.bin\", \"$WORK/nowhere.bin\"]" --out "$WORK/bad"
expect_err "data.train[1] (data-parallel replica 1's own file)"
expect_err "nowhere.bin"
# One file per replica, or one for all.
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" \
  --set "data.train=[\"$WORK/tok_train.bin\", \"$WORK/site1.bin\", \"$WORK/site1.bin\"]" --out "$WORK/bad"
expect_err "data.train: lists 3 files, but parallel.dp is 2: give one file per data-parallel replica"

# --- The CNN: batch-norm statistics are averaged at each sync and restored per
# replica; a mid-period checkpoint resumes bit for bit, its evaluation too.
if [ -f "$DTRAIN_SOURCE_DIR/data/mnist/train-images-idx3-ubyte" ]; then
  cnn=(--set model.stem_channels=8 --set "model.channels=[8, 16]" --set "model.blocks=[1, 1]"
    --set train.micro_batch=8 --set train.steps=8 --set optim.warmup_steps=2 --set train.eval_every=4
    --set train.eval_batches=4 --set train.threads=1 --set parallel.dp=2 --set parallel.sync=local
    --set parallel.sync_every=3 --set checkpoint.every=4)
  (cd "$DTRAIN_SOURCE_DIR" && expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run configs/cnn-mnist.toml "${cnn[@]}" --out "$WORK/cnn_a")
  (cd "$DTRAIN_SOURCE_DIR" && expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/cnn_a/checkpoints/step_00000004" --out "$WORK/cnn_b")
  same_losses "$WORK/cnn_a/metrics.jsonl" "$WORK/cnn_b/metrics.jsonl"
  cmp -s <(json_field "$WORK/cnn_a/metrics.jsonl" eval_accuracy | tail -1) <(json_field "$WORK/cnn_b/metrics.jsonl" eval_accuracy | tail -1) ||
    fail "CNN: the resumed evaluation differs"
  expect_exit 0 "$DTRAIN" inspect "$WORK/cnn_a/checkpoints/step_00000004"
  grep -qE "^  replica/1/model/stem\.bn\.running_var " "$WORK/out" || fail "CNN: no per-replica running statistics"
fi

# --- ZeRO shards one optimizer; local sync has one per replica: refused
# (by dtrain plan too). H = 1 with plain averaging is data parallelism: ZeRO runs.
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set parallel.sync=local \
  --set parallel.sync_every=4 --set parallel.zero=1 --out "$WORK/bad"
expect_err "parallel.sync = \"local\" with parallel.zero = 1"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${local1[@]}" --set parallel.zero=1 \
  --set train.steps=6 --out "$WORK/z1"
grep -q "ZeRO-1" "$WORK/out" || fail "H = 1 with plain averaging and ZeRO-1: not sharded"
expect_exit 2 "$DTRAIN" plan "$WORK/tiny.toml" --devices 2 --set parallel.sync=local --set parallel.sync_every=4 \
  --set parallel.zero=1
expect_err "--set parallel.zero=1 with parallel.sync = \"local\" (sync_every 4, outer average)"
for h in 4 1; do
  expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 4 --top 0 --json --set parallel.sync=local \
    --set parallel.sync_every=$h
  cp "$WORK/out" "$WORK/plan$h.json"
done
"$PY" - "$WORK/plan4.json" "$WORK/plan1.json" <<'PY' || fail "plan: ZeRO layouts for local sync, or none for H = 1"
import json, sys
zeros = [sorted({l["zero"] for l in json.load(open(p))["feasible"]}) for p in sys.argv[1:]]
assert zeros[0] == [0] and max(zeros[1]) > 0, zeros
PY
echo "local_sgd: ok"
