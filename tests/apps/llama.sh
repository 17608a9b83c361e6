# A GPT of LLaMA's parts (RMSNorm, SwiGLU, rotary positions, no biases, an
# untied head) end to
# end: it learns; a checkpoint resumes bit for bit, on another layout (tp 2,
# sequence parallel) within rounding; bf16 trains; `dtrain eval` gives the
# logged loss; `dtrain generate`'s key/value cache gives the full window's
# text; `dtrain plan` plans it; its Hugging Face export (LlamaForCausalLM)
# evaluates to the checkpoint's loss and starts a run; what it cannot do (a
# mix of GPT-2's and LLaMA's parts in the Hugging Face format, rope on an odd
# head width) fails in one line naming the keys. Then the same with
# grouped-query attention (4 query heads sharing 2 key/value heads).
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
make_tokens
tiny_gpt_config
# cache_matches_window CHECKPOINTS PROMPT SEED: `dtrain generate`'s key/value cache gives the
# full window's text (temperature 1.5, 30 tokens).
cache_matches_window() {
  local gen=(generate "$1" --prompt "$2" --tokens 30 --seed "$3" --temperature 1.5)
  expect_exit 0 "$DTRAIN" "${gen[@]}"; cp "$WORK/out" "$WORK/cached"
  expect_exit 0 "$DTRAIN" "${gen[@]}" --full-window
  cmp -s "$WORK/out" "$WORK/cached" || fail "$1: the key/value cache's text differs from the full window's: $(cat "$WORK/cached") vs $(cat "$WORK/out")"
}

# hf_matches_checkpoint CHECKPOINTS HF_DIR: the Hugging Face export evaluates to its checkpoint's
# loss bit for bit (the whole validation set, micro-batches of 8); the export's eval leaves its
# stderr in $WORK/err.
hf_matches_checkpoint() {
  local ckpt hf
  expect_exit 0 "$DTRAIN" eval "$1" --batches 0 --set train.micro_batch=8 --set train.threads=1 --json
  ckpt=$(json_field "$WORK/out" loss)
  expect_exit 0 "$DTRAIN" eval "hf:$2" --data "$WORK/tok_val.bin" --set train.threads=1 --json
  hf=$(json_field "$WORK/out" loss)
  [ -n "$hf" ] && [ "$hf" = "$ckpt" ] || fail "hf:$2 gives $hf, its checkpoint $ckpt"
}

llama=(--set model.norm=rmsnorm --set model.mlp=swiglu --set model.position=rope --set model.rope_theta=1000
       --set model.bias=false --set model.ffn_hidden=88 --set model.tie_embeddings=false --set train.threads=1)

# 40 steps with a checkpoint at 20: the loss falls; the run's config records the parts.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${llama[@]}" --set train.steps=40 --set checkpoint.every=20 \
  --set train.eval_every=20 --out "$WORK/a"
for key in 'norm = "rmsnorm"' 'mlp = "swiglu"' 'position = "rope"' 'ffn_hidden = 88' 'tie_embeddings = false'; do
  grep -qF "$key" "$WORK/a/config.toml" || fail "the run's config lacks $key"
done
python3 - "$WORK/a/metrics.jsonl" <<'PY' || fail "the loss did not fall: $(step_losses "$WORK/a/metrics.jsonl" | tr '\n' ' ')"
import json, sys
losses = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
assert losses[-1] < 0.7 * losses[0], losses
PY

# Resume from step 20: the same losses bit for bit; on tp 2 with sequence parallelism within rounding.
expect_exit 0 "$DTRAIN" resume "$WORK/a/checkpoints/step_00000020" --out "$WORK/r"
same_losses "$WORK/a/metrics.jsonl" "$WORK/r/metrics.jsonl"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/a/checkpoints/step_00000020" --out "$WORK/tp" \
  --set parallel.tp=2 --set parallel.sequence_parallel=true
python3 - "$WORK/a/metrics.jsonl" "$WORK/tp/metrics.jsonl" <<'PY' || fail "tp 2 with sequence parallelism left the one-process losses"
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(b) == list(range(21, 41)), sorted(b)
for s in b:
    assert abs(a[s] - b[s]) <= 1e-5 * abs(a[s]), (s, a[s], b[s])
PY

# The checkpoint's loss as the run logged it.
expect_exit 0 "$DTRAIN" eval "$WORK/a/checkpoints/step_00000040" --json
python3 - "$WORK/out" "$WORK/a/metrics.jsonl" <<'PY' || fail "eval: $(cat "$WORK/out")"
import json, sys
got = json.loads(open(sys.argv[1]).read())["loss"]
logged = [r["eval_loss"] for r in map(json.loads, open(sys.argv[2])) if r.get("step") == 40 and "eval_loss" in r]
assert logged and got == logged[-1], (got, logged)
PY

# Generation: the key/value cache (rotary angles from the cache's length) gives the full window's text.
cache_matches_window "$WORK/a/checkpoints" "over the" 3

