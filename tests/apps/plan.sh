# dtrain plan and parallel.mode = "auto": the ranked table and its JSON, the
# what-if marks, rejections with reasons, hardware presets and files, bad
# input in one line (exit 2); under mpirun a config without degrees trains
# with the planner's layout and says why, explicit degrees stay manual.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
make_tokens
tiny_gpt_config

expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 4
grep -q "plan for 4 devices of cpu-local" "$WORK/out" || fail "plan: no header"
grep -qE "^ +1[ *] +[0-9]+ +[0-9]+ +[0-9]+ " "$WORK/out" || fail "plan: no ranked rows"
# The config's micro-batch (4) is planned over, and the plan says so (auto keeps it).
grep -q "^note: the config's train.micro_batch = 4 is not kept: the plan chooses each layout's" "$WORK/out" || fail "plan: no note on the config's micro-batch"
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 4 --set train.micro_batch=4
! grep -q "^note: the config's train.micro_batch" "$WORK/out" || fail "plan: the note with the micro-batch fixed"
# train.grad_accum=0 is "derive", not a split given: the micro-batch set beside it is the plan's
# constraint (it had been dropped for the file's, then blamed on --set train.grad_accum=0).
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 2 --set train.global_batch=6 --set train.micro_batch=2 \
  --set train.grad_accum=0
grep -q "^fixed: micro-batch 2" "$WORK/out" || fail "plan: --set train.micro_batch=2 with grad_accum=0 not kept"

# JSON: the same plan, machine-readable; layouts multiply to the devices.
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 8 --json --top 0 --set train.global_batch=32
python3 - "$WORK/out" <<'PY' || fail "plan --json"
import json, sys
p = json.load(open(sys.argv[1]))
assert p["devices"] == 8 and p["global_batch"] == 32, p
f = p["feasible"]
assert f and len(f) == p["feasible_count"], len(f)
for c in f:
    assert c["dp"] * c["tp"] * c["pp"] == 8
    assert c["dp"] * c["micro_batch"] * c["micro_batches"] == 32
    assert c["memory"]["total"] <= c["memory"]["capacity"]
    assert c["runnable"] == (not c["needs"])
steps = [c["step_seconds"] for c in f]
assert steps == sorted(steps)
assert any(r["kind"] == "divisibility" and "n_head" in r["reason"] for r in p["rejected"]), p["rejected"]
lay = p["layouts"]
assert lay["planned"] == lay["fitting"] + lay["without"] and lay["fitting"] > 0, lay
keys = {(c["dp"], c["tp"], c["pp"]) for c in f}
assert lay["fitting"] == len(keys), (lay, keys)
# Each rejection lists the layouts it stands for: a family row ("n_head" rules out a tp whatever
# dp and pp) every dp x pp beside its tp, so the counts are of dp x tp x pp.
assert all(r["layouts"] == [] for r in p["rejected"] if r["kind"] == "span"), p["rejected"]
assert all(len(r["layouts"]) > 1 for r in p["rejected"] if "n_head" in r["reason"] and r["pp"] is None), p["rejected"]
assert all(a * b * c == 8 for r in p["rejected"] for a, b, c in r["layouts"]), p["rejected"]
rej = {tuple(l) for r in p["rejected"] for l in r["layouts"]} - keys
assert lay["without"] == len(rej), (lay, rej)
assert lay["planned"] == len(keys | rej), (lay, keys, rej)
assert lay["tp_not_planned"] == len({r["tp"] for r in p["rejected"] if r["kind"] == "span"}), lay
# A field a rejection holds for every value of is null, not a placeholder.
assert all(r["zero"] is None or r["zero"] >= 0 for r in p["rejected"]), p["rejected"]
assert all(r["sequence_parallel"] in (None, True, False) for r in p["rejected"]), p["rejected"]
PY

# Large-scale what-ifs: bf16 on H100s, recomputation marked as such.
expect_exit 0 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/plan/gpt-1t.toml" --devices 3072 \
  --hardware a100-80gb --precision bf16 --top 0
