# `dtrain eval CHECKPOINT`: the trainer's own evaluation of a checkpoint. Each
# checkpoint's loss is the eval_loss its run logged at that step, bit for bit
# (fp32, bf16, a tp=2 run on its 2 ranks, the CNN with its accuracy); another
# layout gives it to rounding. It reads only: the run directory is left as it
# was, and the training data need not exist. --batches 0 reads the whole set,
# --data another corpus (a glob of shards); bad input is one line, exit 2.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
make_tokens
tiny_gpt_config
base=(--set train.threads=1 --set optim.warmup_steps=2 --set checkpoint.every=10)

# The loss (and accuracy) of `dtrain eval ... --json` against the run's record
# at the checkpoint's step, as written: equal text is equal bits.
logged() {  # logged METRICS STEP KEY
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("step") == int(sys.argv[2]) and sys.argv[3] in r: print(repr(r[sys.argv[3]]))' "$1" "$2" "$3"
}
evaluated() { python3 -c 'import json,sys; print(repr(json.loads(open(sys.argv[1]).read())[sys.argv[2]]))' "$WORK/out" "$1"; }
same_as_logged() {  # same_as_logged RUN STEP [KEY]: the last eval's --json output against RUN's metrics
  local key=${3:-loss} want got
  want=$(logged "$1/metrics.jsonl" "$2" "eval_$key")
  got=$(evaluated "$key")
  [ -n "$want" ] && [ "$want" = "$got" ] || fail "$1 step $2: eval gives $key $got, the run logged $want"
}
close_to() {  # close_to A B: |A - B| <= 1e-6 |B|
  python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 1e-6 * abs(b))' "$1" "$2" ||
    fail "$1 and $2 differ by more than rounding"
}

# One process, fp32: every checkpoint's loss is the one logged at its step.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --out "$WORK/a"
snapshot() { (cd "$WORK/a" && find . -type f -printf '%p %s %T@\n' | sort && sha256sum metrics.jsonl config.toml); }
snapshot >"$WORK/before"
for step in 10 20 30; do
  expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints/step_000000$step" --json
  same_as_logged "$WORK/a" $step
done
expect_err "dtrain: evaluating $WORK/a/checkpoints/step_00000030: step 30 of 30"
expect_err "reading 4 of the 24 micro-batches of 4 sequences in data.val '$WORK/tok_val.bin' (1 file, 1546 tokens, 96 sequences of 17 tokens): train.eval_batches = 4, as the run evaluated; --batches 0 reads them all"
[ "$(evaluated items)" = 256 ] || fail "4 micro-batches of 4 x 16 tokens: $(cat "$WORK/out")"
# A directory of checkpoints: the newest. The plain line has the run's eval format and perplexity.
expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints"
loss=$(logged "$WORK/a/metrics.jsonl" 30 eval_loss)
grep -qE "^eval  step     30/30 \| loss $(printf %.4f "$loss") \| perplexity [0-9.]+ \| 256 tokens in [0-9.]+ s$" "$WORK/out" ||
  fail "the result line: $(cat "$WORK/out")"
[ "$(wc -l <"$WORK/out")" = 1 ] || fail "stdout holds more than the result: $(cat "$WORK/out")"
# The whole validation set.
expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints" --batches 0 --json
[ "$(evaluated items)" = 1536 ] || fail "--batches 0 read $(evaluated items) tokens, expected 24 x 4 x 16"
expect_err "reading 24 of the 24 micro-batches"
# --all: every checkpoint of the run, oldest first, each as logged; then the best, on stderr.
expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints" --all --json
[ "$(python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1])))' "$WORK/out")" = "10 20 30" ] ||
  fail "--all: $(cat "$WORK/out")"
python3 - "$WORK/out" "$WORK/a/metrics.jsonl" <<'PY' || fail "--all: a loss differs from the run's"
import json, sys
logged = {r["step"]: r["eval_loss"] for r in map(json.loads, open(sys.argv[2])) if "eval_loss" in r}
for r in map(json.loads, open(sys.argv[1])):
    assert repr(r["loss"]) == repr(logged[r["step"]]), (r, logged)
