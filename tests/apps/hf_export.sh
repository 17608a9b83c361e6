# `dtrain export --format hf` and model.init_from = "hf:DIR" end to end: a
# tp=2 run (2 ranks) is exported; a plain reader of the safetensors format
# (header JSON + raw little-endian floats, Python's json and struct) finds
# every checkpoint tensor (read by h5py) under its Hugging Face name and
# layout; a one-process run started from the export with a vanishing
# learning rate exports byte-identical files and evaluates to the same loss,
# and so do runs under ZeRO-3 and bf16 ZeRO-1 on 2 ranks (their masters
# sharded); bad directories are refused naming the file and key.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PY=/usr/bin/python3
make_tokens
tiny_gpt_config
base=(--set train.threads=1 --set model.n_head=4 --set train.eval_every=0 --set optim.warmup_steps=0)

expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=4 \
  --set parallel.tp=2 --out "$WORK/a"
expect_exit 0 "$DTRAIN" export "$WORK/a/checkpoints" --format hf --out "$WORK/hf"
grep -q "exported .*step_00000004 (step 4) to $WORK/hf: config.json, model.safetensors (28 tensors" "$WORK/out" ||
  fail "export output: $(cat "$WORK/out")"
# Again into the same directory: refused, the first export untouched.
before=$(md5sum <"$WORK/hf/model.safetensors")
expect_exit 2 "$DTRAIN" export "$WORK/a/checkpoints" --format hf --out "$WORK/hf"
expect_err "--out $WORK/hf: it already holds config.json, which an export does not replace"
[ "$(md5sum <"$WORK/hf/model.safetensors")" = "$before" ] || fail "a refused export changed the earlier one"
# A directory that cannot be made is a bad --out: 2, as for dtrain run.
expect_exit 2 "$DTRAIN" export "$WORK/a/checkpoints" --format hf --out "$WORK/hf/config.json/sub"
expect_err "--out $WORK/hf/config.json/sub: cannot be created: "

