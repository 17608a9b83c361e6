# Resume continues a run bit for bit: from a checkpoint in the middle of a run
# into a new directory, in place after a shorter run (metrics appended), with
# SGD's momentum; overrides are reported, impossible ones refused by key;
# keep-N leaves the newest N and `latest` names the newest.
source "$(dirname "$0")/common.bash"
make_tokens
tiny_gpt_config
run() { "$DTRAIN" "$@" --set train.threads=1; }
res() { "$DTRAIN" resume "$@"; }

expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/full" --set train.steps=20 --set checkpoint.at_end=false
[ ! -e "$WORK/full/checkpoints" ] || fail "checkpoint.at_end=false still wrote a checkpoint"

# A checkpoint every 10 steps; continue from step 10 exactly, elsewhere.
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/half" --set train.steps=20 --set checkpoint.every=10
grep -q "checkpoint step 10 -> $WORK/half/checkpoints/step_00000010" "$WORK/out" || fail "no checkpoint line"
expect_exit 0 res "$WORK/half/checkpoints/step_00000010" --out "$WORK/res"
grep -q "resuming from $WORK/half/checkpoints/step_00000010: step 10 of 20" "$WORK/out" || fail "no resume line"
grep -q "override log.out_dir: \"$WORK/half\" -> \"$WORK/res\"" "$WORK/out" || fail "out_dir change not reported"
# The same build: its version (with the source's commit) in the line, and no note of another build.
grep -q "written by dtrain $("$DTRAIN" --version | cut -d' ' -f2) on" "$WORK/out" || fail "no build in the resume line"
! grep -q "^note: the checkpoint was written by" "$WORK/out" || fail "a note of another build for the same one"
[ "$(step_losses "$WORK/res/metrics.jsonl" | sed -n 1p | cut -d' ' -f1)" = 11 ] || fail "resumed run did not start at step 11"
same_losses "$WORK/full/metrics.jsonl" "$WORK/res/metrics.jsonl"
[ -d "$WORK/res/checkpoints/step_00000020" ] || fail "resumed run wrote no final checkpoint"

# 10 steps (on the 20-step schedule), then resume in place to 20: one metrics file, the same losses.
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/inplace" --set train.steps=10 --set optim.decay_steps=20
echo '{"step": 11, "loss": 1.0}' >>"$WORK/inplace/metrics.jsonl"  # as if a killed run went past the checkpoint
expect_exit 0 res "$WORK/inplace" --set train.steps=20
grep -q "override train.steps: 10 -> 20" "$WORK/out" || fail "train.steps change not reported"
cmp -s <(step_losses "$WORK/full/metrics.jsonl") <(step_losses "$WORK/inplace/metrics.jsonl") ||
  fail "10 steps + resume to 20 differs from 20 steps"

# The same with checkpoint.dir outside the run directory: in place (its
# config.toml names the checkpoint directory), and as dtrain.sbatch resumes
# (--out the run directory, --set the checkpoint directory): one metrics file.
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/outside" --set "checkpoint.dir=\"$WORK/outside_ck\"" \
  --set train.steps=10 --set optim.decay_steps=20
expect_exit 0 res "$WORK/outside_ck" --set train.steps=15
expect_exit 0 res "$WORK/outside_ck" --set train.steps=20 --out "$WORK/outside" --set "checkpoint.dir=\"$WORK/outside_ck\""
[ ! -e "$WORK/outside/metrics.1.jsonl" ] || fail "checkpoint.dir outside: the run's record was set aside as another run's"
[ -d "$WORK/outside_ck/step_00000020" ] && [ ! -e "$WORK/outside/checkpoints" ] || fail "checkpoint.dir outside: saved elsewhere"
cmp -s <(step_losses "$WORK/full/metrics.jsonl") <(step_losses "$WORK/outside/metrics.jsonl") ||
  fail "checkpoint.dir outside: 10 + 5 + 5 steps differ from 20 steps"
