#!/usr/bin/env python3
"""Memory and start-up of a training run on a large token corpus: the same
tokens as one file and as shards (a glob pattern), a few steps of
configs/gpt.toml each, side by side, alternating; prints a table of wall time
and peak RSS (GNU time). --baseline runs another dtrain binary on the one file
(one built before sharded corpora read the whole file into memory).

  tools/bench/data_bench.py [--dtrain build/dtrain] [--baseline OLD] [--tokens 500e6] [--shards 4]

Writes the corpus under --dir (default /tmp/dtrain_data_bench; 2 x tokens x 2
bytes) with numpy (Debian's python3-numpy: /usr/bin/python3).
"""
import argparse
import os
import re
import struct
import subprocess
import sys


def write_corpus(d, tokens, shards):
    import numpy as np
    os.makedirs(d, exist_ok=True)
    per = tokens // shards
    whole = os.path.join(d, "all.bin")
    if os.path.exists(whole) and os.path.getsize(whole) == 1024 + 2 * per * shards:
        return whole, os.path.join(d, "shard_*.bin")
    rng = np.random.default_rng(0)
    with open(whole, "wb") as out:
        out.write(struct.pack("<256i", 20240520, 1, per * shards, *([0] * 253)))
        for i in range(shards):
            t = rng.integers(0, 256, size=per, dtype=np.uint16).tobytes()
            with open(os.path.join(d, "shard_%03d.bin" % i), "wb") as f:
                f.write(struct.pack("<256i", 20240520, 1, per, *([0] * 253)))
                f.write(t)
            out.write(t)
    return whole, os.path.join(d, "shard_*.bin")


def run(binary, data, out):
    argv = ["/usr/bin/time", "-f", "%e %M", binary, "run", "configs/gpt.toml", "--set", "data.train=" + data,
            "--set", "train.steps=5", "--set", "optim.warmup_steps=0", "--set", "train.eval_every=1000",
            "--set", "checkpoint.every=0", "--set", "checkpoint.at_end=false", "--out", out]
    subprocess.run(["rm", "-rf", out], check=True)
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("%s: exit %d\n%s" % (" ".join(argv), r.returncode, r.stderr))
    wall, rss = re.findall(r"^([0-9.]+) ([0-9]+)$", r.stderr, re.M)[-1]
    return float(wall), int(rss) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtrain", default="build/dtrain")
    ap.add_argument("--baseline", default="")
    ap.add_argument("--tokens", type=float, default=500e6)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/dtrain_data_bench")
    a = ap.parse_args()
    whole, pattern = write_corpus(a.dir, int(a.tokens), a.shards)
    cases = [("this build, one file", a.dtrain, whole), ("this build, %d shards" % a.shards, a.dtrain, pattern)]
    if a.baseline:
        cases.insert(0, ("baseline, one file", a.baseline, whole))
    results = {name: [] for name, _, _ in cases}
    for _ in range(a.rounds):
        for name, binary, data in cases:
            results[name].append(run(binary, data, os.path.join(a.dir, "run")))
    print("| %d M tokens, 5 steps of gpt.toml | wall (s), each round | peak RSS (MiB) |" % (a.tokens / 1e6))
    print("|---|---|---|")
    for name, rs in results.items():
        print("| %s | %s | %.0f |" % (name, ", ".join("%.2f" % w for w, _ in rs), max(r for _, r in rs)))


if __name__ == "__main__":
    main()
