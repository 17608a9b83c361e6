# dtrain profile on the tiny GPT, on one process and on 2 ranks (pp=2, dp=2):
# the table lists every top-level layer and the loss, each stage's shares add
# up to ~100%, trace.json is JSON with events from every rank on both streams,
# profile.json has the documented fields, and log.profile adds a breakdown to
# `dtrain run`'s progress lines.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
make_tokens
tiny_gpt_config
base=(--steps 3 --warmup 1 --set train.threads=1 --set model.n_head=4)

check() {  # check DIR RANKS: the report in $WORK/out and the files in DIR
  for layer in embed blocks.0 blocks.1 ln_f lm_head loss; do
    grep -qE "^  $layer +[0-9]" "$WORK/out" || { cat "$WORK/out"; fail "$1: no row for $layer"; }
  done
  grep -q "^per layer kind" "$WORK/out" || fail "$1: no per-kind table"
  grep -qE "^  blocks +[0-9]" "$WORK/out" || fail "$1: no blocks kind row"
  grep -q "^memory per rank" "$WORK/out" || fail "$1: no memory table"
  grep -q "MFU" "$WORK/out" || fail "$1: no MFU"
  python3 - "$WORK/out" "$1" "$2" <<'PY' || { cat "$WORK/out"; fail "$1: report or files wrong"; }
import json, re, sys
out, d, ranks = open(sys.argv[1]).read().splitlines(), sys.argv[2], int(sys.argv[3])
# Each stage block: the rows' shares add up to the step's (100% within 2%).
stages, cur = [], None
for l in out:
    if l.startswith("stage "): cur = []; stages.append(cur); continue
    if cur is None: continue
    if not l.startswith("  "): cur = None; continue
    m = re.search(r"(-?[0-9.]+)%", l)
    if m and not l.strip().startswith("step"): cur.append(float(m.group(1)))
assert stages, "no stage table"
for s in stages:
    assert abs(sum(s) - 100) < 2, ("shares", s, sum(s))
t = json.load(open(d + "/trace.json"))
ev = t["traceEvents"]
names = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
xs = [e for e in ev if e["ph"] == "X"]
for r in range(ranks):
    streams = {names[(e["pid"], e["tid"])].split()[0] for e in xs if e["pid"] == r}
    assert streams == {"compute", "comm"}, (r, streams)
    assert any(e["name"] == "blocks.1 bwd" or e["name"] == "blocks.0 bwd" for e in xs if e["pid"] == r)
assert {e["pid"] for e in xs} == set(range(ranks))
for e in xs: assert e["dur"] >= 0 and e["ts"] >= 0
p = json.load(open(d + "/profile.json"))
for k in ["layout", "world", "steps", "warmup", "step_ms", "items_per_second", "unit", "model_flops_per_step",
          "peak_gflops", "peak_source", "mfu", "stages", "layers", "kinds", "comm", "dp_overlap", "ranks"]:
    assert k in p, k
assert p["world"] == ranks and p["steps"] == 3 and p["peak_gflops"] > 0
assert [l["name"] for l in p["layers"]] == ["embed", "blocks.0", "blocks.1", "ln_f", "lm_head", "loss"], p["layers"]
for l in p["layers"]: assert l["fwd_ms"] > 0 and l["fwd_gflops"] >= 0
for s in p["stages"]:
    for k in ["step_ms", "forward_ms", "backward_ms", "data_ms", "optimizer_ms", "bubble_ms", "bubble_share", "dp_wait_ms"]:
        assert k in s, k
assert {k["kind"] for k in p["kinds"]} >= {"embed", "blocks", "ln_f", "lm_head", "loss"}
for r in p["ranks"]:
    for k in ["params_bytes", "grads_bytes", "optimizer_bytes", "activation_bytes", "predicted", "peak_gflops"]:
        assert k in r, k
    assert r["params_bytes"] > 0 and r["predicted"]["params_bytes"] > 0
    assert r["activation_bytes"] > 0
    # The cost model's activation bytes (act + work buffers, per precision and
    # recomputation mode) are what the stage's buffers measure, within 5%
    # and the allocator's rounding of the tiny model's few dozen buffers.
    a, b = r["activation_bytes"], r["predicted"]["activation_bytes"]
    assert abs(a - b) <= 0.05 * a + 64 * 1024, ("activations measured", a, "predicted", b)
# What dtrain run checked before allocating (the planner's count for the
# layout's fullest stage) against the fullest rank: the same line in the report.
c = p["memory_check"]
held = max(r["params_bytes"] + r["grads_bytes"] + r["optimizer_bytes"] + r["activation_bytes"] for r in p["ranks"])
assert c["held_bytes"] == held, (c, held)
assert abs(c["predicted_bytes"] - held) <= 0.05 * held + 64 * 1024, ("checked", c["predicted_bytes"], "held", held)
assert any(l.startswith("  dtrain run's check (the cost model for this layout") for l in out)
PY
}

