#!/usr/bin/env python3
"""Communication share and overlap of data-parallel training on this machine.

Runs a GPT under `mpirun -np 2` with parallel.dp=2, once with gradient buckets
started during the backward pass (parallel.overlap=true, the default) and once
with every bucket started after it (overlap=false), alternating the two
--rounds times so drifting load hits both. From metrics.jsonl (medians after
warm-up) it prints a markdown table:
  - step time;
  - comm share: time blocked in any communicator / step time;
  - dp wait: time waiting for the gradient reduction after the backward;
  - hidden: 1 - dp wait(overlap) / dp wait(no overlap), the part of the
    reduction hidden behind the backward pass.
Also a one-process run of the same global batch for reference.

Run from the repository root after tools/setup.sh:
  python3 tools/bench/bench_parallel.py [--config configs/bench/gpt-small.toml] [--rounds 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]


def run(binary, config, ranks, sets, steps, warmup):
    with tempfile.TemporaryDirectory() as out:
        cmd = [binary, "run", config, "--out", out, "--set", f"train.steps={steps + warmup}",
               "--set", "train.eval_every=0", "--set", "train.eval_batches=1",
               "--set", "log.every=1000", "--set", "checkpoint.at_end=false"]
        for s in sets:
            cmd += ["--set", s]
        if ranks > 1:
            cmd = MPIRUN + ["-np", str(ranks)] + cmd
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)
        recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if '"loss"' in l]
    recs = recs[warmup:]
    med = lambda k: statistics.median(r[k] for r in recs)
    return med("step_seconds"), med("comm_seconds"), med("dp_wait_seconds")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/dtrain"))
    ap.add_argument("--config", default="configs/bench/gpt-small.toml")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--micro", type=int, default=4)
    a = ap.parse_args()
    # Global batch 2 x micro on every run: one process accumulates two
    # micro-batches; each of the 2 ranks does one with one thread.
    cases = [
        ("1 process, 2 threads, grad_accum 2", 1,
         [f"train.micro_batch={a.micro}", "train.grad_accum=2", "train.threads=2"]),
        ("dp=2 (1 thread each), overlap", 2,
         [f"train.micro_batch={a.micro}", "train.grad_accum=1", "train.threads=1", "parallel.dp=2",
          "parallel.overlap=true"]),
        ("dp=2 (1 thread each), no overlap", 2,
         [f"train.micro_batch={a.micro}", "train.grad_accum=1", "train.threads=1", "parallel.dp=2",
          "parallel.overlap=false"]),
    ]
    results = {name: [] for name, _, _ in cases}
    for _ in range(a.rounds):
        for name, ranks, sets in cases:
            results[name].append(run(a.binary, a.config, ranks, sets, a.steps, a.warmup))
    med = {name: tuple(statistics.median(r[i] for r in rs) for i in range(3)) for name, rs in results.items()}
    on, off = med[cases[1][0]], med[cases[2][0]]
    hidden = 1 - on[2] / off[2] if off[2] > 0 else float("nan")
    print(f"config {a.config}, global batch 2 x {a.micro}, median of {a.rounds} rounds x {a.steps} steps")
    print()
    print("| run | step | comm (blocked) | comm share | dp wait after backward |")
    print("|---|---|---|---|---|")
    for name, _, _ in cases:
        step, comm, wait = med[name]
        print(f"| {name} | {step * 1e3:.0f} ms | {comm * 1e3:.1f} ms | {100 * comm / step:.1f}% | {wait * 1e3:.1f} ms |")
    print()
    print(f"gradient reduction hidden behind the backward pass: {100 * hidden:.0f}% "
          f"(dp wait {on[2] * 1e3:.1f} ms with overlap vs {off[2] * 1e3:.1f} ms without)")


if __name__ == "__main__":
    main()
