#!/usr/bin/env python3
"""Calibrates the cpu-local hardware description: what `dtrain profile` will
do for any machine, done here by hand for this one.

  tools/bench/calibrate_cpu.py [--config configs/gpt.toml] [--ranks 4] [--rounds 3]

Measures, on this machine:
  - the sgemm peak of one core (build/sgemm_peak 1, best case);
  - the achieved FLOP rate, per-layer overhead and optimizer-update time of
    one process (one thread) training CONFIG, from three runs of the same
    model: micro-batch 16 x 1, 16 x 2 and 1 x 16 (step = m (2 L o + b F / R) + U);
  - all-reduce bandwidth among RANKS ranks (build/comm_bench);
  - the latency of a message between ranks that share cores: a rank that
    waits gives its core away and must be scheduled again when the message
    comes, which takes far longer than comm_bench's ranks polling in step.
    Measured as the extra time of 16 micro-batches over 1 through a 4-stage
    pipeline of a tiny model (no compute to speak of): 15 x 2 messages.
and prints a hardware TOML for RANKS one-thread ranks sharing the cores
(each computes at a whole core's rate while others wait; compute_units =
cores bounds them together), ready for --hardware or for the cpu-local
preset in lib/parallel/hardware.cpp. Each case's step time is the
fastest step (after each run's first) over --rounds interleaved rounds, and
the sgemm peak the best of three runs: other jobs on a shared machine only
ever add time, and the difference-based fit is sensitive to it.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, **kw).stdout


def sgemm_peak():
    best = 0.0
    for _ in range(3):
        out = run([os.path.join(BUILD, "sgemm_peak"), "1"])
        best = max([best] + [float(x) for x in re.findall(r"([\d.]+) GFLOP/s", out)])
    return best * 1e9


def step_time(config, mb, accum, steps, out, ranks=1, extra=()):
    launcher = MPIRUN + ["-np", str(ranks)] if ranks > 1 else []
    log = run(launcher + [os.path.join(BUILD, "dtrain"), "run", config, "--out", out,
               "--set", f"train.steps={steps}", "--set", "train.threads=1", "--set", "train.eval_every=0",
               "--set", "train.eval_batches=1", "--set", "optim.warmup_steps=1", "--set", "log.every=1000",
               "--set", f"train.micro_batch={mb}", "--set", f"train.grad_accum={accum}",
               "--set", "train.global_batch=0"] + [x for e in extra for x in ("--set", e)])
    flops = float(re.search(r"([\d.]+) GFLOP per step", log).group(1)) * 1e9
    params = float(re.search(r"([\d.]+)M parameters", log).group(1)) * 1e6
    secs = [json.loads(l)["step_seconds"] for l in open(os.path.join(out, "metrics.jsonl")) if "step_seconds" in l]
    return min(secs[1:]), flops, params


def comm(ranks):
    out = run(MPIRUN + ["-np", str(ranks), os.path.join(BUILD, "comm_bench"), "--quick"])
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] in ("4 B", "1 MiB"):
            rows[cells[0]] = float(cells[4].split()[0]) * 1e-6  # "dtrain on", seconds
    steps = 2 * (ranks - 1)
    alpha = rows["4 B"] / steps
    beta = 2 * (ranks - 1) / ranks * 2**20 / max(rows["1 MiB"] - steps * alpha, 1e-9)
    return alpha, beta


TINY = """
[model]
type = "gpt"
vocab_size = 256
context_length = 16
n_layer = 2
n_head = 2
n_embd = 32
[data]
train = "data/kjv_train.bin"
val = "data/kjv_val.bin"
[optim]
lr = 1e-3
"""


def wakeup_latency(ranks, rounds, steps, tmp):
    cfg = os.path.join(tmp, "tiny.toml")
    with open(cfg, "w") as f:
        f.write(TINY)
    pp = [f"parallel.pp={ranks}", "parallel.dp=1", "parallel.tp=1"]
    best = {}
    for _ in range(rounds):
        for mb, m in ((16, 1), (1, 16)):
            t = step_time(cfg, mb, m, steps, os.path.join(tmp, f"tiny{mb}"), ranks, pp)[0]
            best[mb] = min(best.get(mb, float("inf")), t)
    return max(best[1] - best[16], 0) / (15 * 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/gpt.toml")
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    cores = os.cpu_count()
    peak = sgemm_peak()
    cases = [(16, 1), (16, 2), (1, 16)]
    best = {c: float("inf") for c in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for mb, m in cases:
                t, flops, params = step_time(args.config, mb, m, args.steps, os.path.join(tmp, f"r{mb}_{m}"))
                best[(mb, m)] = min(best[(mb, m)], t)
                if (mb, m) == (16, 1):
                    flops_per_sample, nparams = flops / 16, params
        wake = wakeup_latency(args.ranks, args.rounds, args.steps, tmp)
    layers = int(re.search(r"n_layer\s*=\s*(\d+)", open(os.path.join(ROOT, args.config)).read()).group(1)) + 3
    t1, t2, t3 = best[(16, 1)], best[(16, 2)], best[(1, 16)]
    per16 = t2 - t1                       # one micro-batch of 16: 2 L o + 16 F / R
    update = max(t1 - per16, 1e-6)        # U: the optimizer step and the rest of the step
    per1 = (t3 - update) / 16             # one micro-batch of 1: 2 L o + F / R
    rate = 15 * flops_per_sample / max(per16 - per1, 1e-9)
    overhead = max(per1 - flops_per_sample / rate, 0) / (2 * layers)
    bandwidth = nparams * 36 / update     # AdamW: 28 bytes of update traffic + 2 x 4 (zeroing, norm)
    alpha, beta = comm(args.ranks)
    print(f"# measured: one core {peak / 1e9:.1f} GFLOP/s sgemm; one process achieved {rate / 1e9:.1f} GFLOP/s "
          f"(efficiency {rate / peak:.2f}), {overhead * 1e6:.0f} us per layer pass, update {update * 1e3:.1f} ms "
          f"for {nparams / 1e6:.2f}M parameters; {args.ranks} ranks: all-reduce {alpha * 1e6:.1f} us per ring step in step, "
          f"{beta / 1e9:.2f} GB/s, {wake * 1e6:.0f} us per message out of step; steps {t1:.4f} {t2:.4f} {t3:.4f} s; load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    print(f"""# dtrain hardware description (format: docs/planner.md)
name = "cpu-local"
description = "this {cores}-core CPU machine as {args.ranks} one-thread MPI ranks sharing its cores, over shared memory (tools/bench/calibrate_cpu.py)"

[device]
memory_gib = {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30 / args.ranks:.3g}
usable_memory_fraction = 0.8
peak_tflops_fp32 = {peak / 1e12:.4g}
peak_tflops_bf16 = 0
efficiency = {min(rate / peak, 1.0):.3g}
memory_bandwidth_gbs = {bandwidth / 1e9:.3g}
layer_overhead_us = {overhead * 1e6:.3g}

[node]
devices = {args.ranks}
overlap = 0.5
compute_units = {cores}

[intra]
bandwidth_gbs = {beta / 1e9:.3g}
latency_us = {max(alpha, wake) * 1e6:.3g}

[inter]
bandwidth_gbs = {beta / 1e9:.3g}
latency_us = {max(alpha, wake) * 1e6:.3g}""")


if __name__ == "__main__":
    main()