# The planner's memory for a run's layout (dtrain plan --json: the fullest
# stage's activations) against what that stage measured: the cost model and
# dtrain profile's prediction count the same buffers in two places.
# The planner describes the layers with its own process's threads, whose
# scratch the CPU kernels keep per thread: one, as the runs' train.threads.
plan_check() {  # plan_check DIR DEVICES PLAN-SETS...
  local dir=$1 devices=$2 config=${PLAN_CONFIG:-$WORK/tiny.toml} tiny=()
  shift 2
  [ -n "${PLAN_CONFIG:-}" ] || tiny=(--set model.n_head=4 --set train.micro_batch=4)
  OMP_NUM_THREADS=1 "$DTRAIN" plan "$config" --devices "$devices" --hardware cpu-local --precision "${PLAN_PRECISION:-fp32}" --json \
    "${tiny[@]}" --set parallel.zero=0 --set parallel.schedule=1f1b "$@" >"$WORK/plan.json" 2>"$WORK/plan.err" ||
    { cat "$WORK/plan.err"; fail "$dir: dtrain plan failed"; }
  python3 - "$dir/profile.json" "$WORK/plan.json" <<'PY' || fail "$dir: the planner's activation bytes are not the run's"
import json, sys
prof, plan = (json.load(open(f)) for f in sys.argv[1:])
best = plan["feasible"][0]
stage = best["memory"]["stage"]
measured = max(r["activation_bytes"] for r in prof["ranks"] if r["pp"] == stage)
planned = best["memory"]["activations"]
print(f"{sys.argv[1]}: stage {stage} activations measured {measured}, planned {planned:.0f}")
assert abs(measured - planned) <= 0.03 * measured + 64 * 1024, ("stage", stage, "measured", measured, "planned", planned)
PY
}

expect_exit 0 "$DTRAIN" profile "$WORK/tiny.toml" "${base[@]}" --out "$WORK/one"
check "$WORK/one" 1
grep -q "one rank per group" "$WORK/out" || fail "one process: communication not marked as absent"
# Memory per precision and recomputation mode, measured against the cost model
# (check); work-buffer sharing and recomputation lower the measured bytes.
act() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ranks'][0]['activation_bytes'])" "$1/profile.json"; }
for mode in "fp32 none" "fp32 selective" "fp32 full" "bf16 none" "bf16 full"; do
  set -- $mode
  expect_exit 0 "$DTRAIN" profile "$WORK/tiny.toml" "${base[@]}" --out "$WORK/mem-$1-$2" \
    --set train.precision=$1 --set train.recompute=$2 --set model.dropout=0.1
  check "$WORK/mem-$1-$2" 1
  PLAN_PRECISION=$1 plan_check "$WORK/mem-$1-$2" 1 --set train.recompute=$2 --set model.dropout=0.1
done
python3 - "$(act "$WORK/mem-fp32-none")" "$(act "$WORK/mem-fp32-selective")" "$(act "$WORK/mem-fp32-full")" \
  "$(act "$WORK/mem-bf16-none")" <<'PY' || fail "recomputation or bf16 does not lower the activation bytes"
