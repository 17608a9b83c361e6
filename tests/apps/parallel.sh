# The binary under mpirun: data, tensor and pipeline parallel runs print their
# layout and give the one-process losses; a layout that does not match the
# ranks is refused in one line; a rank that dies ends the job (exit != 0)
# quickly instead of leaving the others hanging.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
make_tokens
tiny_gpt_config
base=(--set train.steps=12 --set train.threads=1 --set model.n_head=4 --set train.eval_every=6)

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --out "$WORK/one"
json_field "$WORK/one/metrics.jsonl" loss >"$WORK/one.loss"
[ "$(wc -l <"$WORK/one.loss")" -eq 12 ] || fail "one-process run: expected 12 losses"

compare() {  # compare NAME: losses within 1e-5 relative of the one-process run
  json_field "$WORK/$1/metrics.jsonl" loss >"$WORK/$1.loss"
  python3 - "$WORK/one.loss" "$WORK/$1.loss" "$1" <<'PY' || fail "$1: losses differ from one process"
import sys
a = [float(x) for x in open(sys.argv[1])]
b = [float(x) for x in open(sys.argv[2])]
assert len(a) == len(b), (len(a), len(b))
for i, (x, y) in enumerate(zip(a, b)):
    assert abs(x - y) <= 1e-5 * abs(x), (sys.argv[3], i, x, y)
PY
}

# grad_accum 2 x micro 4 on one rank = grad_accum 1 x micro 4 x dp 2.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --out "$WORK/dp" \
  --set parallel.dp=2 --set train.grad_accum=1
grep -q "layout dp=2 tp=1 pp=1 on 2 ranks" "$WORK/out" || fail "no layout line"
compare dp
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --out "$WORK/tp" \
  --set parallel.tp=2
compare tp
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --out "$WORK/pp" \
  --set parallel.pp=2 --verbose
grep -q "rank 1 = dp 0, tp 0, pp 1" "$WORK/err" || fail "--verbose: no mesh coordinates"
grep -q "B mb 1 slot" "$WORK/err" || fail "--verbose: no step-loop trace"
compare pp
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --out "$WORK/dptp" \
  --set parallel.dp=2 --set parallel.tp=2 --set train.grad_accum=1 --set parallel.zero=1
compare dptp
[ "$(grep -c "^done:" "$WORK/out")" -eq 1 ] || fail "expected one summary line (rank 0 only) of 4 ranks"

# The degrees must multiply to the ranks launched: one line, exit 2, printed once.
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=4
expect_err "parallel: dp x tp x pp = 4 but 2 ranks were launched"
[ "$(grep -c "dp x tp x pp" "$WORK/err")" -eq 1 ] || fail "config error printed more than once"
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.tp=2 --set model.n_head=3 --set model.n_embd=33
expect_err "model.n_head (3) is not divisible by parallel.tp (2)"

