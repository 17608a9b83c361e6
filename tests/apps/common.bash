# Helpers for the end-to-end tests (sourced). CTest sets DTRAIN (the binary)
# and DTRAIN_SOURCE_DIR.
set -euo pipefail
: "${DTRAIN:?set DTRAIN to the dtrain binary}"
: "${DTRAIN_SOURCE_DIR:?set DTRAIN_SOURCE_DIR to the source tree}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_exit CODE CMD...: runs CMD, stores stdout/stderr in $WORK/out and $WORK/err.
expect_exit() {
  local want=$1; shift
  set +e
  "$@" >"$WORK/out" 2>"$WORK/err"
  local got=$?
  set -e
  [ "$got" -eq "$want" ] || { cat "$WORK/err" >&2; fail "'$*' exited $got, expected $want"; }
}

# expect_err TEXT: stderr of the last expect_exit contains TEXT.
expect_err() { grep -qF -- "$1" "$WORK/err" || { cat "$WORK/err" >&2; fail "stderr lacks: $1"; }; }

# A small byte-level token corpus in $WORK/tok_{train,val}.bin.
make_tokens() {
  python3 - "$WORK/text.txt" <<'PY'
import sys
words = "the quick brown fox jumps over the lazy dog and then some more words follow here".split()
with open(sys.argv[1], "w") as f:
    for i in range(3000):
        f.write(words[(i * 7) % len(words)] + (" " if i % 11 else ".\n"))
PY
  python3 "$DTRAIN_SOURCE_DIR/tools/text_to_bin.py" "$WORK/text.txt" --out "$WORK/tok" >/dev/null
}

# A tiny GPT config on the corpus from make_tokens.
tiny_gpt_config() {
  cat >"$WORK/tiny.toml" <<EOT
[model]
type = "gpt"
vocab_size = 256
context_length = 16
n_layer = 2
n_head = 2
n_embd = 32

[data]
train = "$WORK/tok_train.bin"
val = "$WORK/tok_val.bin"

[train]
steps = 30
micro_batch = 4
grad_accum = 2
eval_every = 10
eval_batches = 4
threads = 2

[optim]
lr = 3e-3
warmup_steps = 5

[log]
every = 10
EOT
}

# json_field FILE KEY: the values of KEY in a JSON-lines file, one per line.
json_field() {
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if sys.argv[2] in r: print(repr(r[sys.argv[2]]))' "$1" "$2"
}

# wait_lines FILE N: until FILE has N lines or more (30 s at most: then the checks that follow say
# what is missing).
wait_lines() {
  for _ in $(seq 600); do
    [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
    sleep 0.05
  done
}

# wait_glob PATTERN: until a path matches PATTERN (10 s at most, as wait_lines).
wait_glob() {
  for _ in $(seq 1000); do
    compgen -G "$1" >/dev/null && return 0
    sleep 0.01
  done
}

# step_losses FILE: "step loss" for every training record of a metrics.jsonl,
# the loss in its shortest round-trip form (equal text = equal bits).
step_losses() {
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if "loss" in r: print(r["step"], repr(r["loss"]))' "$1"
}

# same_losses A B: every training record of metrics file B has the loss A has at that step
# (bit for bit), and B has at least one.
same_losses() {
  [ -s "$2" ] && [ -n "$(step_losses "$2")" ] || fail "no training records in $2"
  local diff
  diff=$(grep -vxFf <(step_losses "$1") <(step_losses "$2") || true)
  [ -z "$diff" ] || fail "losses in $2 differ from $1 at: $(echo "$diff" | head -3 | tr '\n' ' ')"
}
