#!/usr/bin/env python3
"""dtrain's bf16 matrix products against PyTorch's bf16 matmul, side by side in one run.

Each round runs build/bgemm_peak --tsv (fp32 sgemm and every bf16 path this CPU has, on every
GPT-2 124M, small-GPT, configs/gpt.toml and CNN product shape) and then PyTorch's bf16 matmul on
the same shapes and thread counts; rounds alternate so a shared machine's drifting load hits
both. Prints a markdown table of the median over rounds of each column's median GFLOP/s.

Run from the repository root after tools/setup.sh (PyTorch: Debian's /usr/bin/python3):
  /usr/bin/python3 tools/bench/bench_gemm_bf16.py [--threads 2] [--rounds 3] [--reps 5] [--cpu-time]
PyTorch's matmul returns bf16 for bf16 inputs (oneDNN, AMX where the CPU has it); dtrain writes a
bf16 C for the NT / NN products and accumulates an fp32 C for TN (weight gradients), as its layers
will. --cpu-time reports FLOPs over the process's CPU time (per busy core) for both.
"""
import argparse
import os
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_dtrain(binary, threads, reps, cpu_time):
    args = [binary, str(threads), str(reps), "--tsv"] + (["--cpu-time"] if cpu_time else [])
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout
    lines = out.strip().split("\n")
    header = lines[0].lstrip("#").split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    return header[7:], rows


def time_torch(torch, row, threads, reps, cpu_time):
    m, n, k = int(row["m"]), int(row["n"]), int(row["k"])
    op = row["op"]
    torch.set_num_threads(1 if row["single"] == "1" else threads)
    a = torch.rand(k if op[0] == "T" else m, m if op[0] == "T" else k).sub_(0.5).bfloat16()
    b = torch.rand(n if op[1] == "T" else k, k if op[1] == "T" else n).sub_(0.5).bfloat16()
    A = a.t() if op[0] == "T" else a
    B = b.t() if op[1] == "T" else b
    flops = 2.0 * m * n * k
    inner = max(1, int(2e8 / flops))
    clock = time.process_time if cpu_time else time.perf_counter
    torch.matmul(A, B)  # warm-up (oneDNN primitive creation)
    rates = []
    for _ in range(reps):
        t0 = clock()
        for _ in range(inner):
            torch.matmul(A, B)
        rates.append(flops * inner / (clock() - t0) / 1e9)
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cpu-time", action="store_true")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bgemm_peak"))
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    names, per_round = None, []
    for r in range(args.rounds):
        names, rows = run_dtrain(args.bin, args.threads, args.reps, args.cpu_time)
        for row in rows:
            row["torch bf16"] = time_torch(torch, row, args.threads, args.reps, args.cpu_time)
        per_round.append(rows)
    cols = ["fp32"] + names + ["torch bf16"]
    print(f"threads {args.threads}, {args.rounds} rounds x {args.reps} reps, median GFLOP/s"
          + (" per busy core (CPU time)" if args.cpu_time else " (wall clock)")
          + f"; torch {torch.__version__}")
    print()
    print("| case | op | m | n | k | " + " | ".join(cols) + " | best bf16 / fp32 | best bf16 / torch |")
    print("|---|---|---:|---:|---:|" + "---:|" * (len(cols) + 2))
    for i, row in enumerate(per_round[0]):
        med = {c: statistics.median(float(rs[i][c]) for rs in per_round) for c in cols}
        best = max(med[c] for c in names)
        cells = " | ".join(f"{med[c]:.0f}" for c in cols)
        print(f"| {row['case']} | {row['op']} | {row['m']} | {row['n']} | {row['k']} | {cells} | "
              f"{best / med['fp32']:.2f}x | {best / med['torch bf16']:.2f}x |")


if __name__ == "__main__":
    main()
