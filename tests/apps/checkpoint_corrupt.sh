# Damaged checkpoints: a flipped byte inside a tensor's data or a truncated
# file is reported naming the file and the tensor (the manifest's checksum of
# the file's bytes catches it first; tests/apps/hostile_checkpoint.sh checks
# the tensor's own CRC with the manifest recomputed); `dtrain resume DIR` falls
# back to the previous good checkpoint (and continues bit for bit from it),
# `dtrain resume STEP_DIR` fails with exit 2; when none is good, exit 2.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
run() { "$DTRAIN" "$@" --set train.threads=1; }
PY=/usr/bin/python3
"$PY" -c "import h5py" 2>/dev/null || fail "h5py is missing: apt-get install python3-h5py (tools/setup.sh does)"

expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/r" --set train.steps=10 --set checkpoint.every=5
ck="$WORK/r/checkpoints"
cp -r "$ck" "$WORK/pristine"

# Flip one byte in the middle of wpe's data in step 10's rank file (wte is read first:
# the message names the tensor damaged, not the one read first).
"$PY" - "$ck/step_00000010/rank_00000.h5" <<'PY'
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    d = f["model/wpe.weight"]
    at = d.id.get_offset() + d.id.get_storage_size() // 2
with open(sys.argv[1], "r+b") as f:
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0x10]))
PY
expect_exit 0 "$DTRAIN" resume "$ck" --out "$WORK/x"
expect_err "checkpoint $ck/step_00000010: rank_00000.h5: the file's bytes do not match the manifest"
expect_err "): damaged in tensor model/wpe.weight"  # the tensor whose own checksum fails, not the first one read
expect_err "falling back to $ck/step_00000005"
grep -q "resuming from $ck/step_00000005: step 5 of 10" "$WORK/out" || fail "did not resume from step 5"
same_losses "$WORK/r/metrics.jsonl" "$WORK/x/metrics.jsonl"

# Exactly that checkpoint: a clear failure, no fallback.
expect_exit 2 "$DTRAIN" resume "$ck/step_00000010" --out "$WORK/y"
expect_err "rank_00000.h5: the file's bytes do not match the manifest"
expect_err "damaged in tensor model/wpe.weight"
grep -q "falling back" "$WORK/err" && fail "an exact checkpoint must not fall back"
expect_exit 2 "$DTRAIN" inspect "$ck/step_00000010/checkpoint.h5" --verify
expect_err "rank_00000.h5: the file's bytes do not match the manifest"
expect_err "damaged in tensor model/wpe.weight"

# A truncated rank file, then a truncated master file: fallback, then nothing left.
rm -rf "$ck" && cp -r "$WORK/pristine" "$ck"
truncate -s 100000 "$ck/step_00000010/rank_00000.h5"
expect_exit 0 "$DTRAIN" resume "$ck" --out "$WORK/z"
expect_err "$ck/step_00000010: rank_00000.h5: is 100000 bytes, the manifest recorded"
expect_err "falling back to $ck/step_00000005"
truncate -s 2000 "$ck/step_00000005/checkpoint.h5"
expect_exit 2 "$DTRAIN" resume "$ck" --out "$WORK/w"
# One warning (the fallback) and one error listing both, not a warning repeating the error's last part.
expect_err "falling back to $ck/step_00000005"
expect_err "dtrain: error: checkpoint $ck: no loadable checkpoint: step_00000010: rank_00000.h5: is 100000 bytes, the manifest recorded"
expect_err "; step_00000005: checkpoint.h5: is 2000 bytes, the manifest recorded"
[ "$(wc -l <"$WORK/err")" -eq 2 ] || { cat "$WORK/err" >&2; fail "nothing left to load: expected a warning and an error"; }
# A format-1 checkpoint (no manifest vouches for its bytes) whose HDF5 metadata would crash
# HDF5's parser (the global heap's first object claiming 1 MiB: a segmentation fault inside
# H5Aread): the parse runs first in a child process, and the crash is one line naming the file.
rm -rf "$ck" && cp -r "$WORK/pristine" "$ck"
"$PY" - "$ck/step_00000005" "$ck/step_00000010" <<'PY'
import h5py, numpy as np, os, struct, sys, zlib
for d in sys.argv[1:]:  # as written before manifests: format 1, no manifest
    os.remove(d + "/manifest")
    with h5py.File(d + "/checkpoint.h5", "r+") as f:
        a = f.attrs
        if d == sys.argv[1]: a.create("program_version", "0.1.0")  # as written before build ids
        s = lambda k: a[k].decode() if isinstance(a[k], bytes) else str(a[k])
        a.modify("format_version", np.int64(1))
        text = ("format_version=1\nprogram_version={}\nmodel_type={}\noptimizer={}\nstep={}\noptimizer_steps={}\n"
                "samples_seen={}\nitems_seen={}\nseed={}\ndp={}\ntp={}\npp={}\nworld_size={}\nid={}\nwritten_at={}\n"
                "config={}").format(*[s(k) for k in ("program_version", "model_type", "optimizer", "step",
                    "optimizer_steps", "samples_seen", "items_seen", "seed", "dp", "tp", "pp", "world_size",
                    "checkpoint_id", "written_at", "config")])
        if "run_id" in a: text += "\nrun_id=" + s("run_id")
        if "zero" in a: text += "\nzero=" + s("zero")
        if "data" in a: text += "\ndata=" + s("data")
        a.modify("meta_crc32", np.array(zlib.crc32(text.encode()), dtype=a["meta_crc32"].dtype))
    for name in os.listdir(d):
        if name.startswith("rank_"):
            with h5py.File(os.path.join(d, name), "r+") as f:
                if "format_version" in f.attrs: f.attrs.modify("format_version", np.int64(1))
path = sys.argv[2] + "/checkpoint.h5"
data = bytearray(open(path, "rb").read())
heap = data.find(b"GCOL")
assert heap >= 0, "no global heap in the master file"
data[heap + 24:heap + 32] = struct.pack("<Q", 1 << 20)  # the first object's size
open(path, "wb").write(data)
PY
expect_exit 0 "$DTRAIN" inspect "$ck/step_00000005" --verify  # format 1 still reads
expect_exit 2 "$DTRAIN" inspect "$ck/step_00000010" --verify
expect_err "checkpoint $ck/step_00000010: checkpoint.h5: damaged: HDF5's parser crashed on it ("
expect_err "no manifest to check it against (format 1)"
[ "$(wc -l <"$WORK/err")" -eq 1 ] || fail "format 1: $(cat "$WORK/err")"
expect_exit 0 "$DTRAIN" resume "$ck" --out "$WORK/f1"
expect_err "falling back to $ck/step_00000005"
grep -q "resuming from $ck/step_00000005" "$WORK/out" || fail "did not fall back past the crashing checkpoint"
# Another build wrote it (0.1.0, before build ids): said, as its kernels may round differently.
grep -q "^note: the checkpoint was written by dtrain 0.1.0, this is dtrain 0.1.0+" "$WORK/out" ||
  fail "no note of another build: $(cat "$WORK/out")"
echo "checkpoint_corrupt: ok"