grep -qE "tp=([0-9]+,)*64(,[0-9]+)* would span nodes" "$WORK/out" || fail "plan: no span rejection"
# Everything modelled is runnable now (ZeRO-3 since lib/train/zero.cpp): no what-ifs.
! grep -q "what-if" "$WORK/out" || fail "plan: a what-if, though the trainer runs every mode"
# The header's counts are the rows': layouts without a fit as many as the rejected layouts listed.
python3 - "$WORK/out" <<'PY' || fail "plan: the header's counts disagree with the rows"
import re, sys
text = open(sys.argv[1]).read()
without = int(re.search(r"with a candidate that fits, (\d+) without", text).group(1))
listed = int(re.search(r"^rejected layouts \((\d+),", text, re.M).group(1))
section = text.split("rejected layouts (")[1].split("\ntp degrees not planned:")[0]
rows = [l for l in section.splitlines()[1:] if l.startswith("  ")]
# A family row ("dp=* tp=2 pp=* (6 layouts): ...") counts the layouts it stands for.
sizes = [int(m.group(1)) if (m := re.match(r"  \S+ \S+ \S+ \((\d+) layouts?\):", l)) else 1 for l in rows]
assert without == listed == sum(sizes), (without, listed, sizes)
PY
# Ranked by relevance: memory misses before the spans.
awk '/^rejected layouts/{on=1; next} on && /would span nodes/{span=NR} on && /does not fit/ && !mem{mem=NR}
     END{exit !(mem && span && mem < span)}' "$WORK/out" || fail "plan: rejections not ranked by relevance"
# ZeRO-3 is planned when asked for (never picked on its own), and runnable.
expect_exit 0 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/plan/gpt-1t.toml" --devices 3072 \
  --hardware a100-80gb --precision bf16 --top 3 --set parallel.zero=3
awk '$1 == "1" {found = 1; ok = ($7 == 3)} END {exit !(found && ok)}' "$WORK/out" || fail "plan: parallel.zero = 3 not planned"
! grep -q "what-if" "$WORK/out" || fail "plan: ZeRO-3 still a what-if"

# 10,000 devices factor badly (2^4 x 5^4): a plan that leaves a few idle, said so.
expect_exit 0 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/plan/gpt-1t.toml" --devices 10000 \
  --hardware h100-sxm --top 3
grep -q "the best plan uses 9984 of the 10000 devices and leaves 16 idle: no layout of all 10000 fits" "$WORK/out" \
  || fail "plan: idle devices"
# Rows over several device counts give each one's.
awk '$1 == "rank" {on = ($2 == "devices")} on && $1 == "1" {ok = ($2 == 9984)} END {exit !ok}' "$WORK/out" \
  || fail "plan: no device count on the rows"
expect_exit 0 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/plan/gpt-1t.toml" --devices 10000 \
  --hardware h100-sxm --top 1 --json
python3 -c "import json, sys; n = json.load(open(sys.argv[1]))['notes']; assert any(x.startswith('the best plan uses 9984 of the 10000') for x in n), n" \
  "$WORK/out" || fail "plan --json: no idle note"
# A vocabulary that blocks tp, said in the first lines with the padded size.
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 8 --hardware h100-sxm --set model.vocab_size=50257 \
  --set model.n_head=8 --set model.n_embd=64
head -3 "$WORK/out" | grep -q "vocabulary 50257 is not divisible by tp=.*pad model.vocab_size to 50304" \
  || fail "plan: vocabulary that blocks tp not reported first"
# The blocked tp degrees are counted as every layout they rule out (8 devices: tp 2 over 3 dp x pp,
# tp 4 over 2, tp 8 over 1), not as one layout each: the header counts dp x tp x pp (4 + 3 + 2 + 1).
grep -q "; 10 layouts (dp x tp x pp)" "$WORK/out" || fail "plan: blocked tp degrees not counted as their layouts"
grep -q "^  dp=\* tp=2 pp=\* (3 layouts): tp=2: model.vocab_size (50257)" "$WORK/out" \
  || fail "plan: a blocked tp's row does not say how many layouts it stands for"
