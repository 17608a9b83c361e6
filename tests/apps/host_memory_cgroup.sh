# A CPU run is checked against the memory this process may use: under a
# cgroup limit (a container, a Slurm job with memory enforcement) that limit,
# not the machine's RAM. A run needing about 5 GB is refused in a cgroup of
# 1 GiB, in one line naming the limit and its file, before the model is built.
# Needs root and a writable cgroup file system (v1 memory controller, or v2
# with memory delegated); skipped (77) otherwise.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
name="dtrain_test_$$"
if [ -d /sys/fs/cgroup/memory ] && mkdir "/sys/fs/cgroup/memory/$name" 2>/dev/null; then
  cg="/sys/fs/cgroup/memory/$name"
  echo $((1 << 30)) >"$cg/memory.limit_in_bytes" || { rmdir "$cg"; exit 77; }
  file="$cg/memory.limit_in_bytes"
  seen=":memory:/$name\$"  # what /proc/self/cgroup says inside it, where the mount shows the whole tree
elif grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null && mkdir "/sys/fs/cgroup/$name" 2>/dev/null; then
  cg="/sys/fs/cgroup/$name"
  echo $((1 << 30)) >"$cg/memory.max" || { rmdir "$cg"; exit 77; }
  file="$cg/memory.max"
  seen="^0::/$name\$"
else
  echo "no writable cgroup memory controller here: skipped"
  exit 77
fi
trap 'rmdir "$cg" 2>/dev/null; rm -rf "$WORK"' EXIT
# A process can be moved in and sees itself there (else, e.g. a container whose mount shows
# another part of the tree: skipped).
sh -c 'echo $$ >"$1/cgroup.procs" && grep -q "$2" /proc/self/cgroup' _ "$cg" "$seen" 2>/dev/null ||
  { echo "cannot move a process into $cg, or it sees another cgroup: skipped"; exit 77; }
big=(--set model.n_layer=24 --set model.n_embd=1024 --set model.n_head=16 --set train.threads=1)
# In the cgroup: the shell moves itself in, then runs dtrain (which inherits it).
set +e
bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$cg" "$DTRAIN" run "$WORK/tiny.toml" "${big[@]}" \
  --out "$WORK/big" >"$WORK/out" 2>"$WORK/err"
rc=$?
set -e
[ "$rc" -eq 2 ] || { cat "$WORK/err"; fail "in a 1 GiB cgroup: exit $rc, expected 2"; }
expect_err "on this machine (its cgroup limit: $file), which has 1.0 GiB of memory; \`dtrain plan\` shows"
[ "$(grep -c "^dtrain: error:" "$WORK/err")" -eq 1 ] || fail "more than one line: $(cat "$WORK/err")"
[ ! -e "$WORK/big/metrics.jsonl" ] || fail "the refused run trained"
echo "host_memory_cgroup: ok"
