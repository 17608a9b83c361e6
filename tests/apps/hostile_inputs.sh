# Hostile inputs end to end (issue 14): each one is refused in one line with
# exit 2, through `validate` and `run`, without a crash or a hang (every
# command runs under a timeout): absurd sizes that used to overflow, deep
# TOML nesting that overflowed the parser's stack, integers beyond int64,
# NUL in a string, FIFOs as config, data, hardware, init_from, tokenizer or
# metrics files, a model too big for this
# machine's memory.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
T=(timeout 30)
both() {  # both CODE ARGS...: validate and run give CODE
  local code=$1; shift
  expect_exit "$code" "${T[@]}" "$DTRAIN" validate "$@"
  cp "$WORK/err" "$WORK/err.validate"
  expect_exit "$code" "${T[@]}" "$DTRAIN" run "$@" --out "$WORK/run" --set train.steps=1 --set optim.warmup_steps=0
}
lines() { [ "$(wc -l <"$WORK/err")" -le "$1" ] || { cat "$WORK/err" >&2; fail "more than $1 lines on stderr"; }; }

both 2 "$WORK/tiny.toml" --set train.micro_batch=4611686018427387904 --set train.grad_accum=1
expect_err "--set train.micro_batch=4611686018427387904: train.micro_batch: the model and batch would need about"
lines 1
both 2 "$WORK/tiny.toml" --set model.n_layer=2147483648
expect_err "model.n_layer: expected an integer in [1, 65536]"
lines 1
both 2 "$WORK/tiny.toml" --set model.n_embd=16777216
expect_err "--set model.n_embd=16777216: model.n_embd: the model and batch would need about"
# Below validate's absolute limit but beyond this machine's memory: run refuses it before building the model.
expect_exit 0 "${T[@]}" "$DTRAIN" validate "$WORK/tiny.toml" --set model.n_layer=60000 --set model.n_embd=1024
expect_exit 2 "${T[@]}" "$DTRAIN" run "$WORK/tiny.toml" --set model.n_layer=60000 --set model.n_embd=1024 --out "$WORK/big"
expect_err "tiny.toml: dp=1 tp=1 pp=1, micro-batch 4 x 2, ZeRO-0, recompute none in fp32 would need about"
expect_err " bytes: parameters 2.7 TiB, gradients 2.7 TiB, optimizer 5.5 TiB, activations "
expect_err "on this machine, which has "
expect_err " of memory; \`dtrain plan\` shows"
# Found by tools/campaign.py (the full pass, which runs what validate passes): 2^31
# micro-batches per step passed validate and wrapped to a negative count in run.
both 2 "$WORK/tiny.toml" --set train.grad_accum=2147483648
expect_err "--set train.grad_accum=2147483648: train.grad_accum: expected an integer in [0, 1048576]"
lines 1
# A directory name longer than the file system allows passed validate and ended run in an
# uncaught filesystem exception (exit 3, "internal error").
long=$(head -c 300 /dev/zero | tr '\0' x)  # more than NAME_MAX (255)
both 2 "$WORK/tiny.toml" --set "checkpoint.dir=$WORK/$long"
expect_err "checkpoint.dir: '$WORK/$long' cannot be created: '$WORK/$long': File name too long"
lines 1
# A value longer than any line of a config may be is refused before it is parsed (the parser's
# time grows with a line's length times its tokens).
longer=$(head -c 5000 /dev/zero | tr '\0' x)
both 2 "$WORK/tiny.toml" --set "checkpoint.dir=$WORK/$longer"
expect_err "checkpoint.dir: a value of $((${#WORK} + 5001)) bytes, more than the 4096 a --set value may have"
lines 1
# A learning rate that makes the loss NaN at once: the run stops naming it (exit 1); the
# sanitized build stopped earlier, converting the NaN to int in exp_fast (UBSan).
expect_exit 1 "${T[@]}" "$DTRAIN" run "$WORK/tiny.toml" --set optim.lr=1e10 --set train.steps=2 --set optim.warmup_steps=0 --out "$WORK/lr"
expect_err "dtrain: error: training loss became"
lines 1

# Deep nesting, in the file and in --set.
{ cat "$WORK/tiny.toml"; printf '[log]\nx = '; head -c 2000 /dev/zero | tr '\0' '['; head -c 2000 /dev/zero | tr '\0' ']'; echo; } >"$WORK/deep.toml"
both 2 "$WORK/deep.toml"
expect_err "deep.toml:$(($(wc -l <"$WORK/tiny.toml") + 2)): arrays or inline tables nested more than 32 deep"
both 2 "$WORK/tiny.toml" --set "model.channels=$(head -c 2000 /dev/zero | tr '\0' '[')"
expect_err "nested more than 32 deep"
# Deep enough to overflow the TOML parser's stack: `dtrain plan` read the file for the keys it
# sets before the config's guards ran, and died of SIGSEGV.
# (One bracket a line: no line is too long to be read.)
{ cat "$WORK/tiny.toml"; printf '[log]\nx = '; awk 'BEGIN { for (i = 0; i < 200000; i++) print "["; for (i = 0; i < 200000; i++) print "]" }'; } >"$WORK/deeper.toml"
expect_exit 2 "${T[@]}" "$DTRAIN" plan "$WORK/deeper.toml" --devices 2
expect_err "deeper.toml:$(($(wc -l <"$WORK/tiny.toml") + 34)): arrays or inline tables nested more than 32 deep"
lines 1

