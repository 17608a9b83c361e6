# Hugging Face tokenizer.json (data.tokenizer = "hf") end to end: `dtrain
# tokenize` gives exactly the ids of Hugging Face's tokenizers.js (run with
# node) for LLaMA 3's, GPT-2's and Qwen 2.5's tokenizers on the whole King James Bible and
# LLaMA 2's on its first 300 kB (tokenizers.js takes minutes on the whole of
# it), as llm.c's files: uint32 beyond 65535 ids, <|begin_of_text|> first;
# `--tokenizer gpt2` writes what tools/text_to_bin.py writes, byte for byte; a
# model trained on the LLaMA 3 tokens generates text with that tokenizer, and
# its export holds the tokenizer and generates the same text (hf:DIR); bad
# tokenizer options fail in one line.
source "$(dirname "$0")/common.bash"
PY=/usr/bin/python3
# A refusal is one line.
one_line() { [ "$(wc -l <"$WORK/err")" -eq 1 ] || fail "more than one line: $(cat "$WORK/err")"; }
src=$DTRAIN_SOURCE_DIR
js="$src/data/npm/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs"
[ -f "$js" ] || fail "$js is missing: run tools/setup.sh (npm install @huggingface/tokenizers)"
for m in llama3 llama2 gpt2 qwen2_5; do
  [ -f "$src/data/tokenizers/$m/tokenizer.json" ] || fail "data/tokenizers/$m is missing: run tools/setup.sh"
done
command -v node >/dev/null || fail "node is missing (tools/setup.sh installs npm and nodejs)"
head -c 300000 "$src/data/kjv.txt" >"$WORK/kjv300k.txt"

# tokenizers.js's ids of a text file, one per line (tools/hf_tokenize_js.mjs).
js_ids() { node "$src/tools/hf_tokenize_js.mjs" "$1" "$3" "$2" || fail "node cannot run tokenizers.js on $2"; }

# the ids of PREFIX_train.bin then PREFIX_val.bin, one per line; the width of their tokens
bin_ids() {
  "$PY" - "$1" <<'PY'
import struct, sys
for split in ("train", "val"):
    b = open(f"{sys.argv[1]}_{split}.bin", "rb").read()
    magic, version, n = struct.unpack_from("<3i", b)
    wide = magic == 20240801
    assert (magic, version) in ((20240520, 1), (20240801, 7)), (magic, version)
    ids = struct.unpack_from("<%d%s" % (n, "I" if wide else "H"), b, 1024)
    assert len(b) == 1024 + (4 if wide else 2) * n
    print(*ids, sep="\n")
    print("uint32" if wide else "uint16", file=sys.stderr)
PY
}

for case in "llama3 $src/data/kjv.txt 128000 uint32" "gpt2 $src/data/kjv.txt 50256 uint16" \
            "qwen2_5 $src/data/kjv.txt 151643 uint32" "llama2 $WORK/kjv300k.txt 1 uint16"; do
  read -r m text first width <<<"$case"
  expect_exit 0 "$DTRAIN" tokenize "$text" --tokenizer hf --tokenizer-dir "$src/data/tokenizers/$m" \
    --out "$WORK/$m/kjv" --val-fraction 0.05
  grep -q "wrote $WORK/$m/kjv_train.bin: .* tokens ($width)" "$WORK/out" || fail "$m: $(cat "$WORK/out")"
  grep -q "^each document starts with .* (id $first)" "$WORK/out" || fail "$m: no marker line: $(cat "$WORK/out")"
  bin_ids "$WORK/$m/kjv" >"$WORK/$m/ids" 2>"$WORK/$m/widths"
  [ "$(head -1 "$WORK/$m/ids")" = "$first" ] || fail "$m: the first token is $(head -1 "$WORK/$m/ids"), not $first"
  js_ids "$src/data/tokenizers/$m" "$text" "$WORK/$m/js"
  tail -n +2 "$WORK/$m/ids" | cmp -s - "$WORK/$m/js" ||
    fail "$m: dtrain tokenize and tokenizers.js differ: $(tail -n +2 "$WORK/$m/ids" | diff - "$WORK/$m/js" | head -5)"
  echo "$m: $(wc -l <"$WORK/$m/js") tokens as tokenizers.js makes them ($width)"
