# A vocabulary beyond GPT-2's uint16 token files: llm.c's LLaMA 3 format
# (magic 20240801, version 7, uint32 tokens) trains as it is. The tiny corpus'
# byte ids are shifted to 69744-69999 and written in that format; a model of
# vocabulary 70016 learns them, `dtrain eval` reads them, and a model whose
# vocabulary is too small is refused in one line naming the key, the file and
# the first token out of range.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
python3 - "$WORK" <<'PY'
import struct, sys
work = sys.argv[1]
for split in ("train", "val"):
    data = open(f"{work}/tok_{split}.bin", "rb").read()
    n = struct.unpack_from("<i", data, 8)[0]
    tokens = [t + 69744 for t in struct.unpack_from(f"<{n}H", data, 1024)]
    header = [20240801, 7, n] + [0] * 253
    with open(f"{work}/wide_{split}.bin", "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{n}I", *tokens))
PY
wide=(--set model.vocab_size=70016 --set data.train="\"$WORK/wide_train.bin\"" --set data.val="\"$WORK/wide_val.bin\""
      --set train.threads=1)

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${wide[@]}" --set train.steps=40 --set train.eval_every=40 --out "$WORK/a"
python3 - "$WORK/a/metrics.jsonl" <<'PY' || fail "the loss did not fall: $(step_losses "$WORK/a/metrics.jsonl" | tr '\n' ' ')"
import json, sys
losses = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
assert losses[0] > 10 and losses[-1] < 0.7 * losses[0], losses  # ln 70016 = 11.2 at the start
PY
expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints" --json
python3 -c 'import json,sys; l = json.load(open(sys.argv[1]))["loss"]; assert l < 8, l' "$WORK/out" || fail "eval: $(cat "$WORK/out")"

# GPT-2's padded vocabulary cannot hold these ids: refused before training, in one line.
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" "${wide[@]}" --set model.vocab_size=50304
expect_err "data.train: '$WORK/wide_train.bin': token 69"
expect_err "is out of range for model.vocab_size = 50304"
# Ids the model does not predict (model.vocab_used below the table) are refused the same way,
# naming that key; and vocab_used cannot pass the table.
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" "${wide[@]}" --set model.vocab_used=69800
expect_err "is out of range for model.vocab_used = 69800"
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" "${wide[@]}" --set model.vocab_used=70017
expect_err "model.vocab_used: expected at most model.vocab_size (70016), got 70017"
