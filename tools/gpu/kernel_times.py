#!/usr/bin/env python3
"""Where a GPU step's time goes, kernel by kernel: Nsight Compute's raw CSV
(`ncu --metrics gpu__time_duration.sum --csv --page raw`) summed by kernel.

  python3 tools/gpu/kernel_times.py ncu.csv [--steps 2] [--top 30]

Prints a markdown table: per step, each kernel's launches, milliseconds and
share of the kernels' total, largest first. ncu runs each kernel alone
(serialised), so the total is the kernels' sum, without launch gaps or overlap.
"""
import argparse
import collections
import csv
import re

UNITS = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0, "s": 1e3, "second": 1e3}


def short(name):
    """A kernel's name without its argument list and long template arguments."""
    name = re.sub(r"\(.*$", "", name) if not name.startswith("void ") else re.sub(r"\(.*$", "", name[5:])
    return name if len(name) <= 90 else name[:87] + "..."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--steps", type=int, default=1, help="steps the profiled run took (the table is per step)")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    lines = open(args.csv, errors="replace").read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
    rows = list(csv.reader(lines[start:]))
    header, units = rows[0], rows[1]
    k_name, k_time = header.index("Kernel Name"), header.index("gpu__time_duration.sum")
    scale = UNITS.get(units[k_time], None)
    body = rows[2:] if scale is not None else rows[1:]
    if scale is None:
        scale = 1e-6  # ncu's default unit for durations: nanoseconds
    ms = collections.Counter()
    count = collections.Counter()
    for r in body:
        if len(r) <= max(k_name, k_time) or not r[k_time]:
            continue
        n = short(r[k_name])
        ms[n] += float(r[k_time].replace(",", "")) * scale
        count[n] += 1
    total = sum(ms.values())
    print(f"kernels: {sum(count.values())} launches, {total / args.steps:.2f} ms per step "
          f"(sum of kernel durations, {args.steps} step(s) profiled)\n")
    print("| kernel | launches per step | ms per step | share |")
    print("|---|---|---|---|")
    for n, t in ms.most_common(args.top):
        print(f"| `{n}` | {count[n] / args.steps:.0f} | {t / args.steps:.3f} | {100 * t / total:.1f}% |")


if __name__ == "__main__":
    main()
