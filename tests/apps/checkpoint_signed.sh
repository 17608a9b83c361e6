# Signed checkpoints and where a run may write (issue 15): `dtrain keygen`;
# key files checked before training (permissions, kind); a run signed with
# checkpoint.sign_key_file resumes bit for bit against an uninterrupted run,
# its signature checked with the key its config names; a tensor changed with
# its CRC, the manifest's CRCs and hashes recomputed (h5py) is caught by the
# signature on resume (no fall-back to an older checkpoint) and by inspect
# --verify --verify-key, while the CRCs alone pass it; another key's and an
# unsigned checkpoint are refused; the same on 2 ranks (tp = 2: a tampered
# second rank file refuses the resume on both); run and checkpoint directories are 0700
# (log.dir_mode); a planted symbolic link, a '..' out of the run directory
# and a copied checkpoint's own output paths are refused.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
PY=/usr/bin/python3
"$PY" -c "import h5py" 2>/dev/null || fail "h5py is missing: apt-get install python3-h5py (tools/setup.sh does)"
run() { "$DTRAIN" "$@" --set train.threads=1; }
K="$WORK/keys"
mkdir "$K"

# keygen: an owner-only secret key, a public key, never overwritten.
expect_exit 0 "$DTRAIN" keygen "$K/mine"
grep -q "wrote $K/mine.key (secret, mode 0600" "$WORK/out" || fail "keygen: no report"
[ "$(stat -c %a "$K/mine.key")" = 600 ] || fail "keygen: the secret key is $(stat -c %a "$K/mine.key")"
expect_exit 2 "$DTRAIN" keygen "$K/mine"
expect_err "keys are never overwritten"
expect_exit 0 "$DTRAIN" keygen "$K/other"
# A missing directory for the keys is made, owner-only.
expect_exit 0 "$DTRAIN" keygen "$K/new/sub/ckpt"
[ "$(stat -c %a "$K/new")" = 700 ] && [ "$(stat -c %a "$K/new/sub")" = 700 ] && [ -f "$K/new/sub/ckpt.pub" ] ||
  fail "keygen: the keys' new directories are $(stat -c %a "$K/new") and $(stat -c %a "$K/new/sub")"
# A directory is not a prefix: "keys/" wrote the hidden keys/.key and keys/.pub.
expect_exit 2 "$DTRAIN" keygen "$K/"
expect_err "keygen: '$K/' is a directory, not a file name prefix; give one inside it, e.g. '$K/ckpt'"
expect_exit 2 "$DTRAIN" keygen "$K"
[ ! -e "$K/.key" ] && [ ! -e "$K.key" ] || fail "keygen wrote keys for a directory"
sign=(--set "checkpoint.sign_key_file=\"$K/mine.key\"")

# A secret key others may read is refused before anything is trained or created.
cp "$K/mine.key" "$K/loose.key" && chmod 644 "$K/loose.key"
expect_exit 2 run run "$WORK/tiny.toml" --out "$WORK/loose" --set "checkpoint.sign_key_file=\"$K/loose.key\""
expect_err "checkpoint.sign_key_file: '$K/loose.key' is a secret key but group or others may read or write it (mode 0644)"
[ ! -e "$WORK/loose" ] || fail "a refused key still created the run directory"
# The public key where the secret one belongs is named as such, not as a loose secret key.
expect_exit 2 run run "$WORK/tiny.toml" --out "$WORK/loose" --set "checkpoint.sign_key_file=\"$K/mine.pub\""
expect_err "checkpoint.sign_key_file: '$K/mine.pub' is a public key; this needs the secret key ('$K/mine.key', beside it)"
expect_exit 2 run run "$WORK/tiny.toml" --out "$WORK/loose" --set "checkpoint.verify_key_file=\"$K/nope.pub\""
expect_err "checkpoint.verify_key_file: '$K/nope.pub' does not exist"

# Signed: 20 steps with a checkpoint at 10; resumed from 10 it matches the unsigned uninterrupted run.
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/full" --set train.steps=20
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/half" --set train.steps=20 --set checkpoint.every=10 "${sign[@]}"
ck="$WORK/half/checkpoints"
grep -q '^signature [0-9a-f]\{128\}$' "$ck/step_00000010/manifest" || fail "the manifest is not signed"
[ "$(stat -c %a "$WORK/half")" = 700 ] && [ "$(stat -c %a "$ck")" = 700 ] ||
  fail "run/checkpoint directories are $(stat -c %a "$WORK/half")/$(stat -c %a "$ck"), not 700"