import sys
none, sel, full, bf16 = map(float, sys.argv[1:])
assert full < sel < none and bf16 < 0.6 * none, (none, sel, full, bf16)
PY
# bf16's MFU is of the bf16 product's peak, not the sgemm's (it read 106% of the sgemm's).
python3 - "$WORK/mem-fp32-none/profile.json" "$WORK/mem-bf16-none/profile.json" <<'PY' ||
import json, sys
f32, b16 = (json.load(open(f)) for f in sys.argv[1:])
assert (f32["precision"], f32["peak_source"]) == ("fp32", "sgemm"), f32["peak_source"]
assert (b16["precision"], b16["peak_source"]) == ("bf16", "bf16 product"), b16["peak_source"]
PY
  fail "profile: the peak is not the run's precision's product"

expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" profile "$WORK/tiny.toml" "${base[@]}" --out "$WORK/pp" \
  --set parallel.pp=2
check "$WORK/pp" 2
grep -q "^stage 1 (ranks 1)" "$WORK/out" || fail "pp=2: no stage 1"
grep -qE "^  pp +2 " "$WORK/out" || fail "pp=2: no pp row"
grep -q "pipeline wait (bubble)" "$WORK/out" || fail "pp=2: no bubble row"
[ ! -e "$WORK/pp/trace.rank1.part" ] || fail "trace fragments left behind"
grep -q "^pipeline bubble (1f1b, p = 2 stages, m = 2 micro-batches)" "$WORK/out" || fail "pp=2: no bubble table"

# Sequence parallelism keeps the slices of what plain tp keeps whole, and the
# products' gathered inputs only while a block runs (gathered again in
# backward): each run as predicted (check) and planned (plan_check) in every
# recomputation mode, and fewer activation bytes than plain tp 2 where blocks
# keep their activations (under full recomputation a block keeps only its
# input, a slice now, against sequence parallelism's few model-wide buffers:
# which is larger depends on the model).
for mode in none selective full; do
  for sp in false true; do
    expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" profile "$WORK/tiny.toml" "${base[@]}" --out "$WORK/tp-$sp-$mode" \
      --set model.n_embd=128 --set model.context_length=64 --set train.micro_batch=8 --set model.dropout=0.1 \
      --set parallel.tp=2 --set parallel.sequence_parallel=$sp --set train.recompute=$mode
    check "$WORK/tp-$sp-$mode" 2
    plan_check "$WORK/tp-$sp-$mode" 2 --set model.n_embd=128 --set model.context_length=64 --set train.micro_batch=8 \
      --set model.dropout=0.1 --set parallel.tp=2 --set parallel.sequence_parallel=$sp --set train.recompute=$mode
  done
  [ "$mode" = full ] && continue
  python3 - "$(act "$WORK/tp-false-$mode")" "$(act "$WORK/tp-true-$mode")" <<'PY' ||
import sys
plain, sp = map(float, sys.argv[1:])
assert sp < plain, ("tp 2 activations without and with sequence parallelism", plain, sp)
PY
    fail "$mode: sequence parallelism does not lower the activation bytes"
done

