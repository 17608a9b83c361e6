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
it on the same layout (rank 0's time for every rank to have read its part); with the largest rank
file and the largest rank's peak resident memory over each command. --dtrain runs another build
(an older commit's, for a side-by-side table).

Run from the repository root after building:
  python3 tools/bench/checkpoint_bench.py [--config configs/bench/gpt2-124m.toml] [--rounds 5]
      [--dir runs/checkpoint_bench] [--layouts 1x1x1,1x2x2,4x1x1z] [--e2e-rounds 2] [--e2e-only]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/checkpoint_bench"))
    ap.add_argument("--config", default="configs/bench/gpt2-124m.toml")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=os.path.join(ROOT, "runs/checkpoint_bench"))
    ap.add_argument("--dtrain", default=os.path.join(ROOT, "build/dtrain"))
    ap.add_argument("--layouts", default="1x1x1,1x2x2,4x1x1z",
                    help="DPxTPxPP[z[STAGE]][b] per end-to-end run, comma-separated: z ZeRO (stage 1 unless "
                         "given), b bf16; '' = none")
    ap.add_argument("--e2e-rounds", type=int, default=2)
    ap.add_argument("--e2e-only", action="store_true", help="skip the one-rank measurements")
    a = ap.parse_args()
    load_before = os.getloadavg()[0]
    if a.e2e_only:
        print(f"{a.config}; load average {load_before:.1f}")
        return end_to_end(a)
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


# Runs cmd; returns its stdout and the peak resident set of the largest process it started (a rank
# under mpirun: RUSAGE_CHILDREN counts every descendant waited for), measured by a wrapper process
# so that each command is counted alone. Local launches only: ranks on other nodes, or started by
# srun or a detached daemon, are not this process's descendants.
_PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
         "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
         "sys.exit(r.returncode)")


def run_peak(cmd):
    p = subprocess.run([sys.executable, "-c", _PEAK] + cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    kib = int(re.findall(r"peak_rss_kib (\d+)", p.stderr)[-1])
    return p.stdout, kib * 1024


def end_to_end(a):
    print("\nEnd to end (dtrain run: 1 step + final checkpoint; dtrain resume: load), median of "
          f"{a.e2e_rounds}; peak RSS: the largest rank's, whole command:\n")
    print("| layout | ranks | files | bytes | largest file | write | load | peak RSS run | peak RSS resume |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in filter(None, a.layouts.split(",")):
        # dp x tp x pp, then z<stage> for ZeRO (a bare z: ZeRO-1), and b for bf16.
        m = re.fullmatch(r"(\d+)x(\d+)x(\d+)(?:z(\d?))?(b?)", spec)
        if not m:
            raise SystemExit(f"--layouts: '{spec}' is not DPxTPxPP[z[STAGE]][b]")
        dp, tp, pp = int(m.group(1)), int(m.group(2)), int(m.group(3))
        zero = 0 if m.group(4) is None else int(m.group(4) or 1)
        bf16 = m.group(5) == "b"
        ranks = dp * tp * pp
        launch = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] if ranks > 1 else []
        sets = ["--set", f"parallel.dp={dp}", "--set", f"parallel.tp={tp}", "--set", f"parallel.pp={pp}",
                "--set", f"parallel.zero={zero}", "--set", f"train.precision={'bf16' if bf16 else 'fp32'}"]
        writes, loads, rss_run, rss_resume, largest = [], [], [], [], []
        for _ in range(a.e2e_rounds):
            out = os.path.join(a.dir, "e2e")
            shutil.rmtree(out, ignore_errors=True)
            log, rss = run_peak(launch + [a.dtrain, "run", a.config, "--out", out, "--set", "train.steps=1",
                                          "--set", "train.eval_every=0", "--set", "train.eval_batches=1"] + sets)
            rss_run.append(rss)
            m = re.search(r"checkpoint step 1 -> (\S+) \(([0-9.]+) (B|KiB|MiB|GiB|TiB) in ([0-9.]+) s\)", log)
            writes.append(float(m.group(4)))
            ck = m.group(1)
            h5 = [f for f in os.listdir(ck) if f.endswith(".h5")]
            files = len(h5)
            size = sum(os.path.getsize(os.path.join(ck, f)) for f in os.listdir(ck))
            largest.append(max(os.path.getsize(os.path.join(ck, f)) for f in h5 if f.startswith("rank_")))
            log, rss = run_peak(launch + [a.dtrain, "resume", ck])
            rss_resume.append(rss)
            loads.append(float(re.search(r"loaded in ([0-9.]+) s", log).group(1)))
        shutil.rmtree(os.path.join(a.dir, "e2e"), ignore_errors=True)
        name = f"dp={dp} tp={tp} pp={pp}" + (f" ZeRO-{zero}" if zero else "") + (" bf16" if bf16 else "")
        print(f"| {name} | {ranks} | {files} | {size / 1e9:.3f} GB | {statistics.median(largest) / 1e9:.3f} GB | "
              f"{statistics.median(writes):.2f} s | {statistics.median(loads):.2f} s | "
              f"{statistics.median(rss_run) / 1e9:.2f} GB | {statistics.median(rss_resume) / 1e9:.2f} GB |")


if __name__ == "__main__":
    main()