expect_exit 0 "$DTRAIN" resume "$ck/step_00000010" --out "$WORK/res"
id=$("$DTRAIN" inspect "$ck" | sed -n 's/^signature *Ed25519, key \([0-9a-f]*\) .*/\1/p')
[ -n "$id" ] || fail "inspect shows no signature"
grep -q "checking the signature of $ck/step_00000010 with key $id" "$WORK/out" || fail "resume did not check the signature"
same_losses "$WORK/full/metrics.jsonl" "$WORK/res/metrics.jsonl"
grep -q '^signature ' "$WORK/res/checkpoints/step_00000020/manifest" || fail "the resumed run stopped signing"
expect_exit 0 "$DTRAIN" inspect "$ck" --verify --verify-key "$K/mine.pub"
grep -q "signed by key $id, every file's hash matches" "$WORK/out" || fail "inspect --verify-key: no verdict"

# Another key, and an unsigned checkpoint, with the key given from outside.
expect_exit 2 "$DTRAIN" resume "$ck/step_00000010" --verify-key "$K/other.pub" --out "$WORK/x1"
expect_err "$ck/step_00000010: manifest: signed with another key (key $id"
expect_exit 2 "$DTRAIN" inspect "$WORK/full/checkpoints" --verify --verify-key "$K/mine.pub"
expect_err "manifest: not signed, and a verify key is configured"
expect_exit 2 "$DTRAIN" resume "$WORK/full/checkpoints" --set train.steps=30 --out "$WORK/x2" \
  --set "checkpoint.verify_key_file=\"$K/mine.pub\""
expect_err "$WORK/full/checkpoints/step_00000020: manifest: not signed, and a verify key is configured ('$K/mine.pub'"
[ ! -e "$WORK/x2/metrics.jsonl" ] || fail "an unsigned checkpoint was trained on"

# A tensor changed by someone without the key, who recomputes every checksum and hash there is.
cp -r "$ck" "$WORK/tampered"
t="$WORK/tampered/step_00000020"
# tamper DIR FILE: change a tensor of FILE in checkpoint DIR as someone without the key would,
# recomputing every checksum and hash there is (the tensor's CRC-32, the manifest's file lines,
# hashes and own CRC-32).
tamper() {
  "$PY" - "$1" "$2" <<'PY'
import hashlib, h5py, numpy as np, os, sys, zlib
d, name = sys.argv[1], sys.argv[2]
with h5py.File(os.path.join(d, name), "r+") as f:
    w = f["model/blocks.0.mlp.fc.weight"]
    a = w[()]
    a[0, 0] += 1.0
    w[...] = a
    w.attrs["crc32"] = np.uint32(zlib.crc32(np.ascontiguousarray(a).tobytes()))
lines = open(d + "/manifest").read().splitlines()[:-1]
out = []
for l in lines:
    p = l.split()
    if p[0] in ("file", "blake2b"):
        data = open(os.path.join(d, p[1]), "rb").read()
        l = ("file %s %d %08x" % (p[1], len(data), zlib.crc32(data)) if p[0] == "file"
             else "blake2b %s %s" % (p[1], hashlib.blake2b(data, digest_size=32).hexdigest()))
    out.append(l)
body = "\n".join(out) + "\n"
open(d + "/manifest", "w").write(body + "crc32 %08x\n" % zlib.crc32(body.encode()))
PY
}
tamper "$t" rank_00000.h5
expect_exit 0 "$DTRAIN" inspect "$t" --verify  # the checksums alone cannot tell
expect_exit 2 "$DTRAIN" inspect "$t" --verify --verify-key "$K/mine.pub"
expect_err "$t: manifest: its signature does not match its contents"
expect_exit 2 "$DTRAIN" resume "$WORK/tampered" --set train.steps=30 --out "$WORK/x3"
expect_err "$t: manifest: its signature does not match its contents"
expect_err "not falling back to an older checkpoint"
[ ! -e "$WORK/x3/metrics.jsonl" ] || fail "a tampered checkpoint was trained on"
# The older one, named exactly, still resumes.
expect_exit 0 "$DTRAIN" resume "$WORK/tampered/step_00000010" --out "$WORK/x4" --set train.steps=12
grep -q "resuming from $WORK/tampered/step_00000010" "$WORK/out" || fail "the older signed checkpoint did not resume"

# Two ranks (tp = 2, two rank files): resumed with the key from outside, the same losses; a
# tampered second rank file refuses the resume on both ranks (exit 2, no hang, no fall-back).
MPIRUN=(timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2)
tp=(--set parallel.tp=2 --set model.n_head=2 --set parallel.timeout=20)
expect_exit 0 "${MPIRUN[@]}" "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/t2" --set train.steps=4 --set checkpoint.every=2 \
  --set optim.warmup_steps=1 --set train.threads=1 "${tp[@]}" "${sign[@]}"