# The CNN's buffers (the convolutions' input gradients and their plans'
# scratch, the batch norms', the pooling's): each of 2 pipeline stages as
# predicted (within 5%) and as planned.
[ -f "$DTRAIN_SOURCE_DIR/data/mnist/train-images-idx3-ubyte" ] || fail "MNIST missing: run tools/setup.sh"
cnn=(--set train.threads=1 --set train.micro_batch=16 --set train.grad_accum=2)
(cd "$DTRAIN_SOURCE_DIR" && expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" profile configs/cnn-mnist.toml --steps 1 \
  --warmup 1 "${cnn[@]}" --set parallel.pp=2 --out "$WORK/cnn") || fail "cnn: profile"
python3 - "$WORK/cnn/profile.json" <<'PY' || fail "cnn: activations measured and predicted differ"
import json, sys
for r in json.load(open(sys.argv[1]))["ranks"]:
    a, b = r["activation_bytes"], r["predicted"]["activation_bytes"]
    assert abs(a - b) <= 0.05 * a + 64 * 1024, ("stage", r["pp"], "measured", a, "predicted", b)
PY
(cd "$DTRAIN_SOURCE_DIR" && PLAN_CONFIG=configs/cnn-mnist.toml plan_check "$WORK/cnn" 2 "${cnn[@]}" \
  --set parallel.pp=2 --set train.recompute=none) || fail "cnn: plan"

# A stage's micro-batch copies share the blocks' buffers (Model::share_arena):
# under full recomputation a second copy in flight adds only what it keeps
# (its blocks' inputs and the output it sends), not another set of them.
# Stage 0 of 1F1B over 2 stages keeps min(m, 2) copies: 1 at m = 1, 2 at m = 4.
wide=(--set model.n_embd=128 --set model.context_length=64 --set train.micro_batch=8 --set train.recompute=full)
for ga in 1 4; do
  expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" profile "$WORK/tiny.toml" "${base[@]}" "${wide[@]}" \
    --out "$WORK/share-$ga" --set parallel.pp=2 --set train.grad_accum=$ga
  check "$WORK/share-$ga" 2
  plan_check "$WORK/share-$ga" 2 "${wide[@]}" --set parallel.pp=2 --set train.grad_accum=$ga
done
python3 - "$WORK/share-1/profile.json" "$WORK/share-4/profile.json" <<'PY' ||
import json, sys
one, two = (json.load(open(f))["ranks"][0]["activation_bytes"] for f in sys.argv[1:])
assert 0 < two - one < 0.4 * one, ("stage 0 with 1 and 2 copies", one, two)
PY
  fail "pp=2, full recomputation: a second micro-batch copy costs as much as the first"

# Interleaved 1F1B: each stage's two chunks' layers, the bubble beside (p-1)/(v m).
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" profile "$WORK/tiny.toml" "${base[@]}" --out "$WORK/il" \
  --set parallel.pp=2 --set parallel.schedule=interleaved --set parallel.virtual_stages=2
grep -q "^pipeline bubble (interleaved with v = 2 chunks per stage, p = 2 stages, m = 2 micro-batches)" "$WORK/out" ||
  { cat "$WORK/out"; fail "interleaved: no bubble table"; }
python3 - "$WORK/il/profile.json" "$WORK/out" <<'PY' || { cat "$WORK/out"; fail "interleaved: profile wrong"; }
import json, re, sys
p = json.load(open(sys.argv[1]))
names = sorted(l["name"] for l in p["layers"])
assert names == sorted(["embed", "blocks.0", "blocks.1", "ln_f", "lm_head", "loss"]), names
assert {l["name"]: l["stage"] for l in p["layers"]}["blocks.0"] != {l["name"]: l["stage"] for l in p["layers"]}["embed"]
for s in p["stages"]:
    assert abs(s["bubble_ideal"] - 0.25) < 1e-9 and s["bubble_vs_compute"] >= 0, s
rows = [l for l in open(sys.argv[2]) if re.match(r"^  [01] +[0-9.]+ +[0-9.]+ +[0-9.]+% +25.0%$", l.rstrip())]
assert len(rows) == 2, rows
PY

expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" profile "$WORK/tiny.toml" "${base[@]}" --out "$WORK/dp" \
  --set parallel.dp=2 --set train.grad_accum=1 --peak-gflops 10
check "$WORK/dp" 2
grep -q "dp gradient reduction: buckets in flight" "$WORK/out" || fail "dp=2: no overlap line"
grep -q "10.0 GFLOP/s (--peak-gflops)" "$WORK/out" || fail "--peak-gflops not used"
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); o=p["dp_overlap"]; assert 0<=o["overlapped"]<=1 and p["comm"]["dp"]["ops_per_step"]>0' \
  "$WORK/dp/profile.json" || fail "dp=2: profile.json lacks the dp numbers"
