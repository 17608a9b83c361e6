# Hostile checkpoints (issue 14): nothing from a checkpoint's files is trusted
# before it is checked. A tensor piece with fewer rows, flattened or too big,
# its CRC and the manifest recomputed (as h5py would leave it), is refused
# before a byte is read, on one process and on 2 ranks (no heap overflow);
# a flipped byte in the master file's HDF5 metadata is caught by the
# manifest's file checksum before HDF5 opens the file; a checkpoint whose
# directory name says another step, a manifest of another checkpoint, an
# emptied tensor list (inspect --verify), a FIFO in place of a file, a
# missing manifest, another run's checkpoints copied in (passed over, naming
# both runs); every time with the fall-back to the previous checkpoint where
# a directory of checkpoints was given.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PY=/usr/bin/python3
"$PY" -c "import h5py" 2>/dev/null || fail "h5py is missing: apt-get install python3-h5py (tools/setup.sh does)"
T=(timeout 60)
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/r" --set train.steps=10 --set checkpoint.every=5 \
  --set train.threads=1 --set parallel.timeout=20
ck="$WORK/r/checkpoints"
[ -f "$ck/step_00000010/manifest" ] || fail "no manifest written"
cp -r "$ck" "$WORK/pristine"
fresh() { rm -rf "$ck" && cp -r "$WORK/pristine" "$ck"; }

# remanifest DIR: recompute the manifest of checkpoint DIR from its files (what a
# careful editor of the files would do; only a key could tell).
remanifest() {
  "$PY" - "$1" <<'PY'
import os, sys, zlib
d = sys.argv[1]
lines = open(d + "/manifest").read().splitlines()
out = []
for l in lines[:-1]:
    if l.startswith("file "):
        name = l.split()[1]
        data = open(os.path.join(d, name), "rb").read()
        l = "file %s %d %08x" % (name, len(data), zlib.crc32(data))
    out.append(l)
body = "\n".join(out) + "\n"
open(d + "/manifest", "w").write(body + "crc32 %08x\n" % zlib.crc32(body.encode()))
PY
}

# reshape FILE KEY HOW: rewrite a stored piece (fewer rows / flattened / more rows) with a fresh crc32.
reshape() {
  "$PY" - "$@" <<'PY'
import h5py, numpy as np, sys, zlib
path, key, how = sys.argv[1:]
with h5py.File(path, "r+") as f:
    d = f[key]; a = d[()]; attrs = dict(d.attrs)
    if how == "fewer": a = a[: a.shape[0] // 2]
    elif how == "flat": a = a.reshape(-1)
    elif how == "more": a = np.concatenate([a, a])
    del f[key]
    n = f.create_dataset(key, data=np.ascontiguousarray(a))
    for k, v in attrs.items(): n.attrs[k] = v
    n.attrs["crc32"] = np.uint32(zlib.crc32(np.ascontiguousarray(a).tobytes()))
PY
}

# 1. Shapes: fewer rows, flattened, more rows; one process.
for how in fewer flat more; do
  fresh
  reshape "$ck/step_00000010/rank_00000.h5" model/blocks.0.mlp.fc.weight "$how"
  remanifest "$ck/step_00000010"
  expect_exit 0 "${T[@]}" "$DTRAIN" resume "$ck" --out "$WORK/x_$how"
  expect_err "$ck/step_00000010: rank_00000.h5: tensor model/blocks.0.mlp.fc.weight: stored as"
  expect_err "falling back to $ck/step_00000005"
  grep -q "resuming from $ck/step_00000005" "$WORK/out" || fail "$how: did not resume from step 5"
  expect_exit 2 "${T[@]}" "$DTRAIN" resume "$ck/step_00000010" --out "$WORK/y_$how"
  expect_err "tensor model/blocks.0.mlp.fc.weight: stored as"
  expect_exit 2 "${T[@]}" "$DTRAIN" inspect "$ck/step_00000010" --verify
  expect_err "tensor model/blocks.0.mlp.fc.weight: stored as"
done

# 2. The same on 2 ranks: a tp=2 checkpoint with one rank's piece cut short, resumed on 2 ranks and on 1.
tp=(--set parallel.tp=2 --set model.n_head=2)
expect_exit 0 "${T[@]}" "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/t" --set train.steps=4 \
  --set checkpoint.every=2 --set optim.warmup_steps=1 --set train.threads=1 --set parallel.timeout=20 "${tp[@]}"
tck="$WORK/t/checkpoints"
reshape "$tck/step_00000004/rank_00001.h5" model/blocks.1.attn.qkv.weight fewer
remanifest "$tck/step_00000004"
expect_exit 0 "${T[@]}" "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$tck" --out "$WORK/t2" --set train.steps=6
expect_err "rank_00001.h5: tensor model/blocks.1.attn.qkv.weight: stored as"
expect_err "falling back to $tck/step_00000002"
expect_exit 0 "${T[@]}" "$DTRAIN" resume "$tck" --out "$WORK/t1" --set train.steps=6
expect_err "rank_00001.h5: tensor model/blocks.1.attn.qkv.weight: stored as"

# 2b. A flipped byte in a tensor's data, the manifest recomputed: the tensor's own CRC.
fresh
"$PY" - "$ck/step_00000010/rank_00000.h5" <<'PY'
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    d = f["model/wte.weight"]
    at = d.id.get_offset() + d.id.get_storage_size() // 2
with open(sys.argv[1], "r+b") as f:
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0x10]))
PY
remanifest "$ck/step_00000010"
expect_exit 2 "${T[@]}" "$DTRAIN" inspect "$ck/step_00000010" --verify
expect_err "rank_00000.h5: tensor model/wte.weight: checksum mismatch"