[ -f "$WORK/t2/checkpoints/step_00000004/rank_00001.h5" ] || fail "tp=2 wrote no second rank file"
expect_exit 0 "${MPIRUN[@]}" "$DTRAIN" resume "$WORK/t2/checkpoints/step_00000002" --out "$WORK/t2r" \
  --verify-key "$K/mine.pub"
same_losses "$WORK/t2/metrics.jsonl" "$WORK/t2r/metrics.jsonl"
tamper "$WORK/t2/checkpoints/step_00000004" rank_00001.h5
expect_exit 2 "${MPIRUN[@]}" "$DTRAIN" resume "$WORK/t2/checkpoints" --verify-key "$K/mine.pub" --set train.steps=6
expect_err "$WORK/t2/checkpoints/step_00000004: manifest: its signature does not match its contents"
expect_err "not falling back to an older checkpoint"

# log.dir_mode.
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/g" --set train.steps=6 --set 'log.dir_mode="0750"'
[ "$(stat -c %a "$WORK/g")" = 750 ] && [ "$(stat -c %a "$WORK/g/checkpoints")" = 750 ] || fail "log.dir_mode=0750 not applied"
expect_exit 2 run run "$WORK/tiny.toml" --out "$WORK/g2" --set 'log.dir_mode="0600"'
expect_err "the owner's digit must be 7"

# Paths: a planted link, '..' out of the run directory, a copied unverified checkpoint's own paths.
mkdir "$WORK/trap"
ln -s "$WORK/victim" "$WORK/trap/metrics.jsonl"
expect_exit 2 run run "$WORK/tiny.toml" --out "$WORK/trap" --set train.steps=6
expect_err "log.out_dir: '$WORK/trap/metrics.jsonl' is a symbolic link (to '$WORK/victim')"
[ ! -e "$WORK/victim" ] || fail "dtrain wrote through a link"
mkdir "$WORK/trap2"
ln -s "$WORK/victim" "$WORK/trap2/config.toml"
expect_exit 2 run run "$WORK/tiny.toml" --out "$WORK/trap2" --set train.steps=6
expect_err "log.out_dir: '$WORK/trap2/config.toml' is a symbolic link (to '$WORK/victim')"
# A FIFO (it would block the write) or a directory where dtrain writes a file: refused the same way.
mkdir "$WORK/trap3" && mkfifo "$WORK/trap3/metrics.jsonl" && mkdir "$WORK/trap3/loss.png"
expect_exit 2 run run "$WORK/tiny.toml" --out "$WORK/trap3" --set train.steps=6
expect_err "log.out_dir: '$WORK/trap3/metrics.jsonl' is a FIFO, where dtrain writes a file of its own: remove it"
expect_err "log.out_dir: '$WORK/trap3/loss.png' is a directory, where dtrain writes a file of its own: remove it"
[ ! -e "$WORK/victim" ] || fail "dtrain wrote its config through a link"
expect_exit 2 run run "$WORK/tiny.toml" --out "$WORK/r2" --set train.steps=6 --set "checkpoint.dir=\"$WORK/r2/../escape\""
expect_err "'..' or a symbolic link leads it to '$WORK/escape'"
mkdir "$WORK/copied" && cp -r "$WORK/full/checkpoints/step_00000020" "$WORK/copied/"
expect_exit 2 "$DTRAIN" resume "$WORK/copied/step_00000020" --set train.steps=22
expect_err "but the checkpoint lies in '$WORK/copied' (moved or copied?)"
# A signed copy is no different, verified or not: continued where it lies or
# where --out says, never where the copy's config points (the original's
# directory, whose record a verified copy used to set aside as another run's).
cp -a "$WORK/half" "$WORK/halfcopy"
expect_exit 2 "$DTRAIN" resume "$WORK/halfcopy/checkpoints" --verify-key "$K/mine.pub" --set train.steps=22
expect_err "but the checkpoint lies in '$WORK/halfcopy/checkpoints' (moved or copied?)"
cmp -s "$WORK/half/metrics.jsonl" "$WORK/halfcopy/metrics.jsonl" || fail "a refused resume changed the original's metrics"
# --out the original's directory: the same run, its record continued.
expect_exit 0 "$DTRAIN" resume "$WORK/halfcopy/checkpoints" --verify-key "$K/mine.pub" --set train.steps=22 \
  --out "$WORK/half" --set train.threads=1
[ ! -e "$WORK/half/metrics.1.jsonl" ] || fail "the original's record was set aside as another run's"
"$PY" - "$WORK/half/metrics.jsonl" <<'PY' || fail "the original's record was not continued"
import json, sys
steps = [r["step"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r and "eval" not in r]
assert steps == sorted(set(steps)) and steps[0] <= 1 and steps[-1] == 22, steps
PY
echo "checkpoint_signed: ok"
