#!/usr/bin/env bash
# A corpus in shards, as llm.c writes large datasets: data.train given a glob
# pattern trains on every file it matches, in name order. Shards cut from one
# file with a token of overlap hold exactly its windows, so training on them
# gives the one file's losses bit for bit (in one process and on dp = 2);
# text_to_bin.py --shard-tokens writes shards that train; a pattern that
# matches nothing, and a bad shard among many, are one line naming the key.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
T=16

# The training file cut into shards of 10 windows (10 T + 1 tokens), each
# starting on the previous one's last token, written out of name order.
python3 - "$WORK/tok_train.bin" "$WORK/shard" $T <<'PY'
import struct, sys
src, prefix, T = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
n = struct.unpack_from("<i", data, 8)[0]
tokens = data[1024:]
starts = list(range(0, n - 1, 10 * T))
for i in reversed(range(len(starts))):
    a = starts[i]
    b = min(n, a + 10 * T + 1)
    header = struct.pack("<256i", 20240520, 1, b - a, *([0] * 253))
    open("%s_%03d.bin" % (prefix, i), "wb").write(header + tokens[2 * a:2 * b])
PY
ls "$WORK"/shard_*.bin | wc -l | grep -qx '[2-9][0-9]*' || fail "expected several shards"

steps=(--set train.steps=12 --set optim.warmup_steps=0 --set checkpoint.every=0)
"$DTRAIN" run "$WORK/tiny.toml" "${steps[@]}" --out "$WORK/one" >/dev/null
"$DTRAIN" run "$WORK/tiny.toml" "${steps[@]}" --set "data.train=$WORK/shard_*.bin" --out "$WORK/shards" >/dev/null
same_losses "$WORK/one/metrics.jsonl" "$WORK/shards/metrics.jsonl"
grep -qF "shard_*.bin" "$WORK/shards/config.toml" || fail "the run's config lost the pattern"
# dp = 2 (each rank reads its share of every batch from the shards) against
# dp = 2 on the one file: the same bits (against one process they differ in
# the last digits, by the gradient all-reduce's order).
dp2=(mpirun --allow-run-as-root --oversubscribe -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${steps[@]}"
     --set parallel.dp=2 --set train.micro_batch=2)
"${dp2[@]}" --out "$WORK/dp2_one" >/dev/null
"${dp2[@]}" --set "data.train=$WORK/shard_*.bin" --out "$WORK/dp2_shards" >/dev/null
same_losses "$WORK/dp2_one/metrics.jsonl" "$WORK/dp2_shards/metrics.jsonl"

# Shards from text_to_bin.py train (and validate counts their tokens).
python3 "$DTRAIN_SOURCE_DIR/tools/text_to_bin.py" "$WORK/text.txt" --out "$WORK/cut" --shard-tokens 5000 > "$WORK/cut.log"
grep -qF "data.train = \"$WORK/cut_train_*.bin\"" "$WORK/cut.log" || fail "text_to_bin did not name the pattern"
n_cut=$(ls "$WORK"/cut_train_*.bin | wc -l)
[ "$n_cut" -ge 3 ] || fail "text_to_bin --shard-tokens wrote too few shards"
expect_exit 0 "$DTRAIN" validate "$WORK/tiny.toml" --set "data.train=$WORK/cut_train_*.bin"
expect_err "data.train: '$WORK/cut_train_*.bin' matches $n_cut files ($WORK/cut_train_000000.bin to "
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=2 --set optim.warmup_steps=0 --set "data.train=$WORK/cut_train_*.bin" \
  --out "$WORK/cut_run"

# A pattern that matches nothing, and one bad shard among many: one line each.
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set "data.train=$WORK/nothing_*.bin" --out "$WORK/none"
expect_err "data.train: no file matches '$WORK/nothing_*.bin'"
[ "$(grep -c . "$WORK/err")" -eq 1 ] || { cat "$WORK/err"; fail "expected one line"; }
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" --set "data.train=$WORK/nothing_*.bin"
expect_err "data.train: no file matches"
cp "$WORK/shard_001.bin" "$WORK/shard_001.keep"
head -c 100 "$WORK/shard_001.keep" > "$WORK/shard_001.bin"
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set "data.train=$WORK/shard_*.bin" --out "$WORK/bad"
expect_err "data.train: '$WORK/shard_001.bin' is truncated"
mv "$WORK/shard_001.keep" "$WORK/shard_001.bin"
# A checkpoint records the corpus it read; a resume on other shards says so
# (and goes on: another corpus is allowed, as another data.train is).
"$DTRAIN" run "$WORK/tiny.toml" --set train.steps=4 --set optim.warmup_steps=0 --set checkpoint.every=2 \
  --set "data.train=$WORK/shard_*.bin" --out "$WORK/rec" >/dev/null
"$DTRAIN" inspect "$WORK/rec/checkpoints/step_00000002" > "$WORK/inspect.txt"
grep -qE "^data +[0-9]+ files, [0-9]+ tokens, [0-9]+ sequences of 17 tokens" "$WORK/inspect.txt" ||
  { cat "$WORK/inspect.txt"; fail "inspect shows no data record"; }
expect_exit 0 "$DTRAIN" resume "$WORK/rec/checkpoints/step_00000002" --out "$WORK/rec_same" --set train.steps=3
grep -qF "warning: data.train" "$WORK/err" && fail "a resume on the same shards warned: $(cat "$WORK/err")"
mv "$WORK/shard_000.bin" "$WORK/moved_000.bin"
expect_exit 0 "$DTRAIN" resume "$WORK/rec/checkpoints/step_00000002" --out "$WORK/rec_other" --set train.steps=3
expect_err "warning: data.train holds "
expect_err "the batches from step 2 on follow the data as it is now"
mv "$WORK/moved_000.bin" "$WORK/shard_000.bin"

# Shards all shorter than a sequence: validate refuses them as run does.
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" --set "data.train=$WORK/cut_train_*.bin" --set train.seq_len=8 \
  --set model.context_length=8000 --set train.seq_len=6000
expect_err "data.train: '$WORK/cut_train_*.bin': none of its $n_cut files holds one sequence of seq_len + 1 = 6001 tokens"
# profile opens the data itself: its line names the key too.
expect_exit 2 "$DTRAIN" profile "$WORK/tiny.toml" --set "data.val=$WORK/nothing_*.bin"
expect_err "data.val: no file matches '$WORK/nothing_*.bin'"
# 120 shards under a file limit of 48: at most 6 kept open, and every one read.
python3 - "$WORK/tok_train.bin" "$WORK/many" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack_from("<i", data, 8)[0]
per = n // 120
for i in range(120):
    body = data[1024 + 2 * i * per:1024 + 2 * (i + 1) * per]
    open("%s_%03d.bin" % (sys.argv[2], i), "wb").write(struct.pack("<256i", 20240520, 1, len(body) // 2, *([0] * 253)) + body)
PY
(ulimit -n 48 && "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=8 --set optim.warmup_steps=0 \
   --set "data.train=$WORK/many_*.bin" --set train.micro_batch=16 --out "$WORK/many_run" >/dev/null) ||
  fail "120 shards under ulimit -n 48"
echo "data_shards: OK"