done

# LLaMA 3's tokenizer.json without its tokenizer_config.json names no begin-of-text token: its
# end-of-text marks the documents, and the output says so (it changed the marker without a word).
mkdir -p "$WORK/noconfig"
cp "$src/data/tokenizers/llama3/tokenizer.json" "$WORK/noconfig/"
echo "In the beginning" >"$WORK/short.txt"
expect_exit 0 "$DTRAIN" tokenize "$WORK/short.txt" --tokenizer hf --tokenizer-dir "$WORK/noconfig" --out "$WORK/nc" --val-tokens 2
grep -qx "each document starts with <|end_of_text|> (id 128001): '$WORK/noconfig' has no tokenizer_config.json naming a bos_token, so the end-of-text token marks the documents" "$WORK/out" ||
  fail "no marker note: $(cat "$WORK/out")"

# Documents: each line of a .jsonl file, each text file; every one starts
# with <|begin_of_text|>; the same files on 1 or 2 threads, and the ids
# tokenizers.js gives each document.
"$PY" - "$WORK/kjv300k.txt" "$WORK/docs.jsonl" <<'PY'
import json, sys
docs = [d for d in open(sys.argv[1], encoding="utf-8").read().split("\n\n") if d.strip()][:300]
docs.append("Größe 日本語 🙂 don't 12345")
with open(sys.argv[2], "w") as f:
    for i, d in enumerate(docs):
        f.write(json.dumps({"id": i, "text": d}) + "\n" + ("\n" if i == 5 else ""))  # a blank line is skipped
PY
for t in 1 2; do
  expect_exit 0 "$DTRAIN" tokenize "$WORK/docs.jsonl" "$WORK/kjv300k.txt" --tokenizer hf \
    --tokenizer-dir "$src/data/tokenizers/llama3" --out "$WORK/docs$t/d" --threads $t
  grep -q "$(($(grep -c . "$WORK/docs.jsonl") + 1)) documents" "$WORK/out" || fail "jsonl: $(cat "$WORK/out")"
done
cmp -s "$WORK/docs1/d_train.bin" "$WORK/docs2/d_train.bin" || fail "jsonl: 2 threads wrote other tokens than 1"
# Streamed (--val-tokens: the first tokens validate; a shard at a time in
# memory): the same tokens in the same order, cut elsewhere.
expect_exit 0 "$DTRAIN" tokenize "$WORK/docs.jsonl" "$WORK/kjv300k.txt" --tokenizer hf \
  --tokenizer-dir "$src/data/tokenizers/llama3" --out "$WORK/stream/d" --val-tokens 5000 --shard-tokens 30000
grep -q "wrote $WORK/stream/d_val.bin: 5000 tokens (uint32)" "$WORK/out" || fail "stream: $(cat "$WORK/out")"
"$PY" - "$WORK/docs1/d" "$WORK/stream/d" <<'PY' || fail "stream: other tokens than in one piece"
import glob, struct, sys
def ids(path):
    b = open(path, "rb").read()
    n = struct.unpack_from("<3i", b)[2]
    return list(struct.unpack_from("<%dI" % n, b, 1024))
whole = ids(sys.argv[1] + "_train.bin") + ids(sys.argv[1] + "_val.bin")
shards = sorted(glob.glob(sys.argv[2] + "_train_*.bin"))
streamed = ids(sys.argv[2] + "_val.bin") + [t for f in shards for t in ids(f)]
assert len(shards) >= 3 and streamed == whole, (len(shards), len(streamed), len(whole))
PY
expect_exit 2 "$DTRAIN" tokenize "$WORK/docs.jsonl" --out "$WORK/x" --val-tokens 100000000
expect_err "fewer than the 100000000 of --val-tokens"
one_line
# (the .jsonl's documents, each after 128000, then the text file's, after 128000 too)
node "$src/tools/hf_tokenize_js.mjs" "$src/data/tokenizers/llama3" "$WORK/docs_js" --jsonl 128000 "$WORK/docs.jsonl" ||
  fail "node cannot run tokenizers.js on the documents"
