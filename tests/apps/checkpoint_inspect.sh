# `dtrain inspect` shows the step, data position, layout, config and tensor
# table; h5dump and h5py (another program, another directory) read a
# parameter from the master file as its full tensor, equal to the stored
# piece, whose CRC-32 Python's zlib confirms.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
PY=/usr/bin/python3
"$PY" -c "import h5py" 2>/dev/null || fail "h5py is missing: apt-get install python3-h5py (tools/setup.sh does)"

expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/r" --set train.steps=4 --set optim.warmup_steps=1 --set train.threads=1
ck="$WORK/r/checkpoints/step_00000004"
expect_exit 0 "$DTRAIN" inspect "$WORK/r/checkpoints"
for want in "checkpoint   $ck (the newest complete one)" "step         4" "seen         512 tokens (32 samples)" \
  "optimizer    adamw (4 updates)" "layout       dp=1 tp=1 pp=1 (1 rank)" "  n_layer = 2" "[checkpoint]" \
  "tensors: 84 (102528 elements)"; do
  grep -qF -- "$want" "$WORK/out" || { cat "$WORK/out"; fail "inspect output lacks: $want"; }
done
for row in 'model/wte\.weight +\(256, 32\) +fp32 +1' 'model/blocks\.0\.attn\.qkv\.bias +\(96\) +fp32 +1' \
  'optim/adamw\.v/blocks\.1\.attn\.qkv\.weight +\(96, 32\) +fp32 +1' 'optim/adamw\.m/ln_f\.weight +\(32\) +fp32 +1'; do
  grep -qE "^  $row$" "$WORK/out" || fail "no table row: $row"
done
expect_exit 0 "$DTRAIN" inspect "$ck/checkpoint.h5" --verify
grep -q "^verified: every stored piece read back" "$WORK/out" || fail "no verification line"
expect_exit 2 "$DTRAIN" inspect "$WORK/r"/config.toml
expect_err "is not a checkpoint"
# A directory whose newest checkpoint is damaged: the one a resume loads, described, the damage
# said; named exactly, the damaged one is the error (2).
cp -r "$WORK/r/checkpoints" "$WORK/dmg"
cp -r "$WORK/dmg/step_00000004" "$WORK/dmg/step_00000009"
expect_exit 0 "$DTRAIN" inspect "$WORK/dmg"
grep -qF "checkpoint   $WORK/dmg/step_00000004 (the newest that reads: the one a resume loads)" "$WORK/out" &&
  grep -qF "$WORK/dmg/step_00000009: checkpoint.h5: the directory's name says step 9 but the checkpoint holds step 4; a resume falls back to $WORK/dmg/step_00000004" "$WORK/out" ||
  fail "inspect of a directory with a damaged newest: $(head -3 "$WORK/out")"
expect_exit 2 "$DTRAIN" inspect "$WORK/dmg/step_00000009"
expect_err "the directory's name says step 9 but the checkpoint holds step 4"
# The newest's rank file cut short (its master file intact): a resume falls back past it, and
# inspect names the same checkpoint (it checks every file's size against the manifest).
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/r2" --set train.steps=4 --set optim.warmup_steps=1 \
  --set train.threads=1 --set checkpoint.every=2
truncate -s 1000 "$WORK/r2/checkpoints/step_00000004/rank_00000.h5"
expect_exit 0 "$DTRAIN" inspect "$WORK/r2/checkpoints"
grep -qF "checkpoint   $WORK/r2/checkpoints/step_00000002 (the newest that reads: the one a resume loads)" "$WORK/out" &&
  grep -qF "step_00000004: rank_00000.h5: is 1000 bytes, the manifest recorded" "$WORK/out" ||
  fail "inspect of a directory whose newest has a cut rank file: $(head -3 "$WORK/out")"
expect_exit 0 "$DTRAIN" eval "$WORK/r2/checkpoints" --batches 1
expect_err "step_00000002"

h5dump -d /model/ln_f.weight "$ck/checkpoint.h5" >"$WORK/dump" || fail "h5dump cannot read the master file"
grep -q "DATASPACE  SIMPLE { ( 32 ) / ( 32 ) }" "$WORK/dump" || fail "h5dump: wrong shape"
cp -r "$ck" "$WORK/moved"  # relative links: the copy reads on its own
(cd / && "$PY" - "$WORK/moved" <<'PY') || fail "h5py cannot read the checkpoint"
import h5py, sys, zlib
d = sys.argv[1]
with h5py.File(d + "/checkpoint.h5", "r") as f, h5py.File(d + "/rank_00000.h5", "r") as r:
    assert f.attrs["step"] == 4 and f.attrs["world_size"] == 1, dict(f.attrs)
    assert "[model]" in f.attrs["config"]
    w = f["model/wte.weight"]
    assert w.is_virtual and w.shape == (256, 32), w
    piece = r["model/wte.weight"]
    assert (w[...] == piece[...]).all()
    assert zlib.crc32(piece[...].tobytes()) == piece.attrs["crc32"]
    m = f["optim/adamw.m/blocks.0.mlp.fc.weight"][...]
    assert m.shape == (128, 32) and abs(m).sum() > 0
PY
echo "checkpoint_inspect: ok"