# Integers beyond int64, NUL in a string, absurd threads and timeout.
both 2 "$WORK/tiny.toml" --set train.seed=9223372036854775808
expect_err "integer 9223372036854775808 is outside the 64-bit range"
sed 's|^train = "\(.*\)"|train = "\1\\u0000.x"|' "$WORK/tiny.toml" >"$WORK/nul.toml"
both 2 "$WORK/nul.toml"
expect_err "data.train: expected a string without NUL characters"
both 2 "$WORK/tiny.toml" --set train.threads=1000000
expect_err "train.threads: expected an integer"
both 2 "$WORK/tiny.toml" --set parallel.timeout=1e10
expect_err "parallel.timeout: expected a number"

# Control bytes and bytes that are not UTF-8, echoed from a config's line, a --set or a
# command name, come out as \xNN: a NUL, an escape sequence that recoloured the terminal.
printf '\x00\x01[model]\n' >"$WORK/ctl.toml"
both 2 "$WORK/ctl.toml"
expect_err '(column 1 of: \x00\x01[model])'
printf 'steps = 2\x1b[31mRED\n' >"$WORK/esc.toml"
both 2 "$WORK/esc.toml"
expect_err 'steps = 2\x1b[31mRED)'
both 2 "$WORK/tiny.toml" --set $'tr\xffain.steps=3'
expect_err "unknown section 'tr\\xffain'"
expect_exit 2 "${T[@]}" "$DTRAIN" $'ru\x1bn'
expect_err "'ru\\x1bn' is not a dtrain command"
! grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$WORK/err" || fail "control bytes on stderr"

# FIFOs: as the config, as the training data, as the validation data.
mkfifo "$WORK/fifo.toml" "$WORK/fifo.bin"
expect_exit 2 "${T[@]}" "$DTRAIN" validate "$WORK/fifo.toml"
expect_err "fifo.toml: cannot read config: not a regular file (a FIFO)"
expect_exit 2 "${T[@]}" "$DTRAIN" plan "$WORK/fifo.toml" --devices 2
expect_err "fifo.toml: cannot read config: not a regular file (a FIFO)"
expect_exit 2 "${T[@]}" "$DTRAIN" run "$WORK/tiny.toml" --set "data.train=$WORK/fifo.bin" --out "$WORK/f1"
expect_err "fifo.bin' is not a regular file (a FIFO)"
expect_exit 2 "${T[@]}" "$DTRAIN" run "$WORK/tiny.toml" --set "data.val=$WORK/fifo.bin" --out "$WORK/f2"
expect_err "fifo.bin' is not a regular file (a FIFO)"
# ... and every other file dtrain reads or appends to: a hardware file, model.init_from's
# config.json, the GPT-2 tokenizer's files, a run's metrics.jsonl (opened to append, a FIFO
# would wait for a reader): one line naming the file and what was expected.
expect_exit 2 "${T[@]}" "$DTRAIN" hardware "$WORK/fifo.toml"
expect_err "$WORK/fifo.toml: cannot read hardware file: not a regular file (a FIFO)"
lines 1
mkdir "$WORK/hf" && mkfifo "$WORK/hf/config.json"
expect_exit 2 "${T[@]}" "$DTRAIN" run "$WORK/tiny.toml" --set "model.init_from=hf:$WORK/hf" --out "$WORK/h"
expect_err "model.init_from: '$WORK/hf/config.json': a FIFO, not a regular file"
lines 1
mkdir -p "$WORK/m" && mkfifo "$WORK/m/metrics.jsonl"
expect_exit 2 "${T[@]}" "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=1 --set optim.warmup_steps=0 --out "$WORK/m"
expect_err "log.out_dir: '$WORK/m/metrics.jsonl' is a FIFO, where dtrain writes a file of its own: remove it"
lines 1
mkdir "$WORK/tokdir" && mkfifo "$WORK/tokdir/encoder.json"
expect_exit 0 "${T[@]}" "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=1 --set optim.warmup_steps=0 --set model.vocab_size=50257 --set data.tokenizer=gpt2 \
  --set "data.tokenizer_dir=$WORK/tokdir" --out "$WORK/g"
expect_exit 2 "${T[@]}" "$DTRAIN" generate "$WORK/g/checkpoints" --prompt "the" --tokens 2
expect_err "'$WORK/tokdir/encoder.json': not a regular file (a FIFO); expected the GPT-2 tokenizer's vocabulary (JSON), a regular file"
# validate reads the data files and checks the output directories, and reports every problem at once.
head -c 100 "$WORK/tok_val.bin" >"$WORK/short.bin"
expect_exit 2 "${T[@]}" "$DTRAIN" validate "$WORK/tiny.toml" --set "data.train=$WORK/missing.bin" \
  --set "data.val=$WORK/short.bin" --set "checkpoint.dir=$WORK/tiny.toml/ck"
expect_err "data.train: data file '$WORK/missing.bin' not found"
expect_err "data.val: "
expect_err "short.bin"
expect_err "checkpoint.dir: '$WORK/tiny.toml/ck' cannot be created: '$WORK/tiny.toml' is not a directory"
expect_err "3 problems"
# run reports both data problems too, and an unwritable output directory before training.
expect_exit 2 "${T[@]}" "$DTRAIN" run "$WORK/tiny.toml" --set "data.train=$WORK/missing.bin" --set "data.val=$WORK/short.bin" --out "$WORK/d"
expect_err "missing.bin' not found"
expect_err "short.bin"
# A relative path says where it was looked for (a config's data/... run from another directory).
(cd "$WORK" && expect_exit 2 "${T[@]}" "$DTRAIN" validate "$WORK/tiny.toml" --set data.train=data/missing.bin)
expect_err "data.train: data file 'data/missing.bin' not found (a path relative to the working directory, $(cd "$WORK" && pwd -P))"
expect_exit 2 "${T[@]}" "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/tiny.toml/out"
expect_err "log.out_dir: '$WORK/tiny.toml/out' cannot be created"
echo "hostile_inputs: ok"