# 3. A flipped byte in the master file's HDF5 metadata (every byte outside the
# datasets' own data is metadata; the virtual datasets have none): the manifest
# catches each before HDF5 opens the file.
fresh
size=$(stat -c %s "$ck/step_00000010/checkpoint.h5")
for at in 0 100 $((size / 3)) $((size / 2)) $((size - 40)); do
  cp "$WORK/pristine/step_00000010/checkpoint.h5" "$ck/step_00000010/checkpoint.h5"
  "$PY" -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^0x5a]))" \
    "$ck/step_00000010/checkpoint.h5" "$at"
  expect_exit 0 "${T[@]}" "$DTRAIN" resume "$ck" --out "$WORK/m$at"
  expect_err "$ck/step_00000010: checkpoint.h5: the file's bytes do not match the manifest"
  expect_err "falling back to $ck/step_00000005"
  expect_exit 2 "${T[@]}" "$DTRAIN" inspect "$ck/step_00000010" --verify
  expect_err "do not match the manifest"
done
# A damaged manifest is itself reported.
fresh
sed -i 's/^step 10$/step 11/' "$ck/step_00000010/manifest"
expect_exit 2 "${T[@]}" "$DTRAIN" inspect "$ck/step_00000010"
expect_err "manifest: damaged (its own checksum does not match)"
# ... even where the change keeps the value the same (found by tools/campaign.py: an upper-case hex digit).
fresh
sed -i 's/^crc32 /crc32  /' "$ck/step_00000010/manifest"
expect_exit 2 "${T[@]}" "$DTRAIN" inspect "$ck/step_00000010"
expect_err "manifest: damaged (its own checksum does not match)"

# 4. inspect --verify with the master file's tensor list emptied (manifest recomputed).
fresh
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f.attrs['tensors']=''; f.close()" "$ck/step_00000010/checkpoint.h5"
remanifest "$ck/step_00000010"
expect_exit 2 "${T[@]}" "$DTRAIN" inspect "$ck/step_00000010" --verify
expect_err "lists no files or no tensors"
expect_exit 0 "${T[@]}" "$DTRAIN" resume "$ck" --out "$WORK/e"
expect_err "not in the master file's list of tensors"
expect_err "falling back to $ck/step_00000005"

# 5. A directory named for another step (step 5's contents as step 11): refused, falling back to step 10.
fresh
cp -r "$ck/step_00000005" "$ck/step_00000011"
expect_exit 0 "${T[@]}" "$DTRAIN" resume "$ck" --out "$WORK/n"
expect_err "$ck/step_00000011: checkpoint.h5: the directory's name says step 11 but the checkpoint holds step 5"
expect_err "falling back to $ck/step_00000010"
# ... and a manifest from another checkpoint.
fresh
cp "$ck/step_00000005/manifest" "$ck/step_00000010/manifest"
expect_exit 2 "${T[@]}" "$DTRAIN" inspect "$ck/step_00000010"
expect_err "step_00000010: checkpoint.h5: the file's bytes do not match the manifest"

# 6. Not regular files: a FIFO as checkpoint.h5 or a rank file fails at once (no hang).
fresh
rm "$ck/step_00000010/checkpoint.h5" && mkfifo "$ck/step_00000010/checkpoint.h5"
expect_exit 2 "${T[@]}" "$DTRAIN" inspect "$ck/step_00000010"
expect_err "checkpoint.h5: not a regular file"
fresh
rm "$ck/step_00000010/rank_00000.h5" && mkfifo "$ck/step_00000010/rank_00000.h5"
expect_exit 0 "${T[@]}" "$DTRAIN" resume "$ck" --out "$WORK/f"
expect_err "rank_00000.h5: not a regular file"
expect_err "falling back to $ck/step_00000005"

# 7. A format-2 checkpoint without its manifest is refused, naming it.
fresh
rm "$ck/step_00000010/manifest"
expect_exit 2 "${T[@]}" "$DTRAIN" inspect "$ck/step_00000010"
expect_err "manifest: missing (format 2 checkpoints have one)"

# 8. Another run's checkpoints copied into this run's directory: each checkpoint records its run
# (drawn at a run's first start, kept by its resumes); resuming the directory passes them over,
# naming both runs: one whose name fits its step (12) and one named step 11 holding step 6.
fresh
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/other" --set train.steps=12 --set checkpoint.every=5 \
  --set train.threads=1 --set train.seed=7 --set optim.lr=1e-3