# Modes forced like the degrees: recomputation, interleaving, sequence parallel, ZeRO.
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 8 --hardware h100-sxm --json --top 0 --set model.n_head=8 \
  --set model.n_embd=64 --set parallel.pp=2 --set parallel.virtual_stages=2 --set train.recompute=selective \
  --set parallel.zero=1 --set train.global_batch=32
python3 - "$WORK/out" <<'PY' || fail "plan: forced modes not kept"
import json, sys
p = json.load(open(sys.argv[1]))
f = p["feasible"]
assert f and len(f) == p["feasible_count"]
for c in f:
    assert c["pp"] == 2 and c["schedule"] == "interleaved" and c["virtual_stages"] == 2, c
    assert c["recompute"] == "selective" and (c["zero"] == 1 or c["dp"] == 1), c
assert p["precision"] == "bf16"  # GPU presets default to bf16
PY
# A config written for planning, without data files: planned all the same (a plan reads no data).
printf '[model]\ntype = "gpt"\nn_layer = 2\nn_embd = 64\nn_head = 2\n[train]\nglobal_batch = 8\n' > "$WORK/nodata.toml"
expect_exit 0 "$DTRAIN" plan "$WORK/nodata.toml" --devices 2
printf '[model]\ntype = "cnn"\n[train]\nglobal_batch = 64\n' > "$WORK/nodata_cnn.toml"
expect_exit 0 "$DTRAIN" plan "$WORK/nodata_cnn.toml" --devices 2
# A new global batch is planned however large (the config's one-process split set aside).
expect_exit 0 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/plan/gpt3-175b.toml" --devices 1024 --hardware h100-sxm \
  --set train.global_batch=200000 --top 1
# Choices that contradict each other: the line names the choice, not what else some layout lacks.
expect_exit 2 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/plan/gpt3-175b.toml" --devices 1024 --hardware h100-sxm \
  --set parallel.pp=1 --set parallel.virtual_stages=2
expect_err "error: parallel.virtual_stages = 2 needs pipeline stages to interleave, and parallel.pp = 1 was chosen: drop one of them"
expect_exit 2 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/plan/gpt3-175b.toml" --devices 1024 --hardware h100-sxm \
  --set parallel.schedule=gpipe --set parallel.virtual_stages=2
expect_err "error: parallel.virtual_stages = 2 runs the interleaved schedule, and parallel.schedule = \"gpipe\" was chosen"
# The layout's modes a config sets are kept, as parallel.mode = "auto" keeps them (sequence
# parallelism and interleaving with no tp or pp of its own: refused before as a one-process config).
{ cat "$WORK/tiny.toml"; printf '[parallel]\nsequence_parallel = true\nvirtual_stages = 2\n'; } > "$WORK/modes.toml"
expect_exit 0 "$DTRAIN" plan "$WORK/modes.toml" --devices 4 --top 0
grep -q "^note: the config's parallel.virtual_stages = 2, parallel.sequence_parallel = true are kept" "$WORK/out" ||
  fail "plan: the config's modes not said kept"
awk '/^ *[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ / && ($9 != "il2" || $10 != "on") { bad = 1 } END { exit bad }' "$WORK/out" ||
  fail "plan: a layout without the config's modes"
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" validate "$WORK/modes.toml" --set parallel.mode=auto
grep -q "interleaved v=2, sequence parallel" "$WORK/err" || fail "auto: the config's modes not kept"
# A micro-batch that divides no rank's share of the file's batch: the plan says so, not the file.
expect_exit 2 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/plan/gpt3-175b.toml" --devices 1024 --hardware h100-sxm \
  --set train.micro_batch=7