PY
best=$(python3 -c 'import json,sys; r = min(map(json.loads, open(sys.argv[1])), key=lambda r: r["loss"]); print("%.4f, at step %d" % (r["loss"], r["step"]))' "$WORK/out")
expect_err "dtrain: 3 checkpoints evaluated; the lowest loss, $best"
# Each checkpoint evaluated is named on stderr as it is (the first lines named the newest only).
expect_err "dtrain: evaluating $WORK/a/checkpoints/step_00000010: step 10"
expect_err "dtrain: evaluating $WORK/a/checkpoints/step_00000020: step 20"
expect_exit 2 "$DTRAIN" eval "$WORK/a/checkpoints/step_00000010" --all
expect_err "--all: '$WORK/a/checkpoints/step_00000010' is one checkpoint; give the directory that holds them"
# A damaged checkpoint is passed over with a warning, as a resume falls back.
cp -r "$WORK/a/checkpoints" "$WORK/damaged"
truncate -s 1000 "$WORK/damaged/step_00000020/rank_00000.h5"
expect_exit 0 "$DTRAIN" eval "$WORK/damaged" --all
[ "$(grep -c '^eval  step' "$WORK/out")" = 2 ] || fail "--all over a damaged checkpoint: $(cat "$WORK/out")"
expect_err "warning: checkpoint $WORK/damaged/step_00000020: rank_00000.h5: is 1000 bytes, the manifest recorded"
expect_err "dtrain: 2 checkpoints evaluated (1 passed over, above)"

# Any micro-batch: an evaluation runs no step, so the global batch follows it (said only where given).
expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints" --set train.micro_batch=7 --batches 2 --json
[ "$(evaluated items)" = 224 ] || fail "2 micro-batches of 7 x 16 tokens: $(evaluated items)"
expect_err "reading 2 of the 14 micro-batches of 7 sequences in data.val '$WORK/tok_val.bin' (1 file, 1546 tokens, 96 sequences of 17 tokens) (--batches)"
! grep -q "global_batch" "$WORK/err" || fail "$(cat "$WORK/err")"
# The result is the product: a failed write of it fails the command; a failed write to stderr
# (progress) or a reader gone (| head) does not.
[ -w /dev/full ] && { "$DTRAIN" eval "$WORK/a/checkpoints" >/dev/full 2>"$WORK/err" && fail "a result lost to a full disk exited 0"
  expect_err "cannot write the result to stdout: No space left on device"; }
"$DTRAIN" eval "$WORK/a/checkpoints" --json >"$WORK/out" 2>/dev/full || fail "a full stderr failed the evaluation"
same_as_logged "$WORK/a" 30

# Keys other than the model's may change: a shorter context (193 sequences of 8 tokens), the seed.
expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints" --batches 0 --set train.seq_len=8 --set train.seed=5 --json
[ "$(evaluated items)" = 1544 ] || fail "train.seq_len=8: $(evaluated items) tokens, expected 193 x 8"
expect_err "override train.seq_len: 16 -> 8"
# Read only: the run's files are as they were, and no lock or output was made.
snapshot >"$WORK/after"
cmp -s "$WORK/before" "$WORK/after" || fail "eval changed the run directory: $(diff "$WORK/before" "$WORK/after")"

# Another corpus: --data takes a glob of shards (here the validation file twice: the same mean).
mkdir "$WORK/shards"
cp "$WORK/tok_val.bin" "$WORK/shards/val_000.bin"
cp "$WORK/tok_val.bin" "$WORK/shards/val_001.bin"
expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints" --data "$WORK/shards/val_*.bin" --batches 0 --json
[ "$(evaluated items)" = 3072 ] || fail "two shards: $(evaluated items) tokens"
close_to "$(evaluated loss)" "$(python3 -c 'import json; print(json.load(open("/dev/stdin"))["loss"])' < <("$DTRAIN" eval "$WORK/a/checkpoints" --batches 0 --json 2>/dev/null))"
expect_err "in data.val '$WORK/shards/val_*.bin' (2 files, 3092 tokens, 192 sequences of 17 tokens)"
# The training data gone (a checkpoint evaluated elsewhere): evaluation reads only data.val.
mv "$WORK/tok_train.bin" "$WORK/moved.bin"
expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints/step_00000020" --json
same_as_logged "$WORK/a" 20
mv "$WORK/moved.bin" "$WORK/tok_train.bin"

# A signed run's checkpoints evaluate with the public key alone (nothing is signed).
expect_exit 0 "$DTRAIN" keygen "$WORK/key"
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=10 \
  --set checkpoint.sign_key_file="\"$WORK/key.key\"" --out "$WORK/signed"
