#!/usr/bin/env python3
"""When an interleaved pipeline's gradient reduction starts: two builds side by side.

Runs the same data-parallel, interleaved-pipeline GPT under `mpirun` with two
dtrain binaries (say, one built before lib/train started each chunk's
gradient buckets with that chunk's last backward, and one after), alternating
them --rounds times so drifting load hits both. From metrics.jsonl (medians
after warm-up) it prints a markdown table: step time, the time the ranks
waited for the gradient reduction after the pipeline (dp wait), and the loss
of the last step (the two must agree bit for bit: only when the buckets start
differs).

Run from the repository root after tools/setup.sh, on a quiet machine:
  python3 tools/bench/bench_grad_sync.py --a /tmp/dtrain_before --b build/dtrain [--rounds 4]
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
        cmd = MPIRUN + ["-np", str(ranks), binary, "run", config, "--out", out,
                        "--set", f"train.steps={steps + warmup}", "--set", "train.eval_every=0",
                        "--set", "train.eval_batches=1", "--set", "log.every=1000",
                        "--set", "checkpoint.at_end=false"]
        for s in sets:
            cmd += ["--set", s]
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)
        recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if '"loss"' in l]
    last_loss = recs[-1]["loss"]
    recs = recs[warmup:]
    med = lambda k: statistics.median(r[k] for r in recs)
    return med("step_seconds"), med("dp_wait_seconds"), last_loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="dtrain binary A")
    ap.add_argument("--b", required=True, help="dtrain binary B")
    ap.add_argument("--config", default="configs/bench/gpt-small.toml")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="extra --set for both")
    a = ap.parse_args()
    # 4 ranks, one thread each: dp 2 x pp 2, two chunks per stage, 4
    # micro-batches per step (the interleaved schedule needs a multiple of pp).
    sets = ["parallel.dp=2", "parallel.pp=2", "parallel.schedule=interleaved", "parallel.virtual_stages=2",
            "model.n_layer=8", "train.micro_batch=2", "train.grad_accum=4", "train.threads=1"] + a.set
    results = {"A": [], "B": []}
    for _ in range(a.rounds):
        for name, binary in (("A", a.a), ("B", a.b)):
            results[name].append(run(binary, a.config, 4, sets, a.steps, a.warmup))
    print(f"config {a.config} with {' '.join(sets)}; median of {a.rounds} rounds x {a.steps} steps "
          f"(after {a.warmup} warm-up steps)")
    print()
    print("| binary | step (median of rounds) | per-round steps | dp wait after the pipeline | last loss |")
    print("|---|---|---|---|---|")
    for name, binary in (("A", a.a), ("B", a.b)):
        rs = results[name]
        step = statistics.median(r[0] for r in rs)
        wait = statistics.median(r[1] for r in rs)
        losses = sorted({f"{r[2]:.9g}" for r in rs})
        print(f"| {name}: `{binary}` | {step * 1e3:.0f} ms | {' '.join(f'{r[0] * 1e3:.0f}' for r in rs)} ms "
              f"| {wait * 1e3:.1f} ms | {', '.join(losses)} |")


if __name__ == "__main__":
    main()
