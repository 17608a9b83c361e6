#!/usr/bin/env python3
"""Checkpoint cost on one rank: write and load time and bytes on disk for a model (default GPT-2
124M: configs/bench/gpt2-124m.toml, 124M parameters + AdamW m and v, fp32).

Runs build/checkpoint_bench for --rounds rounds and prints a markdown table of the medians:
write (checksums + HDF5 writes + fsync + rename), its phases, load from disk (page cache evicted
with posix_fadvise) and from the page cache (both include reading every piece and checking its
CRC-32), and the same bytes written and read with plain write()/read() as the disk's own baseline.
The model is built from the config; no training data is read (values come from the seeded init
and one AdamW update from random gradients).

Then, end to end through the binary on each --layouts entry (under mpirun when it has several
ranks): `dtrain run` for one step writes the final checkpoint (the time in its log line is rank
0's, from the start of the save until every rank agreed it is complete) and `dtrain resume` loads
it on the same layout (rank 0's time for every rank to have read its part).

Run from the repository root after building:
  python3 tools/bench/checkpoint_bench.py [--config configs/bench/gpt2-124m.toml] [--rounds 5]
      [--dir runs/checkpoint_bench] [--layouts 1x1x1,1x2x2,4x1x1z] [--e2e-rounds 2]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/checkpoint_bench"))
    ap.add_argument("--config", default="configs/bench/gpt2-124m.toml")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=os.path.join(ROOT, "runs/checkpoint_bench"))
    ap.add_argument("--dtrain", default=os.path.join(ROOT, "build/dtrain"))
    ap.add_argument("--layouts", default="1x1x1,1x2x2,4x1x1z",
                    help="dp x tp x pp per end-to-end run, comma-separated; a trailing z: ZeRO-1; '' = none")
    ap.add_argument("--e2e-rounds", type=int, default=2)
    a = ap.parse_args()
    load_before = os.getloadavg()[0]
    out = subprocess.run([a.binary, a.config, a.dir, str(a.rounds)], check=True, cwd=ROOT,
                         capture_output=True, text=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    gb = med["tensor_bytes"] / 1e9

    def line(what, key, rate=True):
        s = med[key]
        lo, hi = min(r[key] for r in rows), max(r[key] for r in rows)
        bw = f"{gb / s:.2f} GB/s" if rate and s > 0 else ""
        print(f"| {what} | {s:.2f} s | {lo:.2f} – {hi:.2f} s | {bw} |")

    print(f"{a.config}: {med['params'] / 1e6:.1f}M parameters; tensors {med['tensor_bytes'] / 1e9:.3f} GB "
          f"(parameters + AdamW m, v); files {med['file_bytes'] / 1e9:.3f} GB "
          f"({med['file_bytes'] - med['tensor_bytes']:.0f} bytes of HDF5 metadata); "
          f"1 rank, {int(med['threads'])} threads; {len(rows)} rounds; load average {load_before:.1f}\n")
    print("| what | median | range | rate |")
    print("|---|---|---|---|")
    line("write checkpoint (all)", "write_s")
    line("  checksums + finiteness", "checksum_phase_s")
    line("  HDF5 writes (rank file)", "hdf5_write_s")
    line("  fsync (rank file)", "fsync_s")
    line("load from disk (checked)", "load_cold_s")
    line("load from page cache (checked)", "load_warm_s")
    line("baseline: write() + fsync", "raw_write_s")
    line("baseline: read() from disk", "raw_read_s")
    line("CRC-32 of all tensors alone", "crc_s")
    if a.layouts:
        end_to_end(a)


def end_to_end(a):
    print("\nEnd to end (dtrain run: 1 step + final checkpoint; dtrain resume: load), median of "
          f"{a.e2e_rounds}:\n")
    print("| layout | ranks | files | bytes | write | load |")
    print("|---|---|---|---|---|---|")
    for spec in a.layouts.split(","):
        zero = spec.endswith("z")
        dp, tp, pp = (int(x) for x in spec.rstrip("z").split("x"))
        ranks = dp * tp * pp
        launch = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] if ranks > 1 else []
        sets = ["--set", f"parallel.dp={dp}", "--set", f"parallel.tp={tp}", "--set", f"parallel.pp={pp}",
                "--set", f"parallel.zero={1 if zero else 0}"]
        writes, loads = [], []
        for _ in range(a.e2e_rounds):
            out = os.path.join(a.dir, "e2e")
            shutil.rmtree(out, ignore_errors=True)
            log = subprocess.run(launch + [a.dtrain, "run", a.config, "--out", out, "--set", "train.steps=1",
                                           "--set", "train.eval_every=0", "--set", "train.eval_batches=1"]
                                 + sets, check=True, cwd=ROOT, capture_output=True, text=True).stdout
            m = re.search(r"checkpoint step 1 -> (\S+) \(([0-9.]+) (B|KiB|MiB|GiB|TiB) in ([0-9.]+) s\)", log)
            writes.append(float(m.group(4)))
            ck = m.group(1)
            files = len([f for f in os.listdir(ck) if f.endswith(".h5")])
            size = sum(os.path.getsize(os.path.join(ck, f)) for f in os.listdir(ck))
            log = subprocess.run(launch + [a.dtrain, "resume", ck], check=True, cwd=ROOT,
                                 capture_output=True, text=True).stdout
            loads.append(float(re.search(r"loaded in ([0-9.]+) s", log).group(1)))
        shutil.rmtree(os.path.join(a.dir, "e2e"), ignore_errors=True)
        name = f"dp={dp} tp={tp} pp={pp}" + (" ZeRO-1" if zero else "")
        print(f"| {name} | {ranks} | {files} | {size / 1e9:.3f} GB | {statistics.median(writes):.2f} s | "
              f"{statistics.median(loads):.2f} s |")


if __name__ == "__main__":
    main()