expect_err "binds first: dp=512 tp=1 pp=2: micro-batch 7 does not divide the 3 samples of each of dp=512 ranks"
! grep -q "gpt3-175b.toml:" "$WORK/err" || fail "plan: the micro-batch blamed on the file"
# A file's modes that a --set rules out are set aside, said, not an error.
expect_exit 0 "$DTRAIN" plan "$WORK/modes.toml" --devices 4 --set parallel.pp=1 --set parallel.tp=1
grep -q "parallel.virtual_stages = 2 (--set parallel.pp=1 rules out interleaving)" "$WORK/out" &&
  grep -q "parallel.sequence_parallel = true (--set parallel.tp=1 rules it out) set aside" "$WORK/out" ||
  fail "plan: the ruled-out modes not said set aside: $(head -4 "$WORK/out")"
# A file's mode of the wrong value is named at its line.
{ cat "$WORK/tiny.toml"; printf '[parallel]\nzero = 7\n'; } > "$WORK/zero7.toml"
expect_exit 2 "$DTRAIN" plan "$WORK/zero7.toml" --devices 4
expect_err "zero7.toml:"
expect_exit 2 "$DTRAIN" plan "$WORK/tiny.toml" --devices 2 --devices 3
expect_err "error: --devices: given 2 times; at most once"
# Nothing fits: exit 2, one line naming the binding constraint and the closest candidates.
expect_exit 2 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/plan/gpt-1t.toml" --devices 8 --hardware a100-80gb
expect_err "no layout of 8 devices fits: memory binds first; closest: ["
[ "$(wc -l <"$WORK/err")" -eq 1 ] || fail "plan: nothing-fits message is not one line"
! grep -q "no layout of 8 devices fits" "$WORK/out" || fail "plan: nothing-fits line on both streams"
# Fixed degrees the devices cannot hold: named, not blamed on a tp span.
expect_exit 2 "$DTRAIN" plan "$WORK/tiny.toml" --devices 8 --set parallel.dp=3
expect_err "no layout of 8 devices fits: divisibility binds first: dp=3 tp=* pp=*: dp=3 does not divide the 8 devices"
! grep -q "span" "$WORK/out" || fail "plan: a fixed dp blamed on a tp span"
grep -q "^fixed: dp=3$" "$WORK/out" || fail "plan: the fixed choices not in the header"
grep -q "^plan for 8 devices of cpu-local (.*): 0\.[0-9]*M parameters" "$WORK/out" || fail "plan: header lost the model size"
# A degree of 0 (which would read as not fixed) and a mode that is none: refused as validation refuses them.
expect_exit 2 "$DTRAIN" plan "$WORK/tiny.toml" --devices 2 --set parallel.pp=0
expect_err "--set parallel.pp=0: expected an integer >= 1"
expect_exit 2 "$DTRAIN" plan "$WORK/tiny.toml" --devices 2 --set parallel.mode=bogus
expect_err "--set parallel.mode=bogus: expected auto or manual"
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 2 --set parallel.zero=0
# Modes the CNN does not have: refused in one line, not blamed on tp.
expect_exit 2 "$DTRAIN" plan "$DTRAIN_SOURCE_DIR/configs/cnn-mnist.toml" --devices 4 --set train.recompute=full
expect_err "train.recompute = full: recomputation remakes the GPT's transformer blocks; the cnn has none"
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 4 --runnable --set parallel.tp=2
! grep -q "what-if" "$WORK/out" || fail "plan --runnable lists what-ifs"
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 2 --set parallel.tp=2 --json
python3 -c 'import json,sys; assert all(c["tp"] == 2 for c in json.load(open(sys.argv[1]))["feasible"])' "$WORK/out" \
  || fail "plan: --set parallel.tp=2 not kept"