# bf16 on 2 ranks of tp trains.
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" run "$WORK/tiny.toml" "${llama[@]}" --set train.steps=10 \
  --set train.precision=bf16 --set parallel.tp=2 --out "$WORK/bf"
[ -n "$(step_losses "$WORK/bf/metrics.jsonl")" ] || fail "the bf16 run logged no losses"

# The planner plans it, counting its parameters as the model has them: 2 x 256 x 32 for wte and
# the untied head, 2 blocks of 4 x 32^2 + 3 x 32 x 88 + 2 x 32, ln_f's 32, no wpe: 41632.
expect_exit 0 "$DTRAIN" plan "$WORK/tiny.toml" "${llama[@]}" --devices 4 --top 3
grep -q "^plan for 4 devices .*: 0.04163M parameters" "$WORK/out" || fail "$(head -1 "$WORK/out")"

# Hugging Face: the export is a LlamaForCausalLM directory that evaluates to the checkpoint's loss
# bit for bit (the whole set, micro-batches of 8), and a run starts from it (model.init_from).
expect_exit 0 "$DTRAIN" export "$WORK/a/checkpoints" --format hf --out "$WORK/hf"
grep -q '"model_type": "llama"' "$WORK/hf/config.json" || fail "$(cat "$WORK/hf/config.json")"
hf_matches_checkpoint "$WORK/a/checkpoints" "$WORK/hf"
expect_err "evaluating hf:$WORK/hf: LLaMA of 2 blocks, width 32, 2 heads, 16 positions, vocabulary 256 (byte ids)"
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${llama[@]}" --set train.steps=2 --set optim.warmup_steps=0 \
  --set model.init_from="\"hf:$WORK/hf\"" --out "$WORK/ft"
grep -qF "init: parameters from the Hugging Face directory $WORK/hf" "$WORK/out" || fail "no init line: $(cat "$WORK/out")"
# A mix of GPT-2's and LLaMA's parts has no Hugging Face format.
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${llama[@]}" --set model.position=learned --set train.steps=2 \
  --set optim.warmup_steps=0 --out "$WORK/mix"
expect_exit 2 "$DTRAIN" export "$WORK/mix/checkpoints" --format hf --out "$WORK/mixhf"
expect_err 'model.position = "learned", model.bias = false, model.ffn_hidden = 88, model.tie_embeddings = false: neither Hugging Face format holds this mix'
[ ! -e "$WORK/mixhf" ] || fail "a refused export wrote $WORK/mixhf"

# A bad config, in one line naming the keys.
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" "${llama[@]}" --set model.n_embd=24 --set model.n_head=8
expect_err 'model.position = "rope" turns pairs of each head'"'"'s features: the head width model.n_embd / model.n_head (24 / 8 = 3) must be even'
[ "$(wc -l <"$WORK/err")" -eq 1 ] || fail "more than one line: $(cat "$WORK/err")"

# Grouped-query attention: 4 query heads over 2 key/value heads. It learns; tp 2 (one key/value
# head and its two query heads per rank) resumes its checkpoint within rounding; the key/value
# cache (2 heads cached) gives the full window's text; its Hugging Face export says
# num_key_value_heads and evaluates to the checkpoint's loss bit for bit.
gqa=("${llama[@]}" --set model.n_head=4 --set model.n_kv_head=2)
expect_exit 0 "$DTRAIN" run "$WORK/tiny.toml" "${gqa[@]}" --set train.steps=30 --set checkpoint.every=15 \
  --set train.eval_every=15 --out "$WORK/g"
grep -qF 'n_kv_head = 2' "$WORK/g/config.toml" || fail "the run's config lacks n_kv_head = 2"
expect_exit 0 "${MPIRUN[@]}" -np 2 "$DTRAIN" resume "$WORK/g/checkpoints/step_00000015" --out "$WORK/gtp" \
  --set parallel.tp=2
python3 - "$WORK/g/metrics.jsonl" "$WORK/gtp/metrics.jsonl" <<'PY' || fail "GQA on tp 2 left the one-process losses"
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(b) == list(range(16, 31)), sorted(b)
assert a[30] < 0.8 * a[1], (a[1], a[30])
for s in b:
    assert abs(a[s] - b[s]) <= 1e-5 * abs(a[s]), (s, a[s], b[s])
PY
cache_matches_window "$WORK/g/checkpoints" "in the" 5
expect_exit 0 "$DTRAIN" export "$WORK/g/checkpoints" --format hf --out "$WORK/ghf"
grep -q '"num_key_value_heads": 2' "$WORK/ghf/config.json" || fail "$(cat "$WORK/ghf/config.json")"
hf_matches_checkpoint "$WORK/g/checkpoints" "$WORK/ghf"
expect_err "evaluating hf:$WORK/ghf: LLaMA of 2 blocks, width 32, 4 heads (2 key/value), 16 positions"
# tp 4 cannot split 2 key/value heads: one line naming the keys.
expect_exit 2 "$DTRAIN" validate "$WORK/tiny.toml" "${gqa[@]}" --set parallel.tp=4
expect_err 'model.n_kv_head (2) is not divisible by parallel.tp (4)'