js_ids "$src/data/tokenizers/llama3" "$WORK/kjv300k.txt" "$WORK/text_js"
{ echo 128000; cat "$WORK/text_js"; } >>"$WORK/docs_js"
bin_ids "$WORK/docs1/d" 2>/dev/null | cmp -s - "$WORK/docs_js" ||
  fail "jsonl: dtrain tokenize and tokenizers.js differ: $(bin_ids "$WORK/docs1/d" 2>/dev/null | diff - "$WORK/docs_js" | head -5)"
printf '{"text": "a"}\n{"txt": "b"}\n' >"$WORK/bad.jsonl"
expect_exit 2 "$DTRAIN" tokenize "$WORK/bad.jsonl" --out "$WORK/x"
expect_err "$WORK/bad.jsonl': line 2: expected a JSON object with a string \"text\" (--text-key), got {\"txt\": \"b\"}"
one_line
printf '{"text": "a"}\n{"text": "b\n' >"$WORK/bad.jsonl"
expect_exit 2 "$DTRAIN" tokenize "$WORK/bad.jsonl" --out "$WORK/x"
expect_err "$WORK/bad.jsonl': line 2: not JSON"
one_line
# An --out whose directory cannot be made: one line, exit 2 (it was an "internal error").
expect_exit 2 "$DTRAIN" tokenize "$WORK/bad.jsonl" --out "$WORK/bad.jsonl/sub/x"
expect_err "--out: '$WORK/bad.jsonl/sub' cannot be created"
one_line
# GPT-2's <|endoftext|> spelled in the text: its pieces as text by default, its id with --special-tokens.
for _ in $(seq 8); do printf 'a<|endoftext|>b'; done >"$WORK/eot.txt"
for flag in "" --special-tokens; do
  expect_exit 0 "$DTRAIN" tokenize "$WORK/eot.txt" --tokenizer gpt2 --tokenizer-dir "$src/data/gpt2" \
    --out "$WORK/eot$flag" --val-fraction 0.5 $flag
done
"$PY" - "$WORK/eot" "$WORK/eot--special-tokens" <<'PY' || fail "gpt2 --special-tokens"
import struct, sys
def ids(p):
    d = open(p, "rb").read()
    n = struct.unpack_from("<i", d, 8)[0]
    return list(struct.unpack_from(f"<{n}H", d, 1024))
a, b = (ids(p + "_train.bin") + ids(p + "_val.bin") for p in sys.argv[1:])
assert b == [50256, 64] + [50256, 7012] * 7 + [50256, 65], b  # the document marker, a, <|endoftext|>, ba, ..., b
assert a[:2] == [50256, 64] and 50256 not in a[1:] and len(a) > 30, a
PY
printf '{"text": "ok"}\n{"text": "bad \\udc00 surrogate"}\n' >"$WORK/bad.jsonl"
expect_exit 2 "$DTRAIN" tokenize "$WORK/bad.jsonl" --out "$WORK/x" --tokenizer gpt2 --tokenizer-dir "$src/data/gpt2"
expect_err "$WORK/bad.jsonl': line 2: not JSON"
one_line

# The byte and GPT-2 tokenizers write what tools/text_to_bin.py writes.
for tok in byte gpt2; do
  expect_exit 0 "$DTRAIN" tokenize "$WORK/kjv300k.txt" --tokenizer "$tok" --tokenizer-dir "$src/data/gpt2" \
    --out "$WORK/$tok/kjv" --shard-tokens 40000
  python3 "$src/tools/text_to_bin.py" "$WORK/kjv300k.txt" --tokenizer "$tok" --tokenizer-dir "$src/data/gpt2" \
    --out "$WORK/$tok/py" --shard-tokens 40000 >/dev/null
  n=0
  for f in "$WORK/$tok"/py_*.bin; do
    cmp -s "$f" "${f/py_/kjv_}" || fail "$tok: ${f/py_/kjv_} differs from text_to_bin.py's $f"
    n=$((n + 1))
  done
  [ "$n" -ge 3 ] || fail "$tok: $n files"
done

