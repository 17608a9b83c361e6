# The command line: help, validate, exit codes and one-line errors for bad input.
source "$(dirname "$0")/common.bash"

expect_exit 0 "$DTRAIN" --help
grep -q "run" "$WORK/out" && grep -q "validate" "$WORK/out" || fail "--help lacks subcommands"
expect_exit 0 "$DTRAIN" run --help
grep -q -- "--set" "$WORK/out" && grep -q -- "--out" "$WORK/out" || fail "run --help lacks --set/--out"
expect_exit 0 "$DTRAIN" keys
grep -q "train.steps" "$WORK/out" || fail "keys lacks train.steps"
expect_exit 2 "$DTRAIN" frobnicate
expect_err "dtrain: error: 'frobnicate' is not a dtrain command; expected one of run, resume,"
# Another kind of dtrain file where a training config goes: one line saying which (it was one per key).
expect_exit 2 "$DTRAIN" run "$DTRAIN_SOURCE_DIR/configs/hardware/h100-sxm.toml"
expect_err "h100-sxm.toml: not a training config but a hardware description (it has [device], [node], [intra], [inter])"
[ "$(wc -l <"$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "a hardware file as a config: not one line"; }
# Options out of range or not numbers at all: one line each (CLI11's own checks let NaN through
# and printed DBL_MAX in full on a second line).
expect_exit 2 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --devices 2 --top -1
expect_err "dtrain: error: --top: expected a whole number from 0 to 1073741824, got '-1'"
# An empty --out was read as none given (the run went to the config's directory);
# one that is not UTF-8 was blamed on "--set log.out_dir"; --hardware-name alone was ignored.
expect_exit 2 "$DTRAIN" run "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --out ""
expect_err "dtrain: error: --out: expected a path, got an empty string"
expect_exit 2 "$DTRAIN" run "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --out "$WORK/$(printf '\xff')"
expect_err "dtrain: error: --out: expected a path in UTF-8"
expect_exit 2 "$DTRAIN" profile "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --hardware-name x
expect_err "dtrain: error: --hardware-name requires --write-hardware"
# A path with a control character (it was echoed raw, splitting the one-line error).
expect_exit 2 "$DTRAIN" run "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --out "$WORK/new
line"
expect_err "dtrain: error: --out: expected a path without control characters"
# An output directory that is a file or FIFO fails before the work, not after it.
echo precious >"$WORK/precious.toml" && mkfifo "$WORK/fifo"
expect_exit 2 "$DTRAIN" profile "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --out "$WORK/precious.toml"
expect_err "dtrain: error: --out: expected a directory, but '$WORK/precious.toml' is a file"
expect_exit 2 "$DTRAIN" export "$WORK/nowhere" --out "$WORK/fifo"
expect_err "dtrain: error: --out: expected a directory, but '$WORK/fifo' is a FIFO"
# --write-hardware replaces an earlier calibration, never another file.
expect_exit 2 "$DTRAIN" profile "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --write-hardware "$WORK/precious.toml"
expect_err "--write-hardware $WORK/precious.toml: the file exists and is not a dtrain hardware file"
[ "$(cat "$WORK/precious.toml")" = precious ] || fail "--write-hardware overwrote a file of the user's"
# Counts are whole numbers: "abc" is not "out of range", 1e30 is not clamped.
expect_exit 2 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --devices abc
expect_err "dtrain: error: --devices: expected a whole number from 1 to 16777216, got 'abc'"
expect_exit 2 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --devices 2 --top 1e30
expect_err "dtrain: error: --top: expected a whole number from 0 to 1073741824, got '1e30'"
expect_exit 2 "$DTRAIN" profile "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --steps 0
expect_err "dtrain: error: --steps: expected a whole number from 1 to 1073741824, got '0'"
[ "$(wc -l <"$WORK/err")" -eq 1 ] || { cat "$WORK/err"; fail "more than one line for a bad option"; }
expect_exit 2 "$DTRAIN" profile "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --peak-gflops nan
expect_err "dtrain: error: --peak-gflops: expected a number from 0.001 to 1e+09, got 'nan'"
expect_exit 2 "$DTRAIN" profile "$DTRAIN_SOURCE_DIR/configs/gpt.toml" --peak-gflops 1e-300
expect_err "dtrain: error: --peak-gflops: expected a number from 0.001 to 1e+09, got '1e-300'"
expect_exit 2 "$DTRAIN" run
expect_err "dtrain: error: config is required"

