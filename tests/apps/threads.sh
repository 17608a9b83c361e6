# train.threads = 0: the rank's share of the cores it may run on. One process
# takes every core of its affinity; ranks that mpirun leaves unbound on the
# same cores (--bind-to none, as when it oversubscribes) divide them, at least
# one thread each, instead of each starting a thread per core (4 ranks on 2
# cores ran a step 12x slower so); OMP_NUM_THREADS and train.threads win.
source "$(dirname "$0")/common.bash"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
make_tokens
tiny_gpt_config
unset OMP_NUM_THREADS OMP_THREAD_LIMIT
cores=$(nproc)
threads_of() { sed -n 's/.* \([0-9]*\) threads\{0,1\} per rank.*/\1/p' "$WORK/out" | head -n 1; }
run=(run "$WORK/tiny.toml" --set train.steps=1 --set optim.warmup_steps=0 --set train.eval_every=0 --set train.threads=0)

expect_exit 0 "$DTRAIN" "${run[@]}" --out "$WORK/one"
[ "$(threads_of)" = "$cores" ] || fail "one process: $(threads_of) threads, expected all $cores cores"
expect_exit 0 "${MPIRUN[@]}" --bind-to none -np 4 "$DTRAIN" "${run[@]}" --set parallel.dp=4 --set train.grad_accum=0 \
  --set train.micro_batch=2 --set train.global_batch=8 --out "$WORK/four"
want=$((cores / 4 > 0 ? cores / 4 : 1))
[ "$(threads_of)" = "$want" ] || fail "4 unbound ranks on $cores cores: $(threads_of) threads each, expected $want"
# What the user says wins.
OMP_NUM_THREADS=3 expect_exit 0 "${MPIRUN[@]}" -x OMP_NUM_THREADS --bind-to none -np 2 "$DTRAIN" "${run[@]}" \
  --set parallel.dp=2 --out "$WORK/env"
[ "$(threads_of)" = 3 ] || fail "OMP_NUM_THREADS=3: $(threads_of) threads"
expect_exit 0 "${MPIRUN[@]}" --bind-to none -np 2 "$DTRAIN" "${run[@]}" --set parallel.dp=2 --set train.threads=3 \
  --out "$WORK/set"
[ "$(threads_of)" = 3 ] || fail "train.threads=3: $(threads_of) threads"
echo "threads: ok"