# Each collective kind: its rows add up to the group's totals, hidden is a share.
python3 - "$WORK/dp/profile.json" <<'PY' || fail "dp=2: the per-collective table disagrees with the group totals"
import json, sys
p = json.load(open(sys.argv[1]))
rows = [c for c in p["collectives"] if c["group"] == "dp"]
assert {c["op"] for c in rows} >= {"all_reduce"}, rows
for c in rows:
    assert 0 <= c["hidden"] <= 1 and 0 <= c["blocked_ms"] <= c["busy_ms"] + 1e-9, c
for k in ["ops_per_step", "bytes_per_step"]:
    total = sum(c[k] for c in rows)
    assert abs(total - p["comm"]["dp"][k]) <= 1e-9 * max(1.0, total), (k, total, p["comm"]["dp"][k])
PY
grep -qE "^  dp +all_reduce +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9]+%$" "$WORK/out" || fail "dp=2: no all_reduce row"

# Calibration: a hardware file measured on 4 ranks (and on one), which plan reads back. Where the
# ranks share cores (4 on this 2-core machine) it also times a step at tp 2 beside one at dp 4.
expect_exit 0 "${MPIRUN[@]}" -np 4 "$DTRAIN" profile "$WORK/tiny.toml" --write-hardware "$WORK/cal.toml" \
  --steps 3 --warmup 1 --set train.threads=1 --set train.micro_batch=32
grep -q "^calibrated on 4 ranks: sgemm (.*) .* GFLOP/s" "$WORK/out" || { cat "$WORK/out"; fail "calibration: no summary"; }
grep -q "^wrote $WORK/cal.toml" "$WORK/out" || fail "calibration: file not reported"
python3 - "$WORK/cal.toml" <<'PY' || { cat "$WORK/cal.toml"; fail "calibration: the file's numbers"; }
import sys, tomllib
h = tomllib.load(open(sys.argv[1], "rb"))
assert h["name"] == "cal", h["name"]
d, n, c = h["device"], h["node"], h["calibration"]
assert n["devices"] == 4 and 0 <= n["compute_units"] <= 4, n
assert d["peak_tflops_fp32"] > 0 and 0 < d["efficiency"] <= 1 and d["memory_bandwidth_gbs"] > 0, d
# bf16 products measured beside the sgemm: the bf16 peak in the same ratio.
assert c["bgemm_gflops"] > 0 and c["fitted_precision"] == "fp32", c
ratio = d["peak_tflops_bf16"] / d["peak_tflops_fp32"]
assert abs(ratio - c["bgemm_gflops"] / c["sgemm_gflops"]) < 1e-3 * ratio, (ratio, c)
assert d["layer_overhead_us"] >= 0 and n["handoff_us"] >= 0
assert h["intra"]["bandwidth_gbs"] > 0 and h["intra"]["latency_us"] > 0, h["intra"]
assert c["ranks"] == 4 and c["micro_batches"] == [1, 32] and c["micro_batches_per_step"] == [32, 1], c
assert c["command"].startswith("mpirun -np 4 dtrain profile ") and "--set train.micro_batch=32" in c["command"], c
a, b = c["pass_seconds_alone"]
assert 0 < a < b, c
# The tp measurement: where units are shared, tp 2 (the tiny GPT's 2 heads) beside dp 4.
shared = 0 < n["compute_units"] < n["devices"]
assert ("tp_layouts" in c) == shared and (n["tp_bandwidth_gbs"] > 0) == shared == (n["sp_bandwidth_gbs"] > 0), (n, c)
if shared:
    assert c["tp_layouts"] == ["dp=4 micro-batch 32", "dp=2 tp=2 micro-batch 64",
                              "dp=2 tp=2 micro-batch 64 sequence parallel"], c["tp_layouts"]
    assert n["sp_bandwidth_gbs"] > 0, n
    assert all(x > 0 for x in c["tp_layout_step_seconds"] + c["tp_layout_predicted_at_link"]), c