# A copy of that checkpoint directory is still refused without --out.
cp -r "$WORK/outside_ck" "$WORK/outside_copy"
expect_exit 2 res "$WORK/outside_copy" --set train.steps=22
expect_err "(moved or copied?)"
cmp -s <(json_field "$WORK/full/metrics.jsonl" eval_loss) <(json_field "$WORK/inplace/metrics.jsonl" eval_loss) ||
  fail "evaluations differ after resume"

# A new run into that directory would prune the earlier run's checkpoints as its own: refused, nothing touched.
expect_exit 2 run run "$WORK/tiny.toml" --out "$WORK/inplace" --set train.steps=8
expect_err "checkpoint.dir: '$WORK/inplace/checkpoints' already holds 2 checkpoints of run "
expect_err "continue it with \`dtrain resume $WORK/inplace/checkpoints\`"
[ -d "$WORK/inplace/checkpoints/step_00000010" ] && [ -d "$WORK/inplace/checkpoints/step_00000020" ] ||
  fail "a refused run touched the earlier run's checkpoints"
cmp -s <(step_losses "$WORK/full/metrics.jsonl") <(step_losses "$WORK/inplace/metrics.jsonl") ||
  fail "a refused run touched the earlier run's metrics"

# A resume into another run's directory would replace or prune its checkpoints: refused
# (it replaced half's step 20, took over its run id and rewrote its metrics).
before=$(cat "$WORK/half/checkpoints/run")
expect_exit 2 res "$WORK/inplace/checkpoints" --set train.steps=25 --out "$WORK/half"
expect_err "checkpoint.dir: '$WORK/half/checkpoints' holds 2 checkpoints of run $before (newest step_00000020), not of the run being resumed"
[ "$(cat "$WORK/half/checkpoints/run")" = "$before" ] || fail "a refused resume took over another run's directory"
# An older checkpoint named exactly, continued in place, would replace the newer one: refused;
# with --out it branches.
expect_exit 2 res "$WORK/half/checkpoints/step_00000010"
expect_err "checkpoint.dir: '$WORK/half/checkpoints' holds step_00000020, newer than step 10 being resumed"
expect_exit 0 res "$WORK/half/checkpoints/step_00000010" --out "$WORK/branch"
# 'latest' naming what is not a complete checkpoint is said, not passed over in silence.
cp -r "$WORK/half/checkpoints" "$WORK/renamed"
mv "$WORK/renamed/step_00000020" "$WORK/renamed/step_20" && printf step_20 >"$WORK/renamed/latest"
expect_exit 0 "$DTRAIN" inspect "$WORK/renamed"
grep -q "'latest' names 'step_20', which is not a complete checkpoint" "$WORK/out" || fail "latest: $(cat "$WORK/out")"
# What 'latest' holds is echoed escaped: a NUL cut inspect's report short, an escape sequence
# reached the terminal.
printf 'step\0\033[31mRED' >"$WORK/renamed/latest"
expect_exit 0 "$DTRAIN" inspect "$WORK/renamed"
grep -qF "'latest' names 'step\x00\x1b[31mRED'" "$WORK/out" || fail "latest not escaped: $(cat -v "$WORK/out")"
grep -q "^step: *10$\|^step *10\b\|step 10" "$WORK/out" || fail "inspect's report cut short: $(cat -v "$WORK/out")"
! grep -q $'\033' "$WORK/out" || fail "inspect echoed an escape sequence"
expect_exit 0 res "$WORK/renamed" --set train.steps=12 --out "$WORK/renamed-out"
grep -qF "'latest' names 'step\x00\x1b[31mRED'" "$WORK/err" || fail "resume: latest not escaped: $(cat -v "$WORK/err")"
# A new run into a directory whose earlier run wrote no checkpoint keeps that run's record.
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/nock" --set train.steps=7 --set checkpoint.at_end=false
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/nock" --set train.steps=6 --set checkpoint.at_end=false
expect_err "log.out_dir '$WORK/nock' held an earlier run's output (no checkpoints); kept it as metrics.1.jsonl, config.1.toml"
[ "$(step_losses "$WORK/nock/metrics.1.jsonl" | wc -l)" -eq 7 ] && [ "$(step_losses "$WORK/nock/metrics.jsonl" | wc -l)" -eq 6 ] ||
  fail "the earlier run's metrics were not kept"