make_tokens
tiny_gpt_config

# validate prints the resolved config, which validates again to the same text.
expect_exit 0 "$DTRAIN" validate "$WORK/tiny.toml" --set train.steps=7
cp "$WORK/out" "$WORK/resolved.toml"
grep -q "steps = 7" "$WORK/resolved.toml" || fail "override not in resolved config"
grep -q "global_batch = 8" "$WORK/resolved.toml" || fail "global_batch not derived"
expect_exit 0 "$DTRAIN" validate "$WORK/resolved.toml"
cmp -s <(grep -v "^#" "$WORK/out") <(grep -v "^#" "$WORK/resolved.toml") || fail "resolved config does not round-trip"
# parallel.hardware on one process (auto mode, nothing to plan) is still read: a bad one passed
# validate and run here and failed only under mpirun.
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" --set parallel.mode=auto --set parallel.hardware=h100
expect_err "dtrain: error: --set parallel.hardware=h100: parallel.hardware: hardware 'h100': not a preset (h100-sxm, h200, a100-80gb, cpu-local)"
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.mode=auto --set parallel.hardware="\"$WORK/none.toml\"" --out "$WORK/hw"
expect_err "parallel.hardware: $WORK/none.toml: cannot read hardware file"
expect_exit 0 "$DTRAIN" validate "$WORK/tiny.toml" --set parallel.mode=auto --set parallel.hardware=h100-sxm
# validate checks what run reads before its first step: signing keys, init_from's directory.
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" --set checkpoint.sign_key_file="\"$WORK/none.key\"" \
  --set model.init_from="\"hf:$WORK/nodir\""
expect_err "checkpoint.sign_key_file: '$WORK/none.key' does not exist"
expect_err "model.init_from: '$WORK/nodir/config.json': not found"
expect_exit 0 "$DTRAIN" keygen "$WORK/keys/k"
chmod 0440 "$WORK/keys/k.key"
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" --set checkpoint.sign_key_file="\"$WORK/keys/k.key\""
expect_err "checkpoint.sign_key_file"

# A misspelt key: exit 2, file and line named, did-you-mean.
sed 's/^n_layer = 2/n_layers = 2/' "$WORK/tiny.toml" >"$WORK/bad.toml"
expect_exit 2 "$DTRAIN" run "$WORK/bad.toml"
expect_err "bad.toml:5"
expect_err "did you mean 'model.n_layer'"

# A bad override.
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=-1
expect_err "train.steps"

# Missing data file: exit 2, the file named, nothing written.
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set data.train="$WORK/nope.bin" --out "$WORK/run0"
expect_err "nope.bin"

# A token id beyond the vocabulary.
expect_exit 2 "$DTRAIN" run "$WORK/tiny.toml" --set model.vocab_size=100 --out "$WORK/run1"
expect_err "vocab_size"

# A missing config file.
expect_exit 2 "$DTRAIN" run "$WORK/absent.toml"

# The sgemm backend: chosen from the CPU, named in the log, forced by
# DTRAIN_CPU_GEMM; a bad value is one line and exit 2 before training.
expect_exit 0 env DTRAIN_CPU_GEMM=blas "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=1 --set optim.warmup_steps=0 --out "$WORK/run_blas"
grep -q "openblas sgemm" "$WORK/out" || fail "DTRAIN_CPU_GEMM=blas: the log does not name openblas"
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=1 --set optim.warmup_steps=0 --out "$WORK/run_auto"
grep -qE "(dtrain-avx512|openblas) sgemm" "$WORK/out" || fail "the log does not name the sgemm backend"
expect_exit 2 env DTRAIN_CPU_GEMM=fast "$DTRAIN" run "$WORK/tiny.toml" --out "$WORK/run_bad"
expect_err "DTRAIN_CPU_GEMM='fast': expected auto, avx512 or blas"
[ ! -e "$WORK/run_bad/metrics.jsonl" ] || fail "DTRAIN_CPU_GEMM=fast: training started anyway"
expect_exit 2 env DTRAIN_CPU_GEMM=fast "$DTRAIN" generate "$WORK/run_auto/checkpoints" --tokens 3  # ignored before
expect_err "DTRAIN_CPU_GEMM='fast': expected auto, avx512 or blas"