PY
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 4 --hardware "$WORK/cal.toml"
grep -q "plan for 4 devices of cal" "$WORK/out" || fail "plan: calibrated file not read"
expect_exit 0 "$DTRAIN" hardware "$WORK/cal.toml"
grep -q "^handoff_us = " "$WORK/out" || fail "hardware: no handoff_us"
# In bf16: the layers fitted at the bf16 products' curve, and plans in bf16 read it.
expect_exit 0 "$DTRAIN" profile "$WORK/tiny.toml" --write-hardware "$WORK/one.toml" --hardware-name solo \
  --steps 4 --warmup 1 --set train.threads=1 --set train.micro_batch=32 --set train.precision=bf16
grep -q '^name = "solo"' "$WORK/one.toml" || fail "calibration: --hardware-name"
grep -q "; links not measured (one rank): the file assumes a memory copy's" "$WORK/out" ||
  fail "calibration on one rank: the summary reports links it did not measure: $(cat "$WORK/out")"
grep -q '^fitted_precision = "bf16"' "$WORK/one.toml" || fail "calibration in bf16: not fitted in bf16"
grep -qE '^peak_tflops_bf16 = 0\.[0-9]*[1-9]' "$WORK/one.toml" || fail "calibration in bf16: no bf16 peak"
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" --devices 1 --hardware "$WORK/one.toml" --precision bf16
# Outputs that cannot be written fail before anything is measured (the report's --out did after).
expect_exit 2 "$DTRAIN" profile "$WORK/tiny.toml" --out "$WORK/tiny.toml/p" --steps 1
expect_err "--out $WORK/tiny.toml/p: cannot be created: "
! grep -q "^step " "$WORK/out" || fail "profile: measured before finding its --out unwritable"
expect_exit 2 "$DTRAIN" profile "$WORK/tiny.toml" --write-hardware "$WORK/none/x.toml"
expect_err "--write-hardware $WORK/none/x.toml: cannot write there ($WORK/none is not a directory: it does not exist)"
# A GPU config where there is no GPU: one line naming train.device, before anything is
# measured, and no file (tools/gpu/accept.sh's calibrate stage runs it where there is one).
if ! nvidia-smi -L >/dev/null 2>&1; then
  expect_exit 2 "$DTRAIN" profile "$WORK/tiny.toml" --write-hardware "$WORK/gpu.toml" --set train.device=cuda
  expect_err 'train.device: cuda'  # (no usable device; a build without the backend says that instead)
  [ "$(grep -c . "$WORK/err")" = 1 ] || fail "calibration without a GPU: more than one line: $(cat "$WORK/err")"
  [ ! -e "$WORK/gpu.toml" ] || fail "calibration: a cuda config without a GPU wrote a file"
fi
grep -q "links not measured (one rank)" "$WORK/one.toml" || fail "calibration on one rank: links not marked"

# ZeRO-3 in bf16 on dp 2: the memory table's parameter and gradient bytes (the fp32 master
# shard + its bf16 copy, two bf16 gather windows, the resident tied wte) equal the cost model's.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" profile "$WORK/tiny.toml" "${base[@]}" --out "$WORK/z3" \
  --set parallel.dp=2 --set train.grad_accum=1 --set parallel.zero=3 --set train.precision=bf16
check "$WORK/z3" 2
python3 - "$WORK/z3/profile.json" <<'PY' || { cat "$WORK/out"; fail "ZeRO-3: memory differs from the cost model"; }
import json, sys
z3 = json.load(open(sys.argv[1]))
for r in z3["ranks"]:
    for k in ["params_bytes", "grads_bytes", "optimizer_bytes"]:
        assert abs(r[k] - r["predicted"][k]) <= 0.02 * r[k], (k, r[k], r["predicted"][k])
PY

# Light profiling in `dtrain run`.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" --set train.steps=8 --set log.every=4 --set log.profile=true \
  --set train.threads=1 --out "$WORK/run"
grep -qE "step +8/8 .* \| fwd [0-9]+% bwd [0-9]+% comm [0-9]+% opt [0-9]+% data [0-9]+%" "$WORK/out" \
  || { cat "$WORK/out"; fail "log.profile: no breakdown on the progress line"; }
echo "profile: ok"
