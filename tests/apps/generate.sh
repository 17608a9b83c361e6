# `dtrain generate`: one process reads a checkpoint of a tp=2 run (2 ranks)
# and continues a prompt; the same seed gives the same text, greedy
# (--temperature 0) ignores the seed; a GPT-2-BPE run decodes with its
# tokenizer; bad input fails with one line. (That a model trained on the
# Bible continues "In the beginning" with English is learn_gpt.slow.sh.)
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PY=/usr/bin/python3
make_tokens
tiny_gpt_config
base=(--set train.threads=1 --set train.eval_every=0 --set optim.warmup_steps=2 --set train.steps=30)
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set parallel.tp=2 --out "$WORK/a"

gen() { expect_exit 0 "$DTRAIN" generate "$WORK/a/checkpoints" --prompt "the quick" --tokens 40 "$@"; }
gen --seed 5; cp "$WORK/out" "$WORK/s5"
grep -q "40 tokens from $WORK/a/checkpoints/step_00000030 (step 30, tokenizer byte)" "$WORK/err" || fail "$(cat "$WORK/err")"
gen --seed 5; cmp -s "$WORK/out" "$WORK/s5" || fail "the same seed gave other text"
gen --seed 6; ! cmp -s "$WORK/out" "$WORK/s5" || fail "seeds 5 and 6 gave the same text"
gen --seed 6 --top-k 1; cp "$WORK/out" "$WORK/k1"
gen --temperature 0 --seed 1; cp "$WORK/out" "$WORK/g1"
gen --temperature 0 --seed 2; cmp -s "$WORK/out" "$WORK/g1" || fail "greedy depends on the seed"
cmp -s "$WORK/k1" "$WORK/g1" || fail "--top-k 1 is not greedy"
# Nucleus sampling: a nucleus of almost no probability holds the most likely token alone.
gen --seed 6 --top-p 1e-6 --temperature 1; cmp -s "$WORK/out" "$WORK/g1" || fail "--top-p 1e-6 is not greedy"
gen --seed 5 --top-p 1; cmp -s "$WORK/out" "$WORK/s5" || fail "--top-p 1 changed the text"
expect_exit 2 "$DTRAIN" generate "$WORK/a/checkpoints" --top-p 0
expect_err "--top-p: expected a number from 1e-09 to 1, got '0'"
expect_exit 2 "$DTRAIN" generate "$WORK/a/checkpoints" --top-p 1.5
"$PY" - "$WORK/s5" "$WORK/g1" <<'PY' || fail "generated text: $(cat "$WORK/s5")"
import sys
for p in sys.argv[1:]:
    b = open(p, "rb").read()
    assert b.startswith(b"the quick"), b
    assert len(b) == len("the quick") + 40 + 1, (len(b), b)  # 40 byte tokens and a newline
PY
# A prompt longer than the context (16): the model reads its last 16 tokens.
expect_exit 0 "$DTRAIN" generate "$WORK/a/checkpoints" --prompt "the lazy dog and then some more words follow here" --tokens 5 --temperature 0
# A byte-level model has no tokenizer files: --tokenizer-dir is refused, not ignored. One with
# fewer rows than the 256 byte ids (a small test vocabulary, the text ASCII) generates.
expect_exit 2 "$DTRAIN" generate "$WORK/a/checkpoints" --prompt x --tokenizer-dir "$DTRAIN_SOURCE_DIR/data/gpt2"
expect_err "dtrain: error: --tokenizer-dir: '$DTRAIN_SOURCE_DIR/data/gpt2': byte-level tokens (data.tokenizer = \"byte\") have no tokenizer files to read"
expect_exit 2 "$DTRAIN" export "$WORK/a/checkpoints" --out "$WORK/byte_hf" --tokenizer-dir "$DTRAIN_SOURCE_DIR/data/gpt2"
expect_err "dtrain: error: --tokenizer-dir: '$DTRAIN_SOURCE_DIR/data/gpt2': byte-level tokens (data.tokenizer = \"byte\") have no tokenizer files to read"
[ ! -e "$WORK/byte_hf" ] || fail "the refused export left $WORK/byte_hf"
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=3 --set model.vocab_size=128 --out "$WORK/v128"
expect_exit 0 "$DTRAIN" generate "$WORK/v128/checkpoints" --prompt "the" --tokens 5 --temperature 0

# The key/value cache gives the tokens of the model's forward over the context-length (64)
# window, also once the text is longer than the context (the window moves on).
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=10 --set model.context_length=64 --out "$WORK/c"
expect_exit 0 "$DTRAIN" generate "$WORK/c/checkpoints" --prompt "over the" --tokens 70 --seed 3 --temperature 1.5
cp "$WORK/out" "$WORK/windows"
expect_exit 0 "$DTRAIN" generate "$WORK/c/checkpoints" --prompt "over the" --tokens 70 --seed 3 --temperature 1.5 --full-window
cmp -s "$WORK/out" "$WORK/windows" || fail "the key/value cache's text differs from the full window's: $(cat "$WORK/windows") vs $(cat "$WORK/out")"