grep -q "steps = 7" "$WORK/nock/config.1.toml" || fail "the earlier run's config was not kept"
# So does a resume continued there (it appended to that run's metrics and replaced its config).
expect_exit 0 res "$WORK/half/checkpoints/step_00000010" --out "$WORK/nock"
expect_err "log.out_dir '$WORK/nock' held an earlier run's output (no checkpoints); kept it as metrics.2.jsonl, config.2.toml"
[ "$(step_losses "$WORK/nock/metrics.2.jsonl" | wc -l)" -eq 6 ] || fail "the earlier run's metrics were not kept by resume"
[ "$(step_losses "$WORK/nock/metrics.jsonl" | sed -n 1p | cut -d' ' -f1)" = 11 ] || fail "the resumed run's metrics"

# SGD with momentum.
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/sgd" --set optim.name=\"sgd\" --set optim.lr=0.05 --set train.steps=12
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/sgd6" --set optim.name=\"sgd\" --set optim.lr=0.05 --set train.steps=6 --set optim.decay_steps=12
expect_exit 0 res "$WORK/sgd6/checkpoints" --set train.steps=12 --out "$WORK/sgd12"
same_losses "$WORK/sgd/metrics.jsonl" "$WORK/sgd12/metrics.jsonl"

# Changes that cannot apply are refused, each naming its key; nothing is trained.
expect_exit 2 res "$WORK/half/checkpoints" --set model.n_layer=3 --set train.seed=1 --set train.steps=30 --out "$WORK/bad"
expect_err "--set model.n_layer=3: model.n_layer cannot change when resuming (2 -> 3)"
expect_err "--set train.seed=1: train.seed cannot change when resuming (1337 -> 1)"
[ ! -e "$WORK/bad/metrics.jsonl" ] || fail "a refused resume trained"
# A model of another type: one line for the key, not the 19 problems of a CNN config holding a GPT's keys.
expect_exit 2 res "$WORK/half/checkpoints" --set model.type=cnn --out "$WORK/bad"
expect_err "--set model.type=cnn: model.type cannot change when resuming: the checkpoint holds this model's parameters"
[ "$(wc -l <"$WORK/err")" -eq 1 ] || fail "model.type: $(cat "$WORK/err")"
expect_exit 0 res "$WORK/half/checkpoints"
grep -q "nothing to do" "$WORK/out" || fail "resuming a finished run should say there is nothing to do"

# keep = 2: only the two newest remain; latest names the newest.
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/keep" --set train.steps=10 --set checkpoint.every=2 --set checkpoint.keep=2
[ "$(ls "$WORK/keep/checkpoints" | tr '\n' ' ')" = "latest run step_00000008 step_00000010 " ] ||
  fail "keep=2 left: $(ls "$WORK/keep/checkpoints")"
[ "$(cat "$WORK/keep/checkpoints/latest")" = step_00000010 ] || fail "latest does not name step_00000010"
# every_minutes: a checkpoint whenever that much time has passed (here: after every step).
expect_exit 0 run run "$WORK/tiny.toml" --out "$WORK/min" --set train.steps=6 --set checkpoint.every_minutes=1e-9 \
  --set checkpoint.at_end=false --set checkpoint.keep=10
[ "$(ls -d "$WORK"/min/checkpoints/step_* | wc -l)" -eq 6 ] || fail "every_minutes: $(ls "$WORK/min/checkpoints")"
echo "checkpoint_resume: ok"
