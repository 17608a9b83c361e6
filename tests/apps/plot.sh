# tools/plot_metrics.py and log.plot: `dtrain run` with log.plot = true writes
# a PNG of its loss curves; the script draws one run and several overlaid (a
# GPT and a classifier with accuracy), and fails cleanly on bad input.
source "$(dirname "$0")/common.bash"
PY=/usr/bin/python3
"$PY" -c "import matplotlib" 2>/dev/null || fail "matplotlib is missing: apt-get install python3-matplotlib (tools/setup.sh does)"
make_tokens
tiny_gpt_config
tool="$DTRAIN_SOURCE_DIR/tools/plot_metrics.py"
base=(--set train.steps=10 --set optim.warmup_steps=2 --set train.eval_every=5 --set train.threads=1 --set log.every=5)

is_png() {  # is_png FILE: a PNG signature and a non-trivial size
  [ -f "$1" ] || fail "$1 was not written"
  [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$1 is not a PNG"
  [ "$(wc -c < "$1")" -gt 10000 ] || fail "$1 is suspiciously small"
}

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set log.plot=true --out "$WORK/a"
grep -q "plot: $WORK/a/loss.png" "$WORK/out" || fail "no plot line: $(cat "$WORK/out")"
is_png "$WORK/a/loss.png"
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set optim.lr=1e-3 --out "$WORK/b"
[ ! -e "$WORK/b/loss.png" ] || fail "log.plot = false (the default) drew a plot"

# A stopped run draws nothing: the plot took most of a stop's time (0.46 of 0.53 s), and the
# resume draws the whole run.
"$DTRAIN" run "$WORK/tiny.toml" "${base[@]}" --set train.steps=100000 --set log.plot=true --out "$WORK/stop" \
  >"$WORK/out" 2>"$WORK/err" &
pid=$!
wait_lines "$WORK/stop/metrics.jsonl" 5
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 4 ] || { cat "$WORK/err"; fail "stopped run: exit $rc, expected 4"; }
[ ! -e "$WORK/stop/loss.png" ] || fail "a stopped run drew a plot"
! grep -q "^plot:" "$WORK/out" || fail "a stopped run said it drew a plot: $(cat "$WORK/out")"
step=$(sed -n 's/^dtrain: stopped by SIGTERM after step \([0-9]*\) .*/\1/p' "$WORK/err")
expect_exit 0 "$DTRAIN" resume "$WORK/stop/checkpoints" --set train.steps=$((step + 2))
is_png "$WORK/stop/loss.png"

# One run, then several; a classifier's accuracy gets a row of its own.
expect_exit 0 "$PY" "$tool" "$WORK/b" -o "$WORK/one.png"
is_png "$WORK/one.png"
mkdir -p "$WORK/cnn"
printf '[model]\ntype = "cnn"\n[train]\nglobal_batch = 64\n' > "$WORK/cnn/config.toml"
for s in 1 2 3 4; do echo "{\"step\": $s, \"loss\": $((5 - s)).5}"; done > "$WORK/cnn/metrics.jsonl"
echo '{"step": 4, "eval_loss": 1.7, "eval_accuracy": 0.61}' >> "$WORK/cnn/metrics.jsonl"
expect_exit 0 "$PY" "$tool" "$WORK/a" "$WORK/b" "$WORK/cnn" -o "$WORK/sub/three.png"
grep -q "wrote $WORK/sub/three.png (3 runs)" "$WORK/out" || fail "$(cat "$WORK/out")"
is_png "$WORK/sub/three.png"
"$PY" - "$WORK/one.png" "$WORK/sub/three.png" <<'PY' || fail "the several-run plot is not taller (no accuracy row)"
import struct, sys
h = [struct.unpack(">II", open(p, "rb").read()[16:24])[1] for p in sys.argv[1:]]
assert h[1] > 1.5 * h[0], h
PY

# Bad input: one line, no traceback.
expect_exit 2 "$PY" "$tool" "$WORK/none" -o "$WORK/x.png"
expect_err "cannot read $WORK/none/metrics.jsonl"
echo "not json" > "$WORK/cnn/metrics.jsonl"
expect_exit 2 "$PY" "$tool" "$WORK/cnn" -o "$WORK/x.png"
expect_err "metrics.jsonl:1: not a JSON record"
! grep -q Traceback "$WORK/err" || fail "a traceback"
# Found by QA as tracebacks or a wrong "wrote" line: not UTF-8, a loss that is not a number,
# an output name matplotlib has no format for, a directory as the output.
printf '\xff\xfe\n' > "$WORK/cnn/metrics.jsonl"
expect_exit 2 "$PY" "$tool" "$WORK/cnn" -o "$WORK/x.png"
expect_err "metrics.jsonl: not UTF-8 text (byte 0)"
echo '{"step": 3, "loss": "x"}' > "$WORK/cnn/metrics.jsonl"
expect_exit 2 "$PY" "$tool" "$WORK/cnn" -o "$WORK/x.png"
expect_err 'metrics.jsonl:1: loss is "x", not a number'
expect_exit 2 "$PY" "$tool" "$WORK/b" -o "$WORK/x.txt"
expect_err "-o $WORK/x.txt: expected a .png, .svg or .pdf file name"
expect_exit 2 "$PY" "$tool" "$WORK/b" -o "$WORK/sub"
expect_err "-o $WORK/sub: a directory"
! grep -q Traceback "$WORK/err" || fail "a traceback"
# A run stopped while writing its last record: that record left out, said, the rest drawn;
# the metrics file itself may be named; an evaluation-only file draws without a warning.
cp "$WORK/a/metrics.jsonl" "$WORK/torn.jsonl"
printf '{"step": 11, "lo' >> "$WORK/torn.jsonl"
expect_exit 0 "$PY" "$tool" "$WORK/torn.jsonl" -o "$WORK/torn.png"
expect_err "torn.jsonl:$(($(wc -l < "$WORK/torn.jsonl") + 1)): the last record is cut short"
is_png "$WORK/torn.png"
grep '"eval_loss"' "$WORK/a/metrics.jsonl" > "$WORK/cnn/metrics.jsonl"
rm "$WORK/cnn/config.toml"
expect_exit 0 "$PY" "$tool" "$WORK/cnn" -o "$WORK/evals.png"
! grep -qi "warn" "$WORK/err" || fail "a warning: $(cat "$WORK/err")"
echo "plot: ok"
