#!/usr/bin/env python3
"""Start-up time of dtrain commands that need no training: the median wall
time of N runs of each (default 10), for tools/bench/startup_results.md.

  tools/bench/startup_bench.py [--dtrain build/dtrain] [--runs 10] [--config configs/gpt.toml]
"""
import argparse
import statistics
import subprocess
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtrain", default="build/dtrain")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--config", default="configs/gpt.toml")
    a = ap.parse_args()
    commands = {
        "dtrain --help": [a.dtrain, "--help"],
        f"dtrain validate {a.config}": [a.dtrain, "validate", a.config],
        f"dtrain plan {a.config} --devices 8": [a.dtrain, "plan", a.config, "--devices", "8"],
    }
    for name, argv in commands.items():
        times = []
        for _ in range(a.runs):
            t = time.perf_counter()
            r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t)
            if r.returncode != 0:
                raise SystemExit(f"{name}: exit {r.returncode}")
        print(f"{name}: median {1e3 * statistics.median(times):.0f} ms "
              f"(min {1e3 * min(times):.0f}, max {1e3 * max(times):.0f}, {a.runs} runs)")


if __name__ == "__main__":
    main()
