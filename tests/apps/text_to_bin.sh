#!/usr/bin/env bash
# tools/text_to_bin.py: converts a small UTF-8 text (from a file and from
# stdin) and checks the llm.c header fields, the train/val split, and that the
# tokens are exactly the text's bytes; and that bad arguments fail cleanly.
set -euo pipefail

: "${DTRAIN_SOURCE_DIR:?set DTRAIN_SOURCE_DIR to the dtrain source tree}"
tool="$DTRAIN_SOURCE_DIR/tools/text_to_bin.py"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# 100 bytes, some of them multi-byte UTF-8 (token values above 127).
printf 'Größe und Gewicht: naïve café.\nTo be, or not to be, that is the question. ¡Olé! 0123456789abc\n' \
  > "$work/in.txt"
size=$(wc -c < "$work/in.txt")
[ "$size" -eq 100 ] || fail "the test text has $size bytes, expected 100"

# Checks PREFIX_{train,val}.bin against the text: header and tokens.
check() {
  local prefix=$1 n_train=$2 n_val=$3
  python3 - "$work/in.txt" "$prefix" "$n_train" "$n_val" <<'PY'
import struct, sys
text_path, prefix, n_train, n_val = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
text = open(text_path, "rb").read()
expect = {"train": text[:n_train], "val": text[n_train:]}
assert n_train + n_val == len(text), (n_train, n_val, len(text))
for split, want in expect.items():
    data = open("%s_%s.bin" % (prefix, split), "rb").read()
    header = struct.unpack("<256i", data[:1024])
    if header[0] != 20240520: sys.exit("%s: magic %d" % (split, header[0]))
    if header[1] != 1: sys.exit("%s: version %d" % (split, header[1]))
    if header[2] != len(want): sys.exit("%s: %d tokens, expected %d" % (split, header[2], len(want)))
    if any(header[3:]): sys.exit("%s: header ints 3..255 are not zero" % split)
    if len(data) != 1024 + 2 * len(want): sys.exit("%s: file size %d" % (split, len(data)))
    tokens = struct.unpack("<%dH" % len(want), data[1024:])
    if tokens != tuple(want): sys.exit("%s: tokens are not the text's bytes" % split)
    if split == "train" and max(tokens) <= 127: sys.exit("no multi-byte UTF-8 in the test text")
PY
}

out=$(python3 "$tool" "$work/in.txt" --out "$work/a")
check "$work/a" 90 10 || fail "default split (val fraction 0.1)"
grep -q "a_train.bin: 90 tokens" <<<"$out" || fail "token counts not printed: $out"
grep -q "a_val.bin: 10 tokens" <<<"$out" || fail "token counts not printed: $out"

python3 "$tool" - --out "$work/sub/b" --val-fraction 0.25 < "$work/in.txt" > /dev/null
check "$work/sub/b" 75 25 || fail "stdin input with --val-fraction 0.25"

# Bad input: a clear message and a non-zero status, no traceback.
if python3 "$tool" "$work/missing.txt" --out "$work/c" 2> "$work/err"; then
  fail "a missing input succeeded"
fi
grep -q "cannot read" "$work/err" || fail "missing input: $(cat "$work/err")"
printf 'abc' > "$work/tiny.txt"
if python3 "$tool" "$work/tiny.txt" --out "$work/d" 2> "$work/err"; then
  fail "a 3-byte text succeeded"
fi
grep -q "needs at least 2" "$work/err" || fail "tiny input: $(cat "$work/err")"
if python3 "$tool" "$work/in.txt" --out "$work/e" --val-fraction 1.5 2> "$work/err"; then
  fail "--val-fraction 1.5 succeeded"
fi
! grep -q Traceback "$work/err" || fail "a traceback: $(cat "$work/err")"
[ "$(wc -l <"$work/err")" -eq 1 ] || fail "more than one line: $(cat "$work/err")"
# A directory or an empty name is not a prefix (they wrote dir_train.bin beside it, or _train.bin).
for bad in "$work/sub" "$work/sub/" ""; do
  if python3 "$tool" "$work/in.txt" --out "$bad" 2> "$work/err"; then fail "--out '$bad' succeeded"; fi
  grep -q "expected a file name prefix such as data/kjv" "$work/err" || fail "--out '$bad': $(cat "$work/err")"
done
[ ! -e "$work/sub_train.bin" ] && [ ! -e "$work/sub/_train.bin" ] || fail "a refused --out wrote a file"

echo "text_to_bin: ok"