# The CNN has no tensor-parallel split: refused in one line.
if [ -f "$DTRAIN_SOURCE_DIR/data/mnist/train-images-idx3-ubyte" ]; then
  (cd "$DTRAIN_SOURCE_DIR" && expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" run configs/cnn-mnist.toml --set parallel.tp=2 --out "$WORK/cnn")
  expect_err "tensor parallelism is not available for the CNN"
fi

# Ranks that disagree before training (each node reads its own copy of the config and files):
# one line from the rank that differs, exit 2, no training, no hang. A data file missing on
# rank 1 only had left rank 0 training alone until parallel.timeout; configs differing in
# the model's width had crashed both ranks (mismatched all-reduces: heap corruption, SIGABRT);
# in the learning rate, trained on without a word.
mpmd() {  # mpmd NAME RANK1_ARGS...: rank 0 runs the tiny config at dp 2, rank 1 the same plus its args
  local name=$1; shift
  expect_exit 2 timeout 60 "${MPIRUN[@]}" -np 1 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 \
    --set train.grad_accum=1 --set train.threads=1 --out "$WORK/$name" : \
    -np 1 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 --set train.grad_accum=1 --set train.threads=1 \
    --out "$WORK/$name" "$@"
  [ "$(grep -c "^dtrain: " "$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "$name: not one dtrain line"; }
  ! grep -q "step" "$WORK/out" || fail "$name: trained"
}
mpmd miss --set data.train=/nonexistent/train.bin
expect_err "dtrain: rank 1: error: data.train: data file '/nonexistent/train.bin' not found"
mpmd width --set model.n_embd=64
expect_err "dtrain: rank 1: error: this rank's config differs from rank 0's: model.n_embd = 64 here, model.n_embd = 32 on rank 0"
mpmd lr --set optim.lr=0.125
expect_err "dtrain: rank 1: error: this rank's config differs from rank 0's: optim.lr = 0.125 here, optim.lr = "
mpmd steps --set train.steps=7
expect_err "train.steps = 7 here"
# A copy of the config under another name is the same config (its '# resolved from' comment aside);
# a relative --out from ranks started in other directories is not (each rank's part of a
# checkpoint went to its own directory and the save failed after training).
cp "$WORK/tiny.toml" "$WORK/copy.toml"
expect_exit 0 timeout 60 "${MPIRUN[@]}" -np 1 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 --set train.grad_accum=1 \
  --set train.steps=2 --set optim.warmup_steps=0 --set train.threads=1 --out "$WORK/copy" : -np 1 "$DTRAIN" run "$WORK/copy.toml" \
  --set parallel.dp=2 --set train.grad_accum=1 --set train.steps=2 --set optim.warmup_steps=0 --set train.threads=1 \
  --out "$WORK/copy"
mkdir -p "$WORK/wa" "$WORK/wb"
expect_exit 2 timeout 60 "${MPIRUN[@]}" -np 1 -wdir "$WORK/wa" "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 \
  --set train.grad_accum=1 --out o : -np 1 -wdir "$WORK/wb" "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 \
  --set train.grad_accum=1 --out o
expect_err "dtrain: rank 1: error: this rank's config differs from rank 0's: log.out_dir = \"$WORK/wb/o\" here, log.out_dir = \"$WORK/wa/o\" on rank 0"
# A resume that one rank refuses (it was given another checkpoint, with a newer one in the
# directory): said by that rank, exit 2; rank 0 had waited for it for ever.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 --set train.grad_accum=1 \
  --set train.steps=4 --set optim.warmup_steps=0 --set checkpoint.every=2 --set train.threads=1 --out "$WORK/two"
expect_exit 2 timeout 60 "${MPIRUN[@]}" -np 1 "$DTRAIN" resume "$WORK/two/checkpoints/step_00000004" --set train.steps=6 : \
  -np 1 "$DTRAIN" resume "$WORK/two/checkpoints/step_00000002" --set train.steps=6
expect_err "dtrain: rank 1: error: checkpoint.dir: '$WORK/two/checkpoints' holds step_00000004, newer than step 2 being resumed"
[ "$(grep -c "^dtrain: " "$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "one rank's resume refusal: not one dtrain line"; }
# Rank 0's own failure is said by rank 0, tagged; a bad config (every rank's) once, untagged.
expect_exit 2 timeout 60 "${MPIRUN[@]}" -np 1 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 \
  --set data.val=/nonexistent/val.bin --out "$WORK/miss0" : -np 1 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 --out "$WORK/miss0"
[ "$(grep -c "^dtrain: " "$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "miss0: not one dtrain line"; }
expect_err "dtrain: rank 0: error: data.val: data file '/nonexistent/val.bin' not found"
expect_exit 2 timeout 60 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2 \
  --set data.val=/nonexistent/val.bin --out "$WORK/miss01"
[ "$(grep -c "^dtrain: " "$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "miss01: not one dtrain line"; }
expect_err "dtrain: error: data.val: data file '/nonexistent/val.bin' not found"

# A rank killed mid-run: the job ends with an error within seconds, no hang.
start=$(date +%s)
set +e
timeout 120 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=100000 \
  --set parallel.dp=2 --set train.grad_accum=1 --set parallel.timeout=20 --out "$WORK/dead" \
  >"$WORK/out" 2>"$WORK/err" &
job=$!
for _ in $(seq 100); do
  pid=$(pgrep -f "dtrain run .*$WORK/dead" | while read -r p; do
    [ "$(tr '\0' ' ' </proc/$p/cmdline | cut -d' ' -f1)" = "$DTRAIN" ] && echo "$p"; done | tail -1)
  [ -n "$pid" ] && grep -q "step" "$WORK/out" 2>/dev/null && break
  sleep 0.2
done
[ -n "$pid" ] || fail "no dtrain rank found to kill"
kill -9 "$pid"
wait "$job"
code=$?
set -e
elapsed=$(( $(date +%s) - start ))
[ "$code" -ne 0 ] && [ "$code" -ne 124 ] || fail "killing a rank: exit $code (124 = hung)"
[ "$elapsed" -lt 60 ] || fail "killing a rank took ${elapsed}s to end the job"
grep -q "exited on signal 9" "$WORK/err" || { cat "$WORK/err" >&2; fail "no message naming the killed rank"; }
echo "parallel: ok"