# A model trained on LLaMA 3's tokens of the Bible writes text with them.
make_tokens
tiny_gpt_config
llama=(--set model.vocab_size=128256 --set data.tokenizer='"hf"' --set "data.tokenizer_dir=\"$src/data/tokenizers/llama3\""
       --set "data.train=\"$WORK/llama3/kjv_train.bin\"" --set "data.val=\"$WORK/llama3/kjv_val.bin\""
       --set model.context_length=32 --set train.steps=30 --set train.eval_every=30)
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${llama[@]}" --out "$WORK/run"
"$PY" - "$WORK/run/metrics.jsonl" <<'PY' || fail "the loss did not fall: $(step_losses "$WORK/run/metrics.jsonl" | tr '\n' ' ')"
import json, sys
losses = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
assert losses[0] > 11.5 and losses[-1] < losses[0] - 1.5, losses  # ln 128256 = 11.76 at the start
PY
expect_exit 0 "$DTRAIN" generate "$WORK/run/checkpoints" --prompt "And God said" --tokens 12 --seed 1
grep -q "^And God said" "$WORK/out" || fail "generate: $(cat "$WORK/out")"
[ "$(wc -c <"$WORK/out")" -gt 20 ] || fail "generate wrote nothing: $(cat "$WORK/out")"
expect_err "tokenizer hf"
# Another model's tokenizer, with ids this model has no row for, is refused: it decoded the text with
# Qwen's ids and exported a config.json whose eos_token_id (151645) is past its vocab_size.
for cmd in "generate $WORK/run/checkpoints --prompt x" "export $WORK/run/checkpoints --out $WORK/qwen_hf"; do
  expect_exit 2 "$DTRAIN" $cmd --tokenizer-dir "$src/data/tokenizers/qwen2_5"
  expect_err "dtrain: error: --tokenizer-dir: the tokenizer in '$src/data/tokenizers/qwen2_5' has 151665 ids but the model has 128256 rows (model.vocab_size): not the tokenizer it was trained with"
done
[ ! -e "$WORK/qwen_hf" ] || fail "the refused export left $WORK/qwen_hf"

# Its export holds the tokenizer: tokenizer.json as it was, config.json with
# LLaMA 3's ids and markers; dtrain eval hf:DIR reads it with that tokenizer.
expect_exit 0 "$DTRAIN" export "$WORK/run/checkpoints" --out "$WORK/hf"
grep -qF "tokenizer (Hugging Face, from $src/data/tokenizers/llama3): wrote tokenizer.json, tokenizer_config.json" \
  "$WORK/out" || fail "export: $(cat "$WORK/out")"
cmp -s "$WORK/hf/tokenizer.json" "$src/data/tokenizers/llama3/tokenizer.json" || fail "export: tokenizer.json differs"
"$PY" - "$WORK/hf/config.json" <<'PY' || fail "export: $(cat "$WORK/hf/config.json")"
import json, sys
c = json.load(open(sys.argv[1]))
assert (c["vocab_size"], c["bos_token_id"], c["eos_token_id"], c["dtrain_tokenizer"]) == (128256, 128000, 128001, "hf"), c
PY
expect_exit 0 "$DTRAIN" eval "hf:$WORK/hf" --data "$WORK/llama3/kjv_val.bin" --batches 2
expect_err "vocabulary 128256 (hf ids)"
# dtrain generate hf:DIR writes what the checkpoint writes, greedy and sampled.
for args in "--temperature 0" "--temperature 1 --seed 7"; do
  # shellcheck disable=SC2086
  expect_exit 0 "$DTRAIN" generate "$WORK/run/checkpoints" --prompt "And God said" --tokens 16 $args
  mv "$WORK/out" "$WORK/from_checkpoint"
  # shellcheck disable=SC2086
  expect_exit 0 "$DTRAIN" generate "hf:$WORK/hf" --prompt "And God said" --tokens 16 $args
  expect_err "16 tokens from hf:$WORK/hf (tokenizer hf)"
  cmp -s "$WORK/out" "$WORK/from_checkpoint" ||
    fail "generate hf:DIR $args: '$(cat "$WORK/out")', the checkpoint: '$(cat "$WORK/from_checkpoint")'"
done