mv "$WORK/key.key" "$WORK/elsewhere.key"
# The secret key gone: verified with key.pub beside where it was (as keygen writes them).
expect_exit 0 "$DTRAIN" eval "$WORK/signed/checkpoints" --json
same_as_logged "$WORK/signed" 10
expect_err "checking the signature of $WORK/signed/checkpoints/step_00000010 with key"
expect_err "('$WORK/key.pub', named by the checkpoint's config)"
mv "$WORK/key.pub" "$WORK/elsewhere.pub"
expect_exit 2 "$DTRAIN" eval "$WORK/signed/checkpoints"
expect_err "checkpoint.sign_key_file: '$WORK/key.key' does not exist: an evaluation only verifies the run's signatures: give the public key with --verify-key PREFIX.pub"
expect_exit 0 "$DTRAIN" eval "$WORK/signed/checkpoints" --verify-key "$WORK/elsewhere.pub" --json
same_as_logged "$WORK/signed" 10
expect_err "('$WORK/elsewhere.pub', --verify-key)"
mv "$WORK/elsewhere.key" "$WORK/key.key"
mv "$WORK/elsewhere.pub" "$WORK/key.pub"
# --all verifies every checkpoint with that key: continued under another key, the older one is
# refused (not passed over as damage).
expect_exit 0 "$DTRAIN" keygen "$WORK/key2"
expect_exit 0 "$DTRAIN" resume "$WORK/signed/checkpoints" --verify-key "$WORK/key.pub" --set train.steps=20 \
  --set checkpoint.sign_key_file="\"$WORK/key2.key\""
expect_exit 2 "$DTRAIN" eval "$WORK/signed/checkpoints" --all --verify-key "$WORK/key2.pub"
expect_err "checkpoint $WORK/signed/checkpoints/step_00000010: manifest: signed with another key"
# Without --verify-key each checkpoint is verified with the key its own config names, as resume does.
expect_exit 0 "$DTRAIN" eval "$WORK/signed/checkpoints" --all
[ "$(grep -c '^eval  step' "$WORK/out")" = 2 ] || fail "--all over a key rotation: $(cat "$WORK/out")"
# A key file that is gone is named with its checkpoint; a --set of the key file applies to every
# checkpoint, as it does to the one resume loads.
expect_exit 0 "$DTRAIN" keygen "$WORK/key3"
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=10 --set checkpoint.every=5 \
  --set checkpoint.sign_key_file="\"$WORK/key3.key\"" --out "$WORK/signed3"
mv "$WORK/key3.key" "$WORK/moved3.key"
mv "$WORK/key3.pub" "$WORK/moved3.pub"
expect_exit 2 "$DTRAIN" eval "$WORK/signed3/checkpoints" --all
expect_err "checkpoint.sign_key_file: '$WORK/key3.key' does not exist"
expect_exit 0 "$DTRAIN" eval "$WORK/signed3/checkpoints" --all --set checkpoint.verify_key_file="\"$WORK/moved3.pub\""
[ "$(grep -c '^eval  step' "$WORK/out")" = 2 ] || fail "--all with a --set key: $(cat "$WORK/out")"

# A Hugging Face GPT-2 directory (here the run's own export) evaluates as a baseline on --data:
# shapes and tokenizer from its config.json, the whole set in micro-batches of 8 by default; the
# same weights give the checkpoint's loss bit for bit (at the same micro-batch and threads), and
# on 2 ranks (2 data-parallel replicas by default) to rounding.
expect_exit 0 "$DTRAIN" export "$WORK/a/checkpoints" --format hf --out "$WORK/hf"
expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints" --batches 0 --set train.micro_batch=8 --json
ckpt_loss=$(evaluated loss)
expect_exit 0 "$DTRAIN" eval "hf:$WORK/hf" --data "$WORK/tok_val.bin" --set train.threads=1 --json
[ "$(evaluated loss)" = "$ckpt_loss" ] || fail "hf:DIR gives $(evaluated loss), its checkpoint $ckpt_loss"
[ "$(evaluated items)" = 1536 ] && [ "$(evaluated model)" = "'hf:$WORK/hf'" ] || fail "$(cat "$WORK/out")"
expect_err "evaluating hf:$WORK/hf: GPT-2 of 2 blocks, width 32, 2 heads, 16 positions, vocabulary 256 (byte ids)"
expect_err "reading 12 of the 12 micro-batches of 8 sequences"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" eval "hf:$WORK/hf" --data "$WORK/tok_val.bin" --set train.threads=1 --json
close_to "$(evaluated loss)" "$ckpt_loss"
# A --set of parallel.* that is no degree keeps the default layout (a replica per rank).
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" eval "hf:$WORK/hf" --data "$WORK/tok_val.bin" --set parallel.timeout=60
expect_exit 0 "$DTRAIN" eval "hf:$WORK/hf" --data "$WORK/tok_val.bin" --batches 2
grep -qE "^eval  hf:$WORK/hf \| loss [0-9.]+ \| perplexity [0-9.]+ \| 256 tokens in" "$WORK/out" || fail "$(cat "$WORK/out")"
expect_exit 2 "$DTRAIN" eval "hf:$WORK/hf"
expect_err "--data: hf:$WORK/hf has no validation data of its own: give a token file or glob pattern (llm.c .bin) in its tokenizer's ids"
expect_exit 2 "$DTRAIN" eval "hf:$WORK/nowhere" --data "$WORK/tok_val.bin"
expect_err "dtrain: error: hf:$WORK/nowhere: no such directory: expected a Hugging Face model directory"
# The model is the directory's: a bad config.json value is one line before any model is built,
# and its keys cannot be --set.
mkdir "$WORK/badhf"
cp "$WORK/hf/model.safetensors" "$WORK/badhf/"
python3 -c 'import json,sys; c = json.load(open(sys.argv[1])); c["n_head"] = 0; json.dump(c, open(sys.argv[2], "w"))' \
  "$WORK/hf/config.json" "$WORK/badhf/config.json"
