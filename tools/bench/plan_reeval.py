#!/usr/bin/env python3
"""Re-rank recorded measurements with the current cost model.

Reads the step times plan_vs_measured.py recorded (tools/bench/plan_results.json:
the candidates it measured and their step times), asks `dtrain plan --json
--top 0 --runnable` for the current model's predictions of the same workload,
matches the measured candidates (dp, tp, pp, micro-batch size x count, ZeRO,
schedule; no recomputation, no sequence parallelism, as they ran), and prints
the Spearman rank correlations over the candidates and over the dp x tp x pp
layouts (each layout's predicted-fastest measured candidate), as
plan_vs_measured.py does. No training: it checks whether a model change keeps
the order that was measured, where the machine is too busy to measure again.
"""
import argparse
import json
import statistics
import subprocess
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from plan_vs_measured import spearman  # noqa: E402


def key(c):
    sched = c["schedule"] if c["pp"] > 1 else "1f1b"
    if sched == "interleaved":
        sched = f"il{c['virtual_stages']}"
    return (c["dp"], c["tp"], c["pp"], c["micro_batch"], c["micro_batches"], c["zero"], sched, c["recompute"],
            "sp" if c["sequence_parallel"] else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="tools/bench/plan_results.json")
    ap.add_argument("--dtrain", default="build/dtrain")
    ap.add_argument("--config", default="configs/gpt.toml")
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--hardware", default="cpu-local")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()

    rec = json.load(open(args.results))
    cmd = [args.dtrain, "plan", args.config, "--devices", str(args.ranks), "--hardware", args.hardware,
           "--json", "--top", "0", "--runnable", "--no-idle"]
    for s in args.set:
        cmd += ["--set", s]
    predicted = {}
    # GPipe is planned only when asked (never faster than 1F1B): a second plan for it.
    for extra in ([], ["--set", "parallel.schedule=gpipe"]):
        plan = json.loads(subprocess.run(cmd + extra, check=True, capture_output=True, text=True).stdout)
        for c in plan["feasible"]:
            predicted.setdefault(key(c), c["step_seconds"])
    rows = []
    for c, steps in zip(rec["measured"], rec["steps"]):
        k = key(c)
        if k not in predicted:
            print(f"not in the current plan: {k}", file=sys.stderr)
            continue
        rows.append((k, c["step_seconds"], predicted[k], statistics.median(steps)))
    old = spearman([r[1] for r in rows], [r[3] for r in rows])
    new = spearman([r[2] for r in rows], [r[3] for r in rows])
    layouts = {}
    for r in rows:
        lk = r[0][:3]
        if lk not in layouts or r[2] < layouts[lk][2]:
            layouts[lk] = r
    lr = list(layouts.values())
    print(f"command: {' '.join(cmd)} (and again with --set parallel.schedule=gpipe)")
    print(f"{len(rows)} measured candidates: Spearman (recorded prediction) {old:.2f}, (current model) {new:.2f}")
    print(f"{len(lr)} layouts (each one's current pick): Spearman {spearman([r[2] for r in lr], [r[3] for r in lr]):.2f}")
    print("| layout (dp tp pp, mb x m, ZeRO, schedule) | recorded prediction s | current prediction s | measured median s |")
    print("|---|---|---|---|")
    for r in sorted(rows, key=lambda r: r[2]):
        print(f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} |")


if __name__ == "__main__":
    main()