# Commands that need no MPI start without it (issue 13: MPI's start costs
# ~0.4 s). With Open MPI told to load a component that does not exist,
# MPI_Init fails, yet these work; and so do run, resume and profile on one
# process started without a launcher (one-member groups: there is no other
# rank). Under a launcher (here its environment, as mpirun sets it) those
# three initialise MPI, and so fail here. Under mpirun the others run once per
# rank, print once and see the launch's ranks (from the launcher's environment).
nompi=(env OMPI_MCA_pml=no_such_component)
for cmd in "--help" "--version" "keys" "validate $WORK/tiny.toml" "plan $WORK/tiny.toml --devices 4" \
           "hardware h100-sxm" "run --help" "run $WORK/tiny.toml --set train.steps=2 --set optim.warmup_steps=1 --out $WORK/nompi" \
           "resume $WORK/nompi --set train.steps=3" "profile $WORK/tiny.toml --steps 1 --out $WORK/nompi_profile"; do
  expect_exit 0 "${nompi[@]}" "$DTRAIN" $cmd
done
[ "$(step_losses "$WORK/nompi/metrics.jsonl" | cut -d' ' -f1 | tr '\n' ' ')" = "1 2 3 " ] ||
  fail "run and resume without MPI: steps $(step_losses "$WORK/nompi/metrics.jsonl" | cut -d' ' -f1 | tr '\n' ' ')"
expect_exit 2 "${nompi[@]}" "$DTRAIN" inspect "$WORK/no_checkpoint"
expect_err "no_checkpoint"
launched=(env OMPI_MCA_pml=no_such_component OMPI_COMM_WORLD_SIZE=1 OMPI_COMM_WORLD_RANK=0)
for cmd in "run $WORK/tiny.toml --set train.steps=1 --out $WORK/nompi2" "resume $WORK/no_checkpoint" \
           "profile $WORK/tiny.toml --steps 1 --out $WORK/nompi2"; do
  expect_exit 1 "${launched[@]}" "$DTRAIN" $cmd
  # Open MPI's own report of the failed start-up: its MPI_Init message, or,
  # when its help system itself runs out of resources, its ORTE error log.
  grep -qE "MPI_Init|ORTE_ERROR_LOG" "$WORK/err" || { cat "$WORK/err" >&2; fail "$cmd: no MPI start-up failure"; }
done
expect_exit 0 mpirun --allow-run-as-root --oversubscribe -np 2 "$DTRAIN" validate "$WORK/tiny.toml" --set parallel.dp=2
[ "$(grep -c '^\[model\]' "$WORK/out")" = 1 ] || fail "validate under mpirun -np 2 printed other than once"
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" --set parallel.dp=2
expect_err "dp x tp x pp = 2 but 1 rank was launched"

# A stderr that cannot be written (a full disk, a reader gone) loses the messages, not the exit
# status: a bad config is still exit 2, a good one 0 (fmt's print threw, and its report threw
# again: SIGABRT, 134).
if [ -w /dev/full ]; then
  set +e
  "$DTRAIN" validate "$WORK/tiny.toml" --set model.n_layer=0 2>/dev/full; st_bad=$?
  "$DTRAIN" validate "$WORK/tiny.toml" >/dev/null 2>/dev/full; st_good=$?
  "$DTRAIN" no-such-command 2>/dev/full; st_usage=$?
  set -e
  [ "$st_bad $st_good $st_usage" = "2 0 2" ] || fail "with stderr on /dev/full: exit $st_bad $st_good $st_usage, expected 2 0 2"
fi
# --out is a directory name, whatever TOML would make of it.
(cd "$WORK" && "$DTRAIN" run tiny.toml --set train.steps=1 --set optim.warmup_steps=0 --set train.eval_every=0 \
  --out nan >/dev/null 2>"$WORK/err") || fail "--out nan: $(cat "$WORK/err")"
[ -f "$WORK/nan/metrics.jsonl" ] || fail "--out nan wrote no run directory 'nan'"

echo "cli: ok"
