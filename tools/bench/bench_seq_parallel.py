#!/usr/bin/env python3
"""Bytes the tp group moves per step with and without sequence parallelism.

Runs `dtrain profile` twice on 2 ranks (tp 2, parallel.sequence_parallel false
and true), reads every tp collective the comm recorder put in trace.json (rank
0), and turns payloads into wire bytes per rank as ring algorithms send them:
an all-reduce of N bytes 2 (t-1)/t N, an all-gather or reduce-scatter of N
bytes (t-1)/t N. Korthikanti et al.: all-gather + reduce-scatter = all-reduce,
so the two should match but for the layer norms' gradient all-reduce sequence
parallelism adds (n_norms x (w, b) x C x 4 bytes) and, but under full
recomputation, the second all-gather of each block's two product inputs in
backward (a block keeps the slices, as Megatron-LM's does). Usage (repository
root):

  python3 tools/bench/bench_seq_parallel.py [--config configs/bench/gpt-small.toml] [--steps 2]
"""
import argparse
import json
import subprocess
import sys
import tomllib
from collections import defaultdict

ap = argparse.ArgumentParser()
ap.add_argument("--config", default="configs/bench/gpt-small.toml")
ap.add_argument("--steps", type=int, default=2)
ap.add_argument("--dtrain", default="build/dtrain")
a = ap.parse_args()
cfg = tomllib.load(open(a.config, "rb"))
m, tr = cfg["model"], cfg["train"]
t = 2
B, T, C, L = tr["micro_batch"], tr.get("seq_len") or m["context_length"], m["n_embd"], m["n_layer"]
accum = tr.get("grad_accum", 1)
recompute = tr.get("recompute", "none")
N = B * T * C * 4  # one (B, T, C) fp32 activation
factor = {"all_reduce": 2 * (t - 1) / t, "all_gather": (t - 1) / t, "reduce_scatter": (t - 1) / t}

rows = {}
for sp in ("false", "true"):
    out = f"/tmp/bench_seq_parallel_{sp}"
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", a.dtrain, "profile", a.config,
           "--set", "parallel.tp=2", "--set", "train.threads=1", "--set", f"parallel.sequence_parallel={sp}",
           "--steps", str(a.steps), "--warmup", "1", "--out", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    ev = json.load(open(f"{out}/trace.json"))
    ev = ev["traceEvents"] if isinstance(ev, dict) else ev
    payload, calls = defaultdict(float), defaultdict(int)
    for e in ev:
        if e.get("pid") == 0 and e.get("cat") == "tp" and "bytes" in e.get("args", {}):
            op = e["name"].split(" ", 1)[1]
            payload[op] += e["args"]["bytes"] / a.steps
            calls[op] += 1
    rows[sp] = (payload, {k: v // a.steps for k, v in calls.items()})

# The formula: plain tp all-reduces (B, T, C) once in the embedding, 4 times a
# block (2 forward, 2 backward), once in the head, per micro-batch; the
# vocabulary-parallel loss 4 values a row; the gradient norm 8 bytes a step.
rows_per_mb = B * T
plain_formula = accum * ((2 + 4 * L) * N + 4 * 4 * rows_per_mb) + 8
ln_sync = (2 * L + 1) * 2 * C * 4 * factor["all_reduce"]
regather = 0 if recompute == "full" else accum * 2 * L * N * factor["all_gather"]
print(f"{a.config}: B={B} T={T} C={C} layers={L} grad_accum={accum}, tp={t}; N = B T C x 4 = {N} bytes")
print("| run | all-reduce payload | all-gather payload | reduce-scatter payload | wire bytes per rank | formula |")
print("|---|---|---|---|---|---|")
for sp, (payload, calls) in rows.items():
    wire = sum(factor[op] * b for op, b in payload.items())
    formula = plain_formula * factor["all_reduce"] + (ln_sync + regather if sp == "true" else 0)
    cells = [f"{payload.get(op, 0):.0f} ({calls.get(op, 0)} calls)" for op in ("all_reduce", "all_gather", "reduce_scatter")]
    name = "tp 2 + sequence parallel" if sp == "true" else "tp 2"
    print(f"| {name} | {' | '.join(cells)} | {wire:.0f} | {formula:.0f} |")
    if abs(wire - formula) > 0.5:
        sys.exit(f"{name}: measured {wire:.0f} wire bytes, formula {formula:.0f}")
