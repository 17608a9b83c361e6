#!/usr/bin/env bash
# The CUDA backend at the command line, on a machine without a usable GPU
# (CI): train.device = "cuda" is refused before any work, in one line, exit 2
# (run, profile, resume of a CPU checkpoint; validate notes it; a build without the backend says
# so the same way);
# `dtrain --version --verbose` prints the compiled and loaded versions, and a
# loaded library of another major version (a fake one, preloaded) is refused
# in one line, exit 2. Skipped (77) where a GPU is usable: test_cuda and
# tools/gpu/accept.sh cover that machine.
source "$(dirname "$0")/common.bash"

"$DTRAIN" --version --verbose >"$WORK/version" || fail "--version --verbose exited $?"
grep -q '^cuda:[0-9]' "$WORK/version" && { echo "skipped: this machine has a GPU"; exit 77; }
make_tokens
tiny_gpt_config

# One line on stderr, naming train.device and the cause; nothing written.
one_line() {
  [ "$(wc -l <"$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "$1: expected one line on stderr"; }
  expect_err "train.device"
}
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set train.device=cuda --out "$WORK/run"
one_line run
[ ! -e "$WORK/run" ] || fail "run: the output directory was made before the device was refused"
# validate checks the config, which may be meant for another machine: valid,
# with a one-line note that a run here would stop.
expect_exit 0 "$DTRAIN" validate "$WORK/tiny.toml" --set train.device=cuda
expect_err "note: train.device: cuda: "
expect_exit 2 "$DTRAIN" profile "$WORK/tiny.toml" --set train.device=cuda --steps 1 --out "$WORK/prof"
one_line profile
[ ! -e "$WORK/prof" ] || fail "profile: the output directory was made before the device was refused"
# A CPU run's checkpoint resumed on the GPU (checkpoints are the same files
# on every device): here the device is refused before the checkpoint loads.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/cpu" --set train.steps=4 --set optim.warmup_steps=1 --set train.eval_every=0 --set checkpoint.every=2
expect_exit 2 "$DTRAIN" resume "$WORK/cpu/checkpoints" --set train.device=cuda --out "$WORK/res"
one_line resume
[ ! -e "$WORK/res" ] || fail "resume: the output directory was made before the device was refused"

if grep -q "this build has no CUDA backend" "$WORK/version"; then
  expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set train.device=cuda --out "$WORK/run"
  expect_err "needs the CUDA backend"
  echo "cuda_cli: no CUDA backend in this build; the version checks need one"
  exit 0
fi
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set train.device=cuda --out "$WORK/run"
expect_err "train.device: cuda: no usable CUDA device (cudaGetDeviceCount: "

# Every library's compiled and loaded version, and the driver.
for want in "CUDA runtime: compiled 13." "CUDA driver: " "cuBLASLt: compiled 13." "cuDNN: compiled 9." \
  "NCCL 2." "(compiled 2."; do
  grep -qF -- "$want" "$WORK/version" || { cat "$WORK/version" >&2; fail "--version --verbose lacks: $want"; }
done
grep -q "^cuDNN: compiled \(.*\), loaded \1$" "$WORK/version" || fail "cuDNN: loaded differs from compiled here"

# Fake libraries: each entry point dtrain asks for its version, answering
# another major version (or an older minor one), preloaded over the real one.
fake() {  # fake NAME C-SOURCE
  printf '%s\n' "$2" >"$WORK/$1.c"
  cc -shared -fPIC -o "$WORK/$1.so" "$WORK/$1.c" || fail "cannot build $1.so"
}
fake cudnn8 'unsigned long cudnnGetVersion(void) { return 81000; }'
fake cudnn9old 'unsigned long cudnnGetVersion(void) { return 90100; }'
fake nccl3 'int ncclGetVersion(int* v) { *v = 30001; return 0; }'
# cuBLASLt is opened by name at its first call (lib/kernels/cuda/cublaslt_loader.cpp),
# so its fake is a library of its name found first on LD_LIBRARY_PATH.
fake lt12 'unsigned long cublasLtGetVersion(void) { return 120904; }'
mkdir -p "$WORK/lt12" && mv "$WORK/lt12.so" "$WORK/lt12/libcublasLt.so.13"
fake cudart12 'int cudaRuntimeGetVersion(int* v) { *v = 12080; return 0; }'

refused() {  # refused FAKE TEXT: --version --verbose with FAKE preloaded exits 2, one line naming TEXT
  set +e
  if [ -d "$WORK/$1" ]; then  # a folder: first on the library path
    LD_LIBRARY_PATH="$WORK/$1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$DTRAIN" --version --verbose >"$WORK/out" 2>"$WORK/err"
  else
    LD_PRELOAD="$WORK/$1.so" "$DTRAIN" --version --verbose >"$WORK/out" 2>"$WORK/err"
  fi
  local rc=$?
  set -e
  [ $rc -eq 2 ] || { cat "$WORK/out" "$WORK/err" >&2; fail "$1: exited $rc, expected 2"; }
  [ "$(wc -l <"$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "$1: expected one line on stderr"; }
  expect_err "$2"
  grep -q "^MPI: " "$WORK/out" || fail "$1: the report was not printed before the refusal"
}
refused cudnn8 "cuDNN: loaded version 8.10.0 has another major version than the 9."
grep -q "^cuDNN: compiled 9\..*, loaded 8.10.0$" "$WORK/out" || fail "cudnn8: the report does not show the loaded 8.10.0"
refused nccl3 "NCCL 3.0.1 is loaded but dtrain was built with NCCL 2."
refused lt12 "cuBLASLt: loaded version 12.9.4 has another major version than the 13."
refused cudart12 "CUDA runtime: loaded version 12.8.0 has another major version than the 13."
# A cuBLASLt without the entry points dtrain calls: one line naming the file and the function.
fake lt_empty 'int not_cublaslt;'
mkdir -p "$WORK/lt_empty" && mv "$WORK/lt_empty.so" "$WORK/lt_empty/libcublasLt.so.13"
LD_LIBRARY_PATH="$WORK/lt_empty${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" expect_exit 1 "$DTRAIN" --version --verbose
expect_err "cuBLASLt: libcublasLt.so.13 has no cublasLtGetVersion ($WORK/lt_empty/libcublasLt.so.13: undefined symbol"
[ "$(wc -l <"$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "lt_empty: expected one line on stderr"; }
# An older minor version of the same major is accepted.
LD_PRELOAD="$WORK/cudnn9old.so" "$DTRAIN" --version --verbose >"$WORK/out" 2>"$WORK/err" ||
  { cat "$WORK/err" >&2; fail "cuDNN 9.1.0 (same major) was refused"; }
grep -q "^cuDNN: compiled 9\..*, loaded 9.1.0$" "$WORK/out" || fail "cudnn9old: the report does not show 9.1.0"
echo "cuda_cli: ok"