# The same for a LLaMA (RMSNorm, SwiGLU, rope, grouped-query attention) on
# LLaMA 3's tokens: its Hugging Face export (LlamaForCausalLM's format) holds
# the tokenizer, is read with it, and writes the checkpoint's text.
llama_parts=(--set 'model.norm="rmsnorm"' --set 'model.mlp="swiglu"' --set 'model.position="rope"' --set model.bias=false
             --set model.n_head=4 --set model.n_kv_head=2 --set model.tie_embeddings=false --set train.steps=10
             --set train.eval_every=10)
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${llama[@]}" "${llama_parts[@]}" --out "$WORK/llama_run"
expect_exit 0 "$DTRAIN" export "$WORK/llama_run/checkpoints" --out "$WORK/llama_hf"
grep -q '"model_type": "llama"' "$WORK/llama_hf/config.json" || fail "llama export: $(cat "$WORK/llama_hf/config.json")"
cmp -s "$WORK/llama_hf/tokenizer.json" "$src/data/tokenizers/llama3/tokenizer.json" || fail "llama export: tokenizer.json"
expect_exit 0 "$DTRAIN" generate "$WORK/llama_run/checkpoints" --prompt "In the beginning" --tokens 12 --temperature 0
mv "$WORK/out" "$WORK/from_checkpoint"
expect_exit 0 "$DTRAIN" generate "hf:$WORK/llama_hf" --prompt "In the beginning" --tokens 12 --temperature 0
expect_err "(tokenizer hf)"
cmp -s "$WORK/out" "$WORK/from_checkpoint" ||
  fail "generate hf:DIR (LLaMA): '$(cat "$WORK/out")', the checkpoint: '$(cat "$WORK/from_checkpoint")'"

# A run's tokenizer that generate and export could not read is said before it trains.
mkdir "$WORK/badtok"
echo '{"model": {"type": "WordPiece"}}' >"$WORK/badtok/tokenizer.json"
expect_exit 0 "$DTRAIN" validate "$WORK/tiny.toml" "${llama[@]}" --set "data.tokenizer_dir=\"$WORK/badtok\""
expect_err "note: data.tokenizer_dir: '$WORK/badtok/tokenizer.json': model.type: \"WordPiece\" is not supported"

# Bad options: one line, naming what is wrong.
expect_exit 2 "$DTRAIN" tokenize "$WORK/kjv300k.txt" --tokenizer hf --out "$WORK/x"
expect_err "--tokenizer hf needs --tokenizer-dir"
one_line
expect_exit 2 "$DTRAIN" tokenize "$WORK/kjv300k.txt" --tokenizer hf --tokenizer-dir "$WORK" --out "$WORK/x"
expect_err "$WORK/tokenizer.json"
one_line
expect_exit 2 "$DTRAIN" tokenize "$WORK/missing.txt" --out "$WORK/x"
expect_err "$WORK/missing.txt"
one_line
printf 'ab\xffcd' >"$WORK/bad.txt"
expect_exit 2 "$DTRAIN" tokenize "$WORK/bad.txt" --tokenizer hf --tokenizer-dir "$src/data/tokenizers/gpt2" --out "$WORK/x"
expect_err "$WORK/bad.txt': text is not valid UTF-8 (byte 0xff at offset 2)"
one_line
expect_exit 2 "$DTRAIN" tokenize "$WORK/kjv300k.txt" --out "$WORK"
expect_err "expected a file name prefix"
one_line
expect_exit 2 "$DTRAIN" tokenize "$WORK/kjv300k.txt" --out "$WORK/x" --val-fraction 0.9999999999
expect_err "--val-fraction"
one_line
expect_exit 2 "$DTRAIN" tokenize "$WORK/kjv300k.txt" --out "$WORK/x" --val-fraction 1
expect_err "--val-fraction: expected a fraction between 0 and 1, both excluded (each split needs tokens), got '1'"
one_line
# Two ways to choose the split: refused, not one of them ignored.
expect_exit 2 "$DTRAIN" tokenize "$WORK/kjv300k.txt" --out "$WORK/x" --val-fraction 0.2 --val-tokens 5000
expect_err "--val-fraction excludes --val-tokens"
one_line
echo "hf_tokenizer: ok"
