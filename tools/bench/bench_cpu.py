#!/usr/bin/env python3
"""Side-by-side CPU training throughput: dtrain vs PyTorch, same shapes, same threads, fp32 and bf16.

For each case it alternates dtrain and PyTorch runs (--rounds times, so drifting load on a shared
machine hits both), takes the median step time after warm-up, and prints a markdown table with
the throughput ratio and dtrain's model FLOP utilisation against the sgemm ceiling (--peak,
GFLOP/s; measure it with build/sgemm_peak).

Run from the repository root after tools/setup.sh:
  python3 tools/bench/bench_cpu.py [--rounds 2] [--steps 8] [--warmup 2] [--threads 2]
--precisions fp32,bf16 runs each case in each precision (bf16: dtrain's train.precision = "bf16",
PyTorch's forward under torch.autocast("cpu", dtype=torch.bfloat16), as users run it), all in the
same alternating rounds, and adds dtrain's bf16 / fp32 speed-up.
With --baseline OTHER_DTRAIN an older build runs in the same rounds too, in each precision (a before/after column);
--baseline-env VAR=VALUE runs the baseline with that variable (e.g. --baseline build/dtrain
--baseline-env DTRAIN_CPU_GEMM=blas: the same binary on OpenBLAS's sgemm).
PyTorch runs with Debian's /usr/bin/python3, OMP_WAIT_POLICY=PASSIVE and glibc malloc tunables
(its best settings on this machine). dtrain runs with the same OMP_WAIT_POLICY=PASSIVE (--omp-env
to change it for both): libgomp's default spin-waiting is a few percent faster on an idle machine
but 2-3x slower on one shared with other jobs, and both programs share libgomp.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}  # both programs (--omp-env)
TORCH_ENV = {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"}

CASES = [
    # name, dtrain config, PyTorch reference arguments (same shapes), unit
    ("GPT-2 124M (12L, 768, V=50304), 4x64 tok", "configs/bench/gpt2-124m.toml",
     ["gpt", "--layers", "12", "--heads", "12", "--width", "768", "--batch", "4", "--seq", "64"], "tok/s"),
    ("LLaMA parts, GPT-2 124M shape (12L, 768, F=2048, V=50304), 4x64 tok", "configs/bench/llama-124m.toml",
     ["llama", "--layers", "12", "--heads", "12", "--width", "768", "--hidden", "2048", "--batch", "4", "--seq",
      "64"], "tok/s"),
    ("LLaMA parts + GQA (12 query, 4 key/value heads), GPT-2 124M shape, 4x64 tok", "configs/bench/llama-124m-gqa.toml",
     ["llama", "--layers", "12", "--heads", "12", "--kv-heads", "4", "--width", "768", "--hidden", "2048", "--batch",
      "4", "--seq", "64"], "tok/s"),
    ("GPT small (4L, 256, V=50304), 4x64 tok", "configs/bench/gpt-small.toml",
     ["gpt", "--layers", "4", "--heads", "4", "--width", "256", "--batch", "4", "--seq", "64"], "tok/s"),
    ("CNN MNIST (16-16-32-64), batch 64", "configs/cnn-mnist.toml",
     ["cnn", "--batch", "64", "--stem", "16", "--channels", "16,32,64", "--blocks", "1,1,1"], "img/s"),
]


def run_dtrain(binary, config, steps, warmup, threads, extra_env=None, precision="fp32"):
    with tempfile.TemporaryDirectory() as out:
        cmd = [binary, "run", config, "--out", out, "--set", f"train.steps={steps + warmup}",
               "--set", f"train.precision={precision}",
               "--set", f"train.threads={threads}", "--set", "train.eval_every=0",
               "--set", "train.eval_batches=1", "--set", "log.every=1000", "--set", "checkpoint.at_end=false",
               "--set", "optim.warmup_steps=0"]  # the CNN config warms up over more steps than run here
        run = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, **OMP_ENV, **(extra_env or {})),
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {run.stderr.strip()}")
        log = run.stdout
        gflop = float(re.search(r"([0-9.]+) GFLOP per step", log).group(1))
        recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
        times = [r["step_seconds"] for r in recs if "step_seconds" in r][warmup:]
        cfg = open(os.path.join(out, "config.toml")).read()
    batch = int(cfg.split("global_batch = ")[1].split("\n")[0])
    seq = int(cfg.split("seq_len = ")[1].split("\n")[0]) if "\nseq_len" in cfg else 1
    return statistics.median(times), batch * max(seq, 1), gflop


def run_torch(args, steps, warmup, threads, precision="fp32"):
    env = dict(os.environ, **OMP_ENV, **TORCH_ENV)
    cmd = ["/usr/bin/python3", os.path.join(ROOT, "tools/bench/torch_reference.py"), *args,
           "--steps", str(steps), "--warmup", str(warmup), "--threads", str(threads),
           "--precision", precision]
    out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["step_seconds"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/dtrain"))
    ap.add_argument("--baseline", default="", help="another dtrain binary to run in the same rounds")
    ap.add_argument("--baseline-env", action="append", default=[], metavar="VAR=VALUE",
                    help="environment of the baseline runs (repeatable)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peak", type=float, default=340.0, help="sgemm ceiling, GFLOP/s")
    ap.add_argument("--only", default="", help="substring of the case names to run")
    ap.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16 or both")
    ap.add_argument("--omp-env", default="OMP_WAIT_POLICY=PASSIVE",
                    help="OpenMP environment of both programs, e.g. 'OMP_WAIT_POLICY=ACTIVE' or ''")
    a = ap.parse_args()
    OMP_ENV.clear()
    OMP_ENV.update(kv.split("=", 1) for kv in a.omp_env.split() if "=" in kv)
    env_threads = {"OMP_NUM_THREADS": str(a.threads)}
    os.environ.update(env_threads)
    precisions = a.precisions.split(",")
    rows = []
    for name, config, targs, unit in CASES:
        if a.only and a.only not in name:
            continue
        try:
            for p in precisions:
                run_dtrain(a.binary, config, 1, 0, a.threads, precision=p)  # fails fast on a config problem
        except RuntimeError as e:
            print(f"{name}: skipped: {e}", file=sys.stderr)
            continue
        d_times = {p: [] for p in precisions}
        t_times = {p: [] for p in precisions}
        b_times = {p: [] for p in precisions}
        items = None
        gflop = 0.0
        for r in range(a.rounds):
            for p in precisions:  # alternate: each round runs every program in every precision
                dt, items, gflop = run_dtrain(a.binary, config, a.steps, a.warmup, a.threads, precision=p)
                d_times[p].append(dt)
                t_times[p].append(run_torch(targs, a.steps, a.warmup, a.threads, p))
                print(f"{name} {p}: round {r + 1}: dtrain {dt * 1e3:.0f} ms, pytorch {t_times[p][-1] * 1e3:.0f} ms per step",
                      file=sys.stderr)
                if a.baseline:  # the baseline build in the same precision, same round
                    b_env = dict(kv.split("=", 1) for kv in a.baseline_env)
                    b_times[p].append(run_dtrain(a.baseline, config, a.steps, a.warmup, a.threads, b_env,
                                                 precision=p)[0])
        for p in precisions:
            d, t = statistics.median(d_times[p]), statistics.median(t_times[p])
            vs32 = statistics.median(d_times["fp32"]) / d if "fp32" in precisions and p != "fp32" else None
            b = statistics.median(b_times[p]) if b_times[p] else None
            rows.append((f"{name}, {p}", items / d, items / t, t / d, unit, d, t, gflop / d / a.peak, b, vs32))
            print(f"{name} {p}: dtrain {items / d:.1f} {unit}, pytorch {items / t:.1f} {unit}", file=sys.stderr)
    base = " | baseline / PyTorch | baseline step" if a.baseline else ""
    print(f"| case | dtrain | PyTorch | dtrain / PyTorch | dtrain step | PyTorch step | dtrain MFU (vs {a.peak:.0f} GFLOP/s) | dtrain bf16 / fp32{base} |")
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if a.baseline else ""))
    for name, dr, tr, ratio, unit, d, t, mfu, b, vs32 in rows:
        extra = f" | {t / b:.2f}x | {b * 1e3:.0f} ms" if b else (" | | " if a.baseline else "")
        up = f"{vs32:.2f}x" if vs32 else ""
        print(f"| {name} | {dr:.1f} {unit} | {tr:.1f} {unit} | {ratio:.2f}x | {d * 1e3:.0f} ms | {t * 1e3:.0f} ms | {100 * mfu:.0f}% | {up}{extra} |")

if __name__ == "__main__":
    main()