expect_exit 2 "$DTRAIN" eval "hf:$WORK/badhf" --data "$WORK/tok_val.bin"
expect_err "$WORK/badhf/config.json: n_head: expected a positive integer, got 0"
! grep -q "evaluating" "$WORK/err" || fail "a model was built from a bad config.json: $(cat "$WORK/err")"
# Another architecture (without GPT-2's keys: its 1024 positions by default, more than the data
# holds) is refused as such, first, not as data too short for GPT-2's defaults.
python3 -c 'import json,sys; c = json.load(open(sys.argv[1])); c["model_type"] = "mistral"; del c["n_positions"]; json.dump(c, open(sys.argv[2], "w"))' \
  "$WORK/hf/config.json" "$WORK/badhf/config.json"
head -c 1200 "$WORK/tok_val.bin" >"$WORK/short.bin"
python3 -c 'import struct,sys; d = bytearray(open(sys.argv[1], "rb").read()); struct.pack_into("<i", d, 8, 88); open(sys.argv[1], "wb").write(d[:1024 + 176])' "$WORK/short.bin"
expect_exit 2 "$DTRAIN" eval "hf:$WORK/badhf" --data "$WORK/short.bin"
expect_err "$WORK/badhf/config.json: model_type = \"mistral\": dtrain imports \"gpt2\" and \"llama\" directories"
! grep -q "evaluating\|too few" "$WORK/err" || fail "another architecture: $(cat "$WORK/err")"
# A GPT-2 config.json without n_positions (GPT2Config's 1024) over a 16-row position table: the
# mismatch is said, not data too short for 1024 positions.
python3 -c 'import json,sys; c = json.load(open(sys.argv[1])); del c["n_positions"]; json.dump(c, open(sys.argv[2], "w"))' \
  "$WORK/hf/config.json" "$WORK/badhf/config.json"
expect_exit 2 "$DTRAIN" eval "hf:$WORK/badhf" --data "$WORK/short.bin"
expect_err "$WORK/badhf/model.safetensors: tensor 'transformer.wpe.weight' has 16 rows but $WORK/badhf/config.json's n_positions = 1024 (absent: GPT2Config's default)"
expect_exit 2 "$DTRAIN" eval "hf:$WORK/hf" --data "$WORK/tok_val.bin" --set model.vocab_size=512
expect_err "--set model.vocab_size=512: the model is hf:$WORK/hf's, as its config.json describes it"
expect_exit 2 "$DTRAIN" eval "hf:$WORK/hf" --data "$WORK/tok_val.bin" --all
expect_err "--all: hf:DIR is one model; --all takes a directory of checkpoints"

# bf16 mixed precision: evaluated as the run evaluated, in bf16.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.precision=bf16 --out "$WORK/bf16"
expect_exit 0 "$DTRAIN" eval "$WORK/bf16/checkpoints" --json
same_as_logged "$WORK/bf16" 30