"$PY" - "$WORK/hf" "$WORK/a/checkpoints/step_00000004/checkpoint.h5" <<'PY' || fail "exported tensors differ from the checkpoint's"
import json, struct, sys
import h5py, numpy as np
d, ck = sys.argv[1:]
cfg = json.load(open(d + "/config.json"))
assert cfg["model_type"] == "gpt2" and cfg["activation_function"] == "gelu_new", cfg
assert (cfg["n_embd"], cfg["n_layer"], cfg["n_head"], cfg["vocab_size"], cfg["n_positions"]) == (32, 2, 4, 256, 16), cfg
raw = open(d + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
assert header.pop("__metadata__") == {"format": "pt"}
def tensor(name):
    h = header.pop(name)
    b, e = h["data_offsets"]
    assert h["dtype"] == "F32"
    return np.frombuffer(raw[8 + n + b: 8 + n + e], dtype="<f4").reshape(h["shape"])
names = {"wte.weight": ("wte.weight", False), "wpe.weight": ("wpe.weight", False),
         "ln_f.weight": ("ln_f.weight", False), "ln_f.bias": ("ln_f.bias", False)}
for i in range(2):
    for ours, theirs in [("ln1", "ln_1"), ("ln2", "ln_2"), ("attn.qkv", "attn.c_attn"),
                         ("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")]:
        for leaf in ("weight", "bias"):
            names[f"blocks.{i}.{ours}.{leaf}"] = (f"h.{i}.{theirs}.{leaf}", leaf == "weight" and not ours.startswith("ln"))
with h5py.File(ck, "r") as f:
    for ours, (theirs, transposed) in names.items():
        want = f["model/" + ours][...]
        got = tensor("transformer." + theirs)
        if transposed:
            got = got.T
        assert got.shape == want.shape and (got == want).all(), ours
assert not header, "tensors the checkpoint lacks: %s" % list(header)
PY

# Start a one-process run from the export; a learning rate of 1e-30 leaves
# every parameter bit for bit as imported.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=1 --set optim.lr=1e-30 \
  --set "model.init_from=\"hf:$WORK/hf\"" --out "$WORK/b"
grep -q "init: parameters from the Hugging Face directory $WORK/hf" "$WORK/out" || fail "no init line: $(cat "$WORK/out")"
grep -q 'init_from = "hf:' "$WORK/b/config.toml" || fail "the run's config does not record model.init_from"
expect_exit 0 "$DTRAIN" export "$WORK/b/checkpoints" --format hf --out "$WORK/hf2"
cmp "$WORK/hf/model.safetensors" "$WORK/hf2/model.safetensors" || fail "export -> init_from -> export changed the weights"
"$PY" - "$WORK/a/metrics.jsonl" "$WORK/b/metrics.jsonl" <<'PY' || fail "the imported model evaluates differently"
import json, sys
ev = [[r["eval_loss"] for r in map(json.loads, open(p)) if "eval_loss" in r][-1] for p in sys.argv[1:]]
assert abs(ev[0] - ev[1]) <= 1e-6 * abs(ev[0]), ev
PY
# The same under ZeRO-3 on 2 ranks and ZeRO-1 in bf16, whose fp32 masters are sharded:
# each rank takes its range of every imported tensor (nothing gathered), and the
# checkpoints, each rank's range again, export the same bytes.
for zero in "3 fp32" "1 bf16"; do
  set -- $zero
  expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=1 \
    --set optim.lr=1e-30 --set parallel.dp=2 --set train.grad_accum=1 --set parallel.zero=$1 \
    --set train.precision=$2 --set "model.init_from=\"hf:$WORK/hf\"" --out "$WORK/z$1"
  grep -q "init: parameters from the Hugging Face directory $WORK/hf" "$WORK/out" || fail "no init line under ZeRO-$1"
  expect_exit 0 "$DTRAIN" export "$WORK/z$1/checkpoints" --format hf --out "$WORK/hfz$1"
  cmp "$WORK/hf/model.safetensors" "$WORK/hfz$1/model.safetensors" ||
    fail "export -> init_from under ZeRO-$1 ($2) -> export changed the weights"
done
"$PY" - "$WORK/a/metrics.jsonl" "$WORK/z3/metrics.jsonl" <<'PY' || fail "the model imported under ZeRO-3 evaluates differently"
import json, sys
ev = [[r["eval_loss"] for r in map(json.loads, open(p)) if "eval_loss" in r][-1] for p in sys.argv[1:]]
assert abs(ev[0] - ev[1]) <= 1e-5 * abs(ev[0]), ev
PY

# Imported into a padded vocabulary (model.vocab_size 320 over the model's 256 ids): the padding
# rows are zero, and are never predicted (model.vocab_used, derived from config.json), so the run
# evaluates to the directory's own loss. A model whose logits are all well below zero (GPT-2's
# are) shows it: every input row and the final norm's bias moved along one direction puts the
# logits near -40, where the zero rows' logit of 0 would take nearly all the probability.
mkdir -p "$WORK/neg"
cp "$WORK/hf/config.json" "$WORK/neg/"
"$PY" - "$WORK/hf/model.safetensors" "$WORK/neg/model.safetensors" <<'PY'
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
body = bytearray(raw[8 + n:])
def tensor(name):
    m = header[name]
    assert m["dtype"] == "F32", m
    a, b = m["data_offsets"]
    return np.frombuffer(body, dtype="<f4", count=(b - a) // 4, offset=a).reshape(m["shape"])
wte, bias = tensor("transformer.wte.weight"), tensor("transformer.ln_f.bias")
e = np.zeros(wte.shape[1], dtype=np.float32); e[0] = 1.0
wte += e
bias -= 40.0 * e
open(sys.argv[2], "wb").write(raw[:8 + n] + bytes(body))
PY
expect_exit 0 "$DTRAIN" eval "hf:$WORK/neg" --data "$WORK/tok_val.bin" --batches 4 --set train.threads=1 --json
own=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["loss"])' "$WORK/out")
padded=(--set model.vocab_size=320 --set train.steps=1 --set optim.lr=1e-30 --set "model.init_from=\"hf:$WORK/neg\"")
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${padded[@]}" --out "$WORK/padded"
grep -q "vocabulary padded: 256 rows from $WORK/neg, 64 zero rows up to model.vocab_size = 320; the padding is never predicted (model.vocab_used = 256)" "$WORK/out" ||
  fail "no padding line: $(cat "$WORK/out")"
grep -qx "vocab_used = 256" "$WORK/padded/config.toml" || fail "the run's config does not record model.vocab_used = 256"
expect_exit 0 "$DTRAIN" eval "$WORK/padded/checkpoints" --batches 4 --set train.micro_batch=8 --json
"$PY" - "$own" "$WORK/out" <<'PY' || fail "the import into a padded vocabulary evaluates differently from the directory"
import json, sys
own, got = float(sys.argv[1]), json.load(open(sys.argv[2]))["loss"]
assert own > 0.5 and abs(got - own) <= 1e-5 * own, (own, got)
PY
# With the padding predicted (vocab_used = vocab_size, Megatron's way) the zero rows take over.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" "${padded[@]}" --set model.vocab_used=320 --out "$WORK/padded2"
grep -q "model.vocab_used = 320: the padding rows' logits (0) join the softmax" "$WORK/out" || fail "no warning: $(cat "$WORK/out")"
expect_exit 0 "$DTRAIN" eval "$WORK/padded2/checkpoints" --batches 4 --set train.micro_batch=8 --json
"$PY" - "$own" "$WORK/out" <<'PY' || fail "the padding predicted should cost about 40 nats"
import json, sys
own, got = float(sys.argv[1]), json.load(open(sys.argv[2]))["loss"]
assert got > own + 20, (own, got)
PY

# Refusals: a missing directory, a model dtrain cannot express, other shapes.
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set "model.init_from=\"hf:$WORK/nope\"" --out "$WORK/c"
expect_err "model.init_from: '$WORK/nope/config.json': not found; '$WORK/nope/model.safetensors': not found"
[ ! -e "$WORK/c" ] || fail "a run refused at setup left its new directory behind: $(ls -A "$WORK/c")"
sed 's/"gelu_new"/"relu"/' "$WORK/hf/config.json" > "$WORK/hf2/config.json"
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set "model.init_from=\"hf:$WORK/hf2\"" --out "$WORK/c"
expect_err 'activation_function = "relu": dtrain'"'"'s MLP uses GELU with the tanh approximation'
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set "model.init_from=\"hf:$WORK/hf\"" \
  --set model.n_embd=64 --out "$WORK/c"
expect_err "n_embd = 32 but model.n_embd = 64"
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set "model.init_from=\"$WORK/hf\"" --out "$WORK/c"
expect_err 'model.init_from: expected "" or "hf:DIR"'
echo "hf_export: ok"
