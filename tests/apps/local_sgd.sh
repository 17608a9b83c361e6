# parallel.sync = "local" (local SGD / DiLoCo, train/local_sync.h) under mpirun:
# - H = 1 with plain averaging is data parallelism up to float rounding: after
#   one SGD step every parameter is within the derived bound of the dp run's
#   (below), and 12 steps' losses agree to 1e-5;
# - H = 4 trains the small GPT on the shipped text to within 0.1 of the dp
#   run's validation loss;
# - the dp bytes per step (dtrain profile) fall by H;
# - a checkpoint in the middle of a period resumes bit for bit (each replica's
#   own parameters and inner state, the anchor and the outer momentum), also
#   with tp and pp inside the replicas (and an asynchronous checkpoint); another
#   layout resumes from the anchor;
# - data.train with one file per replica: each replica reads its own (a missing
#   one is named with its replica), the list length must equal dp;
# - ZeRO with local sync is refused in one line.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PY=/usr/bin/python3
make_tokens
tiny_gpt_config
base=(--set train.threads=1 --set model.n_head=4 --set parallel.dp=2 --set train.grad_accum=1)
sgd=(--set optim.name=sgd --set optim.lr=0.05 --set optim.grad_clip=0 --set optim.warmup_steps=0
     --set optim.schedule=constant --set optim.weight_decay=0)
local1=(--set parallel.sync=local --set parallel.sync_every=1)

# --- H = 1, plain averaging, against ordinary data parallelism (SGD: the
# update is linear in the gradient, so the two agree in exact arithmetic; with
# AdamW or clipping they would not). After one step, with u = 2^-24:
#   dp:    p' = fl(p0 - fl(lr * fl(sum_d g_d / dp)))
#   local: p' = fl(p0 + fl(sum_d fl(fl(p0 - fl(lr g_d)) - p0)) / dp)
# Each rounding errs by at most u times its result, and every result is
# bounded by |p0|, |p'| or lr * mean_d |g_d| =: lr G (G read from the replicas'
# momentum buffers, which hold g_d after one step); adding them up:
#   dp <= u (2 lr G + |p'|),  local <= u (|p0| + 4 lr G + |p'|),
# so |p'_dp - p'_local| <= u (|p0| + 6 lr G + 2 |p'|) per element (bit-equal
# results are impossible in general: the replicas' rounded updates are summed
# where dp sums the gradients). p0 comes from a run with lr 1e-30 (no change).
one=(--set train.steps=1 --set train.eval_every=0)
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${sgd[@]}" "${one[@]}" --out "$WORK/s1"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${sgd[@]}" "${one[@]}" "${local1[@]}" --out "$WORK/l1"
grep -q "sync local: the 2 data-parallel replicas sync every 1 steps" "$WORK/out" || fail "no sync line"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${sgd[@]}" "${one[@]}" --set optim.lr=1e-30 --out "$WORK/p0"
"$PY" - "$WORK"/{s1,l1,p0}/checkpoints/step_00000001/checkpoint.h5 <<'PY' || fail "H = 1 differs from dp beyond the bound"
import h5py, numpy as np, sys
a, b, c = (h5py.File(p) for p in sys.argv[1:])
u, lr, worst, n, same = 2.0 ** -24, 0.05, 0.0, 0, 0
for k in a.attrs["tensors"].split():
    if not k.startswith("model/"):
        continue
    name = k[len("model/"):]
    x, y, p0 = (f[k][...].astype(np.float64) for f in (a, b, c))
    G = sum(np.abs(b[f"replica/{d}/optim/sgd.momentum/{name}"][...].astype(np.float64)) for d in (0, 1)) / 2
    bound = u * (np.abs(p0) + 6 * lr * G + 2 * np.maximum(np.abs(x), np.abs(y)))
    d = np.abs(x - y)
    assert (d <= bound).all(), (k, float((d / np.maximum(bound, 1e-45)).max()))
    worst = max(worst, float((d / np.maximum(bound, 1e-45)).max()))
    n, same = n + x.size, same + int((d == 0).sum())
print(f"H=1 vs dp after one SGD step: {same} of {n} parameters bit-equal, worst {worst:.3f} of the bound")
PY
twelve=(--set train.steps=12 --set train.eval_every=6)
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${sgd[@]}" "${twelve[@]}" --out "$WORK/s12"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${sgd[@]}" "${twelve[@]}" "${local1[@]}" --out "$WORK/l12"
"$PY" - "$WORK/s12/metrics.jsonl" "$WORK/l12/metrics.jsonl" <<'PY' || fail "H = 1 losses differ from dp"
import json, sys
a, b = ({(r["step"], k): r[k] for r in map(json.loads, open(p)) for k in ("loss", "eval_loss") if k in r} for p in sys.argv[1:])
assert a.keys() == b.keys() and len(a) == 15, (sorted(a), sorted(b))
for s in a:
    assert abs(a[s] - b[s]) <= 1e-5 * abs(a[s]), (s, a[s], b[s])
PY

# --- Bytes per step over dp fall by H (the profile averages over whole periods).
for h in 1 4; do
  mode=(--set parallel.sync=local --set parallel.sync_every=$h)
  [ $h = 1 ] && mode=(--set parallel.sync=step)
  expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" profile "$WORK/tiny.toml" "${base[@]}" "${mode[@]}" --steps 4 --warmup 1 --out "$WORK/prof$h"
done
grep -q 'parameters synced every 4 steps' "$WORK/out" || fail "profile: no sync line"
"$PY" - "$WORK/prof1/profile.json" "$WORK/prof4/profile.json" <<'PY' || fail "bytes per step did not fall by H"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert b["sync"] == {"mode": "local", "every": 4, "measured_steps": 4} and b["warmup"] == 4, b["sync"]
x, y = a["comm"]["dp"]["bytes_per_step"], b["comm"]["dp"]["bytes_per_step"]
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
# Another layout (one process) starts from the synced parameters and runs on.
expect_exit 0 "$DTRAIN" resume "$WORK/n_dp/checkpoints/step_00000006" --out "$WORK/nr_one"

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

# --- ZeRO shards one optimizer; local sync has one per replica: refused.
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set parallel.sync=local \
  --set parallel.zero=1 --out "$WORK/bad"
expect_err "parallel.sync = \"local\" with parallel.zero = 1"
echo "local_sgd: ok"
