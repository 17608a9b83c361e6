#!/usr/bin/env python3
"""Checks the planner against this machine: asks `dtrain plan --runnable` for
every layout `dtrain run` could use on RANKS ranks, trains a few steps with
each one under mpirun, and compares the predicted step times with the
measured ones (table and Spearman rank correlation), as markdown.

  tools/bench/plan_vs_measured.py [--config configs/gpt.toml] [--ranks 4]
      [--hardware cpu-local|FILE] [--set train.global_batch=16 ...] [--rounds 3]
      [--steps 5] [--per-layout K] [--out tools/bench/plan_results.md]

--per-layout K measures, of each (dp, tp, pp) layout, only K of its variants
(micro-batch size x count, ZeRO stage, schedule): the one predicted fastest
and K - 1 more spread evenly over the rest in predicted order (0 = all).

Every layout runs once per round, the layouts in a different order each
round, so that other jobs on a shared machine slow them all alike; a
layout's measured time is the median of its steps over all rounds (each
run's first step left out), and its fastest step is reported beside it.
Also reported: the correlation per (dp, tp, pp) (the median over its
micro-batch, ZeRO and schedule variants), and the noise floor: pairs that
run the very same operations (one micro-batch: 1F1B and GPipe coincide)
measured apart, and the spread of each candidate's per-round medians. The
per-layout ordering compares, for each (dp, tp, pp), the variant predicted
fastest: its predicted and its measured time (what the planner would choose
within that layout). The raw step times go to OUT with .json for .md.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DTRAIN = os.path.join(ROOT, "build", "dtrain")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def ranks_of(values):
    """Ranks 1..n, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks_of(a), ranks_of(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb)


def layout_sets(c):
    sets = [f"parallel.dp={c['dp']}", f"parallel.tp={c['tp']}", f"parallel.pp={c['pp']}",
            f"parallel.zero={c['zero']}", f"parallel.schedule={c['schedule']}",
            f"train.micro_batch={c['micro_batch']}", f"train.grad_accum={c['micro_batches']}",
            f"train.recompute={c.get('recompute', 'none')}",
            f"parallel.sequence_parallel={'true' if c.get('sequence_parallel') else 'false'}"]
    if c["schedule"] == "interleaved":
        sets.append(f"parallel.virtual_stages={c['virtual_stages']}")
    return sets