"$DTRAIN" inspect "$ck/step_00000010" >"$WORK/out"
mine=$(sed -n 's/^run  *\([0-9a-f]\{16\}\)$/\1/p' "$WORK/out")
"$DTRAIN" inspect "$WORK/other/checkpoints/step_00000012" >"$WORK/out"
theirs=$(sed -n 's/^run  *\([0-9a-f]\{16\}\)$/\1/p' "$WORK/out")
[ -n "$mine" ] && [ -n "$theirs" ] && [ "$mine" != "$theirs" ] || fail "inspect shows no run ids ('$mine', '$theirs')"
grep -q "^run $mine\$" "$ck/step_00000010/manifest" || fail "the manifest does not record the run"
[ "$(cat "$ck/run")" = "$mine" ] || fail "the checkpoint directory's run file does not name the run"
cp -r "$WORK/other/checkpoints/step_00000012" "$ck/step_00000012"
cp -r "$WORK/other/checkpoints/step_00000005" "$ck/step_00000011"
expect_exit 0 "${T[@]}" "$DTRAIN" resume "$ck" --out "$WORK/o1" --set train.steps=11
expect_err "$ck/step_00000012: manifest: belongs to another run (run $theirs; the run of $ck is $mine, as its 'run' file says)"
expect_err "not continued unless named exactly (dtrain resume $ck/step_00000012)"
expect_err "$ck/step_00000011: manifest: belongs to another run (run $theirs;"
expect_err "falling back to $ck/step_00000010"
grep -q "resuming from $ck/step_00000010: step 10" "$WORK/out" || fail "did not resume this run's step 10"
# The run continues under its identity ...
"$DTRAIN" inspect "$WORK/o1/checkpoints/step_00000011" >"$WORK/out"
grep -q "^run  *$mine\$" "$WORK/out" || fail "a resumed run changed its run id"
# ... without 'run', the checkpoint 'latest' names decides; without both, most checkpoints.
rm "$ck/run"
expect_exit 0 "${T[@]}" "$DTRAIN" resume "$ck" --out "$WORK/o2" --set train.steps=11
expect_err "belongs to another run (run $theirs; the run of $ck is $mine, that of step_00000010, which 'latest' names)"
rm -r "$ck/step_00000011" "$ck/latest"
expect_exit 0 "${T[@]}" "$DTRAIN" resume "$ck" --out "$WORK/o4" --set train.steps=11
expect_err "belongs to another run (run $theirs; the run of $ck is $mine, that of 2 of its 3 checkpoints)"
# Continued in place, the fall-back would save over the other run's newer step_00000012: refused.
sum=$(cat "$ck/step_00000012"/* | md5sum)
expect_exit 2 "${T[@]}" "$DTRAIN" resume "$ck" --set train.steps=13
expect_err "holds step_00000012 of run $theirs, another run's, newer than step 10 being resumed, which continuing there would replace"
[ "$(cat "$ck/step_00000012"/* | md5sum)" = "$sum" ] || fail "the other run's checkpoint was touched"
# Another run's checkpoint copied over the very one 'latest' names: the run file tells.
fresh
rm -r "$ck/step_00000010" && cp -r "$WORK/other/checkpoints/step_00000010" "$ck/step_00000010"
expect_exit 0 "${T[@]}" "$DTRAIN" resume "$ck" --out "$WORK/o5" --set train.steps=11
expect_err "$ck/step_00000010: manifest: belongs to another run (run $theirs; the run of $ck is $mine, as its 'run' file says)"
expect_err "falling back to $ck/step_00000005"
# Named exactly, another run's checkpoint is resumed on purpose, and keeps its run.
cp -r "$WORK/other/checkpoints/step_00000012" "$ck/step_00000012"
expect_exit 0 "${T[@]}" "$DTRAIN" resume "$ck/step_00000012" --out "$WORK/o3" --set train.steps=13
grep -q "resuming from $ck/step_00000012: step 12" "$WORK/out" || fail "the named checkpoint was not resumed"
"$DTRAIN" inspect "$WORK/o3/checkpoints/step_00000013" >"$WORK/out"
grep -q "^run  *$theirs\$" "$WORK/out" || fail "the resumed run of another's checkpoint changed its run id"
# A run directory whose config.toml nests deep enough to overflow the TOML parser's stack (one
# bracket a line): resume reads it to tell whether a checkpoint.dir outside it is its own, and
# died of SIGSEGV; now the file is not one dtrain wrote, so it names none, and resume says so.
expect_exit 0 "${T[@]}" "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/deep" --set checkpoint.dir="$WORK/deep_ck" \
  --set train.steps=2 --set checkpoint.every=2 --set optim.warmup_steps=0 --set train.threads=1
{ printf 'x = '; awk 'BEGIN { for (i = 0; i < 200000; i++) print "["; for (i = 0; i < 200000; i++) print "]" }'; } \
  >"$WORK/deep/config.toml"
expect_exit 2 "${T[@]}" "$DTRAIN" resume "$WORK/deep_ck" --set train.steps=3
expect_err "nor names it in a config.toml of its own: give --out DIR"
echo "hostile_checkpoint: ok"