# A tp=2 run on its 2 ranks: bit for bit; on one process and as pp=2 on 2 ranks: to rounding.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set parallel.tp=2 --out "$WORK/tp"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" eval "$WORK/tp/checkpoints" --json
same_as_logged "$WORK/tp" 30
[ "$(wc -l <"$WORK/out")" = 1 ] || fail "more than rank 0 printed: $(cat "$WORK/out")"
tp_loss=$(evaluated loss)
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" eval "$WORK/tp/checkpoints" --all
[ "$(grep -c '^eval  step' "$WORK/out")" = 3 ] || fail "--all on 2 ranks: $(cat "$WORK/out")"
expect_exit 0 "$DTRAIN" eval "$WORK/tp/checkpoints" --json
close_to "$(evaluated loss)" "$tp_loss"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" eval "$WORK/tp/checkpoints" --set parallel.tp=1 --set parallel.pp=2 --json
close_to "$(evaluated loss)" "$tp_loss"
# On 2 data-parallel replicas each reads half of the parameters and they gather the rest
# before evaluating; --all loads one checkpoint after another into the same replicas.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" eval "$WORK/tp/checkpoints" --set parallel.tp=1 --set parallel.dp=2 --json
close_to "$(evaluated loss)" "$tp_loss"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" eval "$WORK/tp/checkpoints" --set parallel.tp=1 --set parallel.dp=2 --all
cp "$WORK/out" "$WORK/all_dp2"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" eval "$WORK/tp/checkpoints" --all
[ "$(grep -c '^eval  step' "$WORK/all_dp2")" = 3 ] &&
  cmp -s <(grep -o '^eval  step [0-9]* | loss [0-9.]*' "$WORK/all_dp2") <(grep -o '^eval  step [0-9]* | loss [0-9.]*' "$WORK/out") ||
  fail "eval --all on dp 2: $(cat "$WORK/all_dp2"), on tp 2: $(cat "$WORK/out")"

# Local sync with a training file per replica, evaluated on one process: the training keys are
# the validation data's, so the per-replica list (and its length against dp) does not matter.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set parallel.dp=2 \
  --set parallel.sync=local --set parallel.sync_every=5 \
  --set "data.train=[\"$WORK/tok_train.bin\", \"$WORK/tok_val.bin\"]" --out "$WORK/sites"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" eval "$WORK/sites/checkpoints" --json
same_as_logged "$WORK/sites" 30
sites_loss=$(evaluated loss)
expect_exit 0 "$DTRAIN" eval "$WORK/sites/checkpoints" --json
close_to "$(evaluated loss)" "$sites_loss"
! grep -q "data.train" "$WORK/err" || fail "$(cat "$WORK/err")"

# The CNN: its loss and accuracy as logged (batch norm's running statistics restored).
cd "$DTRAIN_SOURCE_DIR"  # the config's MNIST paths
cnn=(--set model.stem_channels=8 --set "model.channels=[8, 16]" --set "model.blocks=[1, 1]"
  --set train.micro_batch=16 --set train.steps=4 --set optim.warmup_steps=0 --set train.eval_every=0
  --set train.eval_batches=4 --set train.threads=1 --set optim.name=sgd --set optim.lr=0.05)
expect_exit 0 "$DTRAIN" run "$DTRAIN_SOURCE_DIR/configs/cnn-mnist.toml" "${cnn[@]}" --out "$WORK/cnn"
expect_exit 0 "$DTRAIN" eval "$WORK/cnn/checkpoints" --json
same_as_logged "$WORK/cnn" 4
same_as_logged "$WORK/cnn" 4 accuracy
expect_exit 0 "$DTRAIN" eval "$WORK/cnn/checkpoints"
grep -qE "^eval  step      4/4 \| loss [0-9.]+ \| accuracy [0-9.]+% \| 64 images in" "$WORK/out" || fail "$(cat "$WORK/out")"

# Bad input: one line, exit 2.
expect_exit 2 "$DTRAIN" eval "$WORK/nowhere"
expect_err "$WORK/nowhere"
expect_exit 2 "$DTRAIN" eval "$WORK/a/checkpoints" --data "$WORK/none_*.bin"
expect_err "data.val: no file matches '$WORK/none_*.bin'"
! grep -q "data.train" "$WORK/err" || fail "the training key is blamed for --data: $(cat "$WORK/err")"
expect_exit 2 "$DTRAIN" eval "$WORK/cnn/checkpoints" --data "$WORK/tok_val.bin"
expect_err "--data: the checkpoint holds a cnn model, which reads images and labels (IDX files): give them with --set data.val_images=FILE --set data.val_labels=FILE"
expect_exit 2 "$DTRAIN" eval "$WORK/a/checkpoints" --batches -1
expect_err "--batches: expected a whole number"
expect_exit 2 "$DTRAIN" eval "$WORK/a/checkpoints" --set model.n_layer=3
expect_err "--set model.n_layer=3: model.n_layer cannot change when evaluating (2 -> 3)"
echo "eval: ok"