# A GPT-2 BPE run decodes with GPT-2's tokenizer.
tok_dir="$DTRAIN_SOURCE_DIR/data/gpt2"
"$PY" "$DTRAIN_SOURCE_DIR/tools/text_to_bin.py" "$WORK/text.txt" --tokenizer gpt2 --tokenizer-dir "$tok_dir" --out "$WORK/bpe" >/dev/null
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=3 --set model.vocab_size=50304 \
  --set data.train="\"$WORK/bpe_train.bin\"" --set data.val="\"$WORK/bpe_val.bin\"" --set data.tokenizer=gpt2 \
  --set data.tokenizer_dir="\"$tok_dir\"" --out "$WORK/b"
grep -q 'tokenizer = "gpt2"' "$WORK/b/config.toml" || fail "the run's config does not record its tokenizer"
expect_exit 0 "$DTRAIN" generate "$WORK/b/checkpoints" --prompt "The quick brown" --tokens 8 --seed 1
grep -q "tokenizer gpt2" "$WORK/err" || fail "$(cat "$WORK/err")"
grep -q "^The quick brown" "$WORK/out" || fail "$(cat "$WORK/out")"
# A prompt that is not UTF-8 is refused naming --prompt.
expect_exit 2 "$DTRAIN" generate "$WORK/b/checkpoints" --prompt "$(printf 'bad \xff')" --tokens 2
expect_err "--prompt: "
expect_err "not valid UTF-8"
expect_exit 2 "$DTRAIN" generate "$WORK/b/checkpoints" --tokenizer-dir "$WORK/none"
expect_err "--tokenizer-dir: '$WORK/none/encoder.json': cannot open"
! grep -q 'data.tokenizer_dir' "$WORK/err" || fail "--tokenizer-dir given: the error blames the run's data.tokenizer_dir"
# Without the tokenizer's files the run trains (it reads token ids) and says at its start that
# generate and export will need --tokenizer-dir; validate says the same. Then generate blames
# the run's key.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=1 --set model.vocab_size=50304 \
  --set data.train="\"$WORK/bpe_train.bin\"" --set data.val="\"$WORK/bpe_val.bin\"" --set data.tokenizer=gpt2 \
  --set data.tokenizer_dir="\"$WORK/none\"" --set optim.warmup_steps=0 --out "$WORK/b2"
expect_err "dtrain: warning: data.tokenizer_dir: '$WORK/none' holds no GPT-2 tokenizer (encoder.json and vocab.bpe, or vocab.json and merges.txt); training reads only token ids, but \`dtrain generate\` and \`dtrain export\` will need --tokenizer-dir"
expect_exit 0 "$DTRAIN" validate "$WORK/b2/config.toml"
expect_err "dtrain: note: data.tokenizer_dir: '$WORK/none' holds no GPT-2 tokenizer"
expect_exit 2 "$DTRAIN" generate "$WORK/b2/checkpoints"
expect_err "$WORK/none/encoder.json': cannot open"
expect_err 'data.tokenizer = "gpt2"'

# Bad input.
expect_exit 2 "$DTRAIN" generate "$WORK/nowhere"
expect_exit 2 "$DTRAIN" generate "$WORK/a/checkpoints" --temperature -1
expect_err "--temperature: expected a number from 0 to 1000, got '-1'"
# Whole numbers in range, or one line saying so (a seed past 2^64 was clamped,
# --tokens had no bound).
expect_exit 2 "$DTRAIN" generate "$WORK/a/checkpoints" --seed 18446744073709551616
expect_err "--seed: expected a whole number from 0 to 18446744073709551615, got '18446744073709551616'"
expect_exit 2 "$DTRAIN" generate "$WORK/a/checkpoints" --tokens 1048577
expect_err "--tokens: expected a whole number from 0 to 1048576"
expect_exit 2 "$DTRAIN" generate "$WORK/a/checkpoints" --top-k 1.5
expect_err "--top-k: expected a whole number"
# The largest seed is a seed like any other; text is the same from one run to the next.
expect_exit 0 "$DTRAIN" generate "$WORK/a/checkpoints" --prompt "the" --tokens 12 --seed 18446744073709551615
cp "$WORK/out" "$WORK/big_seed"
expect_exit 0 "$DTRAIN" generate "$WORK/a/checkpoints" --prompt "the" --tokens 12 --seed 18446744073709551615
cmp -s "$WORK/out" "$WORK/big_seed" || fail "seed 2^64-1 gave two texts"
# The newest checkpoint damaged: the older one is used, and said (as resume says it).
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set checkpoint.every=10 --out "$WORK/d"
cp -r "$WORK/d/checkpoints" "$WORK/dmg"
truncate -s 5000 "$WORK/dmg/step_00000030/checkpoint.h5"
expect_exit 0 "$DTRAIN" generate "$WORK/dmg" --prompt "the" --tokens 4
expect_err "warning: "
expect_err "; falling back to $WORK/dmg/step_00000020"
grep -q "from $WORK/dmg/step_00000020 (step 20" "$WORK/err" || fail "generate: not the older checkpoint"
expect_exit 0 "$DTRAIN" export "$WORK/dmg" --format hf --out "$WORK/dmg_hf"
expect_err "; falling back to $WORK/dmg/step_00000020"
echo "generate: ok"
