#!/usr/bin/env python3
"""Measured pipeline bubble of 1F1B against interleaved 1F1B.

Runs `dtrain profile` under `mpirun -np P` with parallel.pp=P for each
micro-batch count m (train.grad_accum) and each schedule (1f1b, and
interleaved with v model chunks per stage), and prints a markdown table of
the bubble each stage measured -- time blocked on pipeline receives and send
completion / the stage's own forward + backward time (profile.json's
stages[].bubble_vs_compute) -- beside the ideal (p-1)/m and (p-1)/(v m).

The model: a byte-level GPT (vocabulary 256, so the head does not dominate a
stage) with n_layer blocks, one thread per rank, so each stage's compute is
its blocks' matrix products. Schedules alternate --rounds times so drifting
load on a shared machine hits both; the table shows the median round.

Run from the repository root after building build/dtrain:
  python3 tools/bench/bench_bubble.py [--ranks 4] [--micro 4 8] [--v 2] [--rounds 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]

CONFIG = """
[model]
type = "gpt"
vocab_size = 256
context_length = {seq}
n_layer = {layers}
n_head = 4
n_embd = {width}
dropout = 0.0
[data]
train = "{data}_train.bin"
val = "{data}_val.bin"
[train]
steps = 100
seed = 1
micro_batch = {micro_batch}
seq_len = {seq}
eval_every = 0
eval_batches = 1
threads = 1
[optim]
name = "adamw"
lr = 1e-4
"""


def profile(a, cfg, work, ranks, sets):
    out = os.path.join(work, "prof")
    cmd = MPIRUN + ["-np", str(ranks), a.binary, "profile", cfg, "--steps", str(a.steps), "--warmup",
                    str(a.warmup), "--out", out, "--peak-gflops", "1"]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)
    p = json.load(open(os.path.join(out, "profile.json")))
    return p["step_ms"], [s["bubble_vs_compute"] for s in p["stages"]], p["stages"][0]["bubble_ideal"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/dtrain"))
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--micro", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--v", type=int, default=2)
    ap.add_argument("--layers", type=int, default=14)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    p = a.ranks
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "tok")
        subprocess.run(["python3", "tools/text_to_bin.py", "README.md", "--out", data], check=True, cwd=ROOT,
                       capture_output=True)
        cfg = os.path.join(work, "bubble.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(seq=a.seq, layers=a.layers, width=a.width, data=data, micro_batch=a.micro_batch))
        cases = []
        for m in a.micro:
            cases.append(("1f1b", m, [f"parallel.pp={p}", "parallel.schedule=1f1b", f"train.grad_accum={m}"]))
            cases.append((f"interleaved v={a.v}", m, [f"parallel.pp={p}", "parallel.schedule=interleaved",
                                                      f"parallel.virtual_stages={a.v}", f"train.grad_accum={m}"]))
        results = {i: [] for i in range(len(cases))}
        for _ in range(a.rounds):
            for i, (_, _, sets) in enumerate(cases):
                results[i].append(profile(a, cfg, work, p, sets))
    print(f"| schedule | p | m | ideal bubble | measured bubble, mean of stages | per stage | step |")
    print("|---|---|---|---|---|---|---|")
    for i, (name, m, _) in enumerate(cases):
        rounds = sorted(results[i], key=lambda r: statistics.mean(r[1]))
        step, stages, ideal = rounds[len(rounds) // 2]
        per = " / ".join(f"{100 * b:.0f}%" for b in stages)
        print(f"| {name} | {p} | {m} | {100 * ideal:.1f}% | {100 * statistics.mean(stages):.1f}% | {per} | "
              f"{step:.0f} ms |")


if __name__ == "__main__":
    main()