# Hardware: a preset printed, edited and read back; bad ones in one line.
expect_exit 0 "$DTRAIN" hardware h100-sxm
sed 's/^devices = 8/devices = 4/' "$WORK/out" >"$WORK/hw.toml"
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 8 --hardware "$WORK/hw.toml" --precision bf16
grep -q "(80.0 GiB, 4 per node)" "$WORK/out" || fail "plan: hardware file not read"
expect_exit 2 "$DTRAIN" plan "$WORK/tiny.toml" --devices 4 --hardware b200
expect_err "hardware 'b200': not a preset (h100-sxm, h200, a100-80gb, cpu-local) nor a .toml file"
# The CPU plans bf16 too (its products' measured ratio to the sgemm), and as the config says by default.
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 4 --precision bf16
grep -q "^plan for 4 devices of cpu-local .* bf16$" "$WORK/out" || fail "plan: cpu-local in bf16"
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 4
grep -q "^plan for 4 devices of cpu-local .* fp32$" "$WORK/out" || fail "plan: cpu-local not in the config's fp32"
"$DTRAIN" hardware cpu-local | sed -e 's/^peak_tflops_bf16 = [0-9.]*/peak_tflops_bf16 = 0/' \
  -e 's/^name = .*/name = "nobf16"/' >"$WORK/nobf16.toml"
expect_exit 2 "$DTRAIN" plan "$WORK/tiny.toml" --devices 4 --hardware "$WORK/nobf16.toml" --precision bf16
expect_err "hardware 'nobf16' has no bf16 peak"

# parallel.mode = "auto" (no degrees in the config): the planner's layout, logged once.
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=6 --set train.threads=1 \
  --set train.eval_every=0 --out "$WORK/auto"
grep -q "^auto layout for 4 ranks on cpu-local in fp32: dp=" "$WORK/out" || fail "auto: no layout choice logged"
[ "$(grep -c "^auto layout" "$WORK/out")" -eq 1 ] || fail "auto: logged more than once"
grep -q "^layout dp=. tp=. pp=. on 4 ranks" "$WORK/out" || fail "auto: no layout line"
# A schedule the config fixes that its batch cannot run (one micro-batch a rank, interleaving needs
# pp of them): the planner's one problem with the nearest misses, not the schedule checked at pp=1.
expect_exit 2 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" --set train.grad_accum=1 \
  --set parallel.schedule=interleaved --set parallel.virtual_stages=2 --out "$WORK/auto-il"
expect_err 'parallel.mode = "auto": no layout of 4 ranks fits'
grep -q "the interleaved schedule" "$WORK/err" || fail "auto: the interleaving miss not named"
! grep -q "needs parallel.pp > 1" "$WORK/err" || fail "auto: the schedule checked against the unresolved pp=1"
# bf16 on the CPU: planned too (it had failed: no bf16 peak for cpu-local).
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=2 --set train.threads=1 \
  --set train.eval_every=0 --set train.precision=bf16 --set optim.warmup_steps=1 --out "$WORK/auto-bf16"
grep -q "^auto layout for 2 ranks on cpu-local in bf16: dp=" "$WORK/out" || fail "auto: bf16 on the CPU not planned"
grep -q '^mode = "auto"' "$WORK/auto/config.toml" || fail "auto: resolved config lacks the mode"
# The resolved config runs as it is: the degrees are fixed now.
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" validate "$WORK/auto/config.toml"
! grep -q "auto layout" "$WORK/err" || fail "auto: a resolved config was planned again"
# Planning the resolved config again: what the planner chose for it (parallel.planned) is set
# aside, not kept as if the user had fixed it.
expect_exit 0 "$DTRAIN" plan "$WORK/auto/config.toml" --devices 4
grep -q "^note: the config's .*parallel.zero = [0-9] (the planner chose it for the run that wrote the file (parallel.planned))" \
  "$WORK/out" || fail "plan: a resolved config's planned modes not set aside: $(head -5 "$WORK/out")"
! grep -q "^fixed: .*zero" "$WORK/out" || fail "plan: the planner's own ZeRO choice kept as fixed"
# Explicit degrees: manual, checked against the ranks as before.
expect_exit 2 "${MPIRUN[@]}" -np 4 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.dp=2
expect_err "parallel: dp x tp x pp = 2 but 4 ranks were launched"
# Nothing fits: the nearest misses, exit 2.
expect_exit 2 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" --set parallel.mode=auto --set parallel.tp=2 \
  --set model.n_head=1
expect_err 'parallel.mode = "auto": no layout of 2 ranks fits'
echo "plan: ok"
