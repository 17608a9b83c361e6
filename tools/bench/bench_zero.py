#!/usr/bin/env python3
"""Bytes moved per step by each ZeRO stage against the formulas, and how much
of each collective was hidden behind compute.

Runs `dtrain profile` under mpirun for parallel.zero = 0, 1, 2, 3 on dp = 2 and 4
(a GPT of 8 blocks, width 256, vocabulary 512: gradients of every block are
what ZeRO moves) and reads each run's trace.json:
  - per collective kind on the dp group: payload bytes per step per rank and
    the bytes a ring implementation sends for it (all-reduce 2(d-1)/d x
    payload, reduce-scatter and all-gather (d-1)/d x payload);
  - the formulas, with P the parameters x 4 bytes and m micro-batches:
    ZeRO-0 all-reduce 2(d-1)/d P; ZeRO-1 reduce-scatter (d-1)/d P plus
    all-gather (d-1)/d P (the same total); ZeRO-2 m reduce-scatters (every
    micro-batch) of every layer's gradients but the tied token embedding's
    (T: vocabulary x width x 4 bytes), whose step gradient is reduce-scattered
    once, plus the all-gather: (d-1)/d (m (P - T) + T + P); ZeRO-3 per
    micro-batch every layer's parameters gathered twice (forward, backward),
    the tied embedding once more for the head, and the gradients scattered
    as ZeRO-2's: (d-1)/d (2m P + m T + m (P - T) + T), about 1.5 m x plain
    dp's 2(d-1)/d P (the gathers an upper bound: a window still holding a
    layer's values is not gathered again, e.g. the head's and ln_f's between
    their forward and backward);
  - hidden: the share of each collective's time in flight (issue to
    completion) during which the rank was computing a layer's forward or
    backward (the rest was waited for or overlapped only other waiting);
  - measured gradient and parameter bytes per rank (profile.json's memory
    table, the cost model's prediction beside them).
Prints a markdown table. Run from the repository root:
  python3 tools/bench/bench_zero.py [--steps 4] [--micro-batches 2] [--stages 0,1,2,3]
"""
import argparse
import collections
import json
import os
import subprocess
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/bench/gpt-small.toml"
VOCAB = 512
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
COMPUTE = {"forward", "backward", "loss"}


def profile(binary, dp, zero, steps, micro_batches):
    with tempfile.TemporaryDirectory() as out:
        cmd = MPIRUN + ["-np", str(dp), binary, "profile", CONFIG, "--out", out,
                        "--steps", str(steps), "--warmup", "1"]
        for s in [f"model.vocab_size={VOCAB}", "model.n_layer=8", "train.threads=1", f"parallel.dp={dp}", f"parallel.zero={zero}",
                  f"train.grad_accum={micro_batches}", "parallel.bucket_mb=1"]:
            cmd += ["--set", s]
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)
        trace = json.load(open(os.path.join(out, "trace.json")))
        prof = json.load(open(os.path.join(out, "profile.json")))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    return events, prof


def overlap(a0, a1, spans):
    return sum(max(0.0, min(a1, s1) - max(a0, s0)) for s0, s1 in spans)


def summarize(events, steps, dp):
    """Per dp collective kind: payload bytes, ring bytes, busy ms and hidden share, per rank and step."""
    compute = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in COMPUTE:
            compute[e["pid"]].append((e["ts"], e["ts"] + e["dur"]))
    kinds = collections.defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])  # payload, ring, busy us, hidden us
    factor = {"all_reduce": 2.0 * (dp - 1) / dp, "reduce_scatter": (dp - 1) / dp, "all_gather": (dp - 1) / dp}
    for e in events:
        if e.get("ph") != "X" or e.get("cat") != "dp":
            continue
        kind = e["name"].split(" ", 1)[1]
        b = float(e.get("args", {}).get("bytes", 0))
        if b <= 64:  # the loss and norm scalars
            continue
        k = kinds[kind]
        k[0] += b
        k[1] += b * factor.get(kind, 1.0)
        k[2] += e["dur"]
        k[3] += overlap(e["ts"], e["ts"] + e["dur"], compute[e["pid"]])
    per = steps * dp
    return {kind: (v[0] / per, v[1] / per, v[2] / per / 1e3, v[3] / v[2] if v[2] else 0.0) for kind, v in kinds.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/dtrain"))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--micro-batches", type=int, default=2)
    ap.add_argument("--stages", default="0,1,2,3", help="ZeRO stages to run (0 first: it gives P)")
    a = ap.parse_args()
    m = a.micro_batches
    stages = [int(z) for z in a.stages.split(",")]
    with open(os.path.join(ROOT, CONFIG), "rb") as fh:
        T = VOCAB * tomllib.load(fh)["model"]["n_embd"] * 4.0  # the tied token embedding's bytes (fp32)
    print("| dp | ZeRO | collective | payload MiB/step | sent MiB/step (ring) | formula MiB/step | busy ms/step | hidden "
          "| grads MiB/rank (model) | params MiB/rank (model) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dp in (2, 4):
        P = plain = None
        for zero in stages:
            events, prof = profile(a.binary, dp, zero, a.steps, m)
            kinds = summarize(events, a.steps, dp)
            r0 = prof["ranks"][0]
            grads, pred = r0["grads_bytes"], r0["predicted"]["grads_bytes"]
            params, ppred = r0["params_bytes"], r0["predicted"]["params_bytes"]
            # P: the flat gradient buffer, from the ZeRO-0 all-reduce or ZeRO-1/2's gather of the updated parameters.
            if zero == 0:
                P = kinds.get("all_reduce", (0,))[0]
            elif zero in (1, 2):
                P = kinds.get("all_gather", (0,))[0]
            assert P, "run ZeRO-0, 1 or 2 before ZeRO-3 (P comes from them)"
            f = (dp - 1) / dp
            formula = {0: {"all_reduce": 2 * f * P},
                       1: {"reduce_scatter": f * P, "all_gather": f * P},
                       2: {"reduce_scatter": f * (m * (P - T) + T), "all_gather": f * P},
                       3: {"reduce_scatter": f * (m * (P - T) + T), "all_gather": m * f * (2 * P + T)}}[zero]
            total_sent = 0.0
            for kind in sorted(kinds):
                payload, sent, busy, hidden = kinds[kind]
                total_sent += sent
                want = formula.get(kind)
                print(f"| {dp} | {zero} | {kind} | {payload / 2**20:.2f} | {sent / 2**20:.2f} | "
                      f"{'-' if want is None else f'{want / 2**20:.2f}'} | {busy:.1f} | {100 * hidden:.0f}% | "
                      f"{grads / 2**20:.2f} ({pred / 2**20:.2f}) | {params / 2**20:.2f} ({ppred / 2**20:.2f}) |")
            if zero == 0:
                plain = total_sent
            ratio = f" ({total_sent / plain:.2f}x ZeRO-0)" if plain else ""
            print(f"| {dp} | {zero} | **total sent** | | {total_sent / 2**20:.2f}{ratio} | "
                  f"{sum(formula.values()) / 2**20:.2f} | | | | |")


if __name__ == "__main__":
    main()