def name(c):
    sched = c["schedule"] if c["pp"] > 1 else "-"
    if sched == "interleaved":
        sched = f"il{c['virtual_stages']}"
    extra = f" | {c.get('recompute', 'none')}" + (" sp" if c.get("sequence_parallel") else "")
    return f"dp={c['dp']} tp={c['tp']} pp={c['pp']} | {c['micro_batch']} x {c['micro_batches']} | {c['zero']} | {sched}{extra}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/gpt.toml")
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--hardware", default="cpu-local")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--per-layout", type=int, default=0)
    ap.add_argument("--out", default="tools/bench/plan_results.md")
    args = ap.parse_args()
    sets = [x for s in args.sets for x in ("--set", s)]

    plan = json.loads(subprocess.run(
        [DTRAIN, "plan", args.config, "--devices", str(args.ranks), "--hardware", args.hardware, "--runnable",
         "--json", "--top", "0"] + sets, check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    cands = plan["feasible"]
    total = len(cands)
    if args.per_layout > 0:
        by_layout = {}
        for c in cands:  # fastest first
            by_layout.setdefault((c["dp"], c["tp"], c["pp"]), []).append(c)
        keep = []
        for vs in by_layout.values():
            k = min(args.per_layout, len(vs))
            picks = {0} | {round(1 + j * (len(vs) - 2) / max(k - 2, 1)) for j in range(k - 1)} if k > 1 else {0}
            keep += [vs[i] for i in sorted(picks)][:k]
        cands = sorted(keep, key=lambda c: c["step_seconds"])
    print(f"{len(cands)} layouts to measure, {args.rounds} rounds", file=sys.stderr)
    best = [float("inf")] * len(cands)
    steps_seen = [[] for _ in cands]
    round_medians = [[] for _ in cands]
    loads = []
    load_start = os.getloadavg()
    t0 = time.time()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            order = list(range(len(cands)))
            rng.shuffle(order)
            for i in order:
                out = os.path.join(tmp, f"c{i}")
                cmd = MPIRUN + ["-np", str(args.ranks), DTRAIN, "run", args.config, "--out", out] + sets
                for s in layout_sets(cands[i]) + [f"train.steps={args.steps}", "train.threads=1", "train.eval_every=0",
                                                  "train.eval_batches=1", "optim.warmup_steps=1", "log.every=1000"]:
                    cmd += ["--set", s]
                subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
                secs = [json.loads(l)["step_seconds"] for l in open(os.path.join(out, "metrics.jsonl"))
                        if "step_seconds" in l][1:]
                steps_seen[i] += secs
                round_medians[i].append(sorted(secs)[len(secs) // 2])
                best[i] = min(best[i], min(secs))
            loads.append(os.getloadavg()[0])
            print(f"round {rnd + 1} done after {time.time() - t0:.0f} s, load {loads[-1]:.1f}", file=sys.stderr)
    load_end = os.getloadavg()
    predicted = [c["step_seconds"] for c in cands]
    median = [sorted(s)[len(s) // 2] for s in steps_seen]
    best_run = [min(r) for r in round_medians]  # the run whose ranks the scheduler placed best
    rho_best_run = spearman(predicted, best_run)
    slow_runs = sum(1 for r, b in zip(round_medians, best_run) for x in r if x > 1.5 * b)
    rho_best = spearman(predicted, best)
    rho_median = spearman(predicted, median)
    measured_rank = ranks_of(median)

    with open(os.path.join(ROOT, os.path.splitext(args.out)[0] + ".json"), "w") as f:
        json.dump({"plan": plan, "measured": cands, "steps": steps_seen, "round_medians": round_medians,
                   "loads": loads}, f)

    # Per (dp, tp, pp): the median over its variants, predicted and measured.
    groups = {}
    for i, c in enumerate(cands):
        groups.setdefault((c["dp"], c["tp"], c["pp"]), []).append(i)
    def mid(xs):
        xs = sorted(xs)
        return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2
    layouts = sorted(groups)
    first = {k: min(groups[k], key=lambda i: predicted[i]) for k in layouts}  # the planner's pick per layout
    lp = [predicted[first[k]] for k in layouts]
    lm = [median[first[k]] for k in layouts]
    rho_layout = spearman(lp, lm)
    lp_mid = [mid([predicted[i] for i in groups[k]]) for k in layouts]
    lm_mid = [mid([median[i] for i in groups[k]]) for k in layouts]
    rho_layout_mid = spearman(lp_mid, lm_mid)
    lm_best = [min(median[i] for i in groups[k]) for k in layouts]
    rho_layout_best = spearman(lp, lm_best)
    lb = [best_run[first[k]] for k in layouts]
    rho_layout_run = spearman(lp, lb)
    spreads = sorted(max(r) / min(r) for r in round_medians if len(r) > 1)
    spread_mid = mid(spreads) if spreads else 1.0
    ordered = sorted(lm)
    gaps = [b / a for a, b in zip(ordered, ordered[1:])]
    # Noise floor: identical operation sequences (pp > 1, one micro-batch, 1F1B vs GPipe).
    twins = []
    for i, c in enumerate(cands):
        for j, d in enumerate(cands):
            if i < j and c["micro_batches"] == 1 and c["pp"] > 1 and all(
                    c[k] == d[k] for k in ("dp", "tp", "pp", "micro_batch", "micro_batches", "zero")):
                twins.append(max(median[i], median[j]) / min(median[i], median[j]))

    hw = plan["hardware"]
    lines = [
        "# Planner vs measurement on this machine",
        "",
        "Made by:",
        "",
        "```sh",
        "tools/bench/plan_vs_measured.py " + " ".join(
            [f"--config {args.config}", f"--ranks {args.ranks}", f"--hardware {args.hardware}"] +
            [f"--set {s}" for s in args.sets] + [f"--rounds {args.rounds}", f"--steps {args.steps}"] +
            ([f"--per-layout {args.per_layout}"] if args.per_layout else [])),
        "```",
        "",
        (f"Every layout `dtrain plan --runnable` lists for {args.ranks} ranks ({len(cands)} of them"
         if len(cands) == total else
         f"Of the {total} layouts `dtrain plan --runnable` lists for {args.ranks} ranks, {len(cands)}: per (dp, tp, pp) "
         f"the variant predicted fastest" + (f" and up to {args.per_layout - 1} more spread over the rest in predicted order"
                                            if args.per_layout > 1 else "")) +
        f" (dp x tp x pp, micro-batch size x count, ZeRO stage, schedule), each trained for {args.steps} steps under "
        f"`mpirun -np {args.ranks}` (one thread per rank) in each of {args.rounds} rounds, in a different order each "
        f"round. Measured = the median step over all rounds (each run's first step left out); fastest = the fastest "
        f"step. Hardware description `{hw['name']}`: peak {hw['peak_fp32'] / 1e9:.1f} GFLOP/s per rank x efficiency "
        f"{hw['efficiency']:.2f}, links {hw['intra']['bandwidth'] / 1e9:.2f} GB/s and {hw['intra']['latency'] * 1e6:.0f} us, "
        f"overlap {hw['overlap']:.2f}, {hw['layer_overhead'] * 1e6:.0f} us per layer pass, {hw['devices_per_node']} "
        f"ranks sharing {hw.get('compute_units') or hw['devices_per_node']} compute units. "
        f"Load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end, after each round "
        f"{', '.join(f'{x:.1f}' for x in loads)} ({os.cpu_count()} cores, shared with other jobs); "
        f"{time.time() - t0:.0f} s in all.",
        "",
        f"**Per (dp, tp, pp) layout, Spearman {rho_layout:.3f}** over {len(layouts)} layouts (each layout's variant "
        f"predicted fastest: its predicted vs its measured median step; {rho_layout_run:.3f} against its best run's "
        f"median; vs the layout's fastest measured variant {rho_layout_best:.3f}; median over the measured variants, "
        f"predicted vs measured, {rho_layout_mid:.3f}).",
        "",
        f"**Over all {len(cands)} candidates, Spearman {rho_median:.3f}** (median step; against each candidate's best "
        f"run's median {rho_best_run:.3f}; against the fastest step {rho_best:.3f}); the predicted best is measured "
        f"#{measured_rank[0]:.0f} of {len(cands)}; the measured best is predicted "
        f"#{ranks_of(predicted)[median.index(min(median))]:.0f}.",
        "",
        f"Noise floor: a candidate's per-round medians lie {spread_mid:.2f}x apart (max / min; the median over "
        f"candidates, worst {spreads[-1] if spreads else 1:.2f}x)"
        + (f"; {len(twins)} pairs that run identical operations (one micro-batch, 1F1B vs GPipe) measured "
           f"{', '.join(f'{x:.2f}x' for x in twins)} apart" if twins else "")
        + f". {slow_runs} of {sum(len(r) for r in round_medians)} runs were slower than 1.5x their candidate's best "
        f"run (where ranks outnumber cores, the scheduler's placement of the ranks on cores persists through a run "
        f"and is sometimes a bad one)"
        + f". Neighbouring layouts in measured order lie {', '.join(f'{x:.2f}x' for x in gaps)} apart; predicted "
        f"times span {min(predicted):.3f}-{max(predicted):.3f} s.",
        "",
        "| layout | variants | predicted s (planner's variant) | measured s (same variant) | best run s (same variant) | measured s (fastest variant) | predicted s (median) | measured s (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ] + [f"| dp={k[0]} tp={k[1]} pp={k[2]} | {len(groups[k])} | {p:.4f} | {m:.4f} | {br:.4f} | {mb:.4f} | {pm:.4f} | {mm:.4f} |"
         for k, p, m, br, mb, pm, mm in sorted(zip(layouts, lp, lm, lb, lm_best, lp_mid, lm_mid), key=lambda x: x[1])] + [
        "",
        "Every candidate, in predicted order:",
        "",
        "| pred. # | layout (dp tp pp \\| mb x m \\| ZeRO \\| schedule) | predicted s | measured s | meas. # | per-round medians s | fastest s | measured / predicted |",
        "|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    for i, c in enumerate(cands):
        lines.append(f"| {i + 1} | {name(c)} | {predicted[i]:.4f} | {median[i]:.4f} | {measured_rank[i]:.0f} | "
                     f"{' '.join(f'{x:.3f}' for x in round_medians[i])} | {best[i]:.4f} | {median[i] / predicted[i]:.2f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, args.out), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
