#!/usr/bin/env python3
"""`dtrain tokenize` against Hugging Face's tokenizers.js (node) on the King
James Bible (data/kjv.txt, 4.3 MB), one tokenizer.json after another, side by
side: wall seconds (the median of --rounds, the tokenizer's loading included
for both), megabytes of text per second, and whether the ids are the same.
tokenizers.js runs the text whole, as one document; dtrain tokenize too, on
one thread, and then as its 2,378 paragraphs in a .jsonl file on every core
(each paragraph a document: its ids are not compared). LLaMA 2's
tokenizers.js runs take about two minutes each: --skip-slow-js leaves them
out.

    python3 tools/bench/tokenize_bench.py [--rounds 3] [--only llama3,gpt2]

Run after tools/setup.sh, on a quiet machine (no builds or tests beside it).
"""
import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
JS = os.path.join(ROOT, "tools", "hf_tokenize_js.mjs")  # tokenizers.js, the tests' reference


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def dtrain_ids(prefix):
    out = []
    for split in ("train", "val"):
        b = open(f"{prefix}_{split}.bin", "rb").read()
        magic, _, n = struct.unpack_from("<3i", b)
        out += struct.unpack_from("<%d%s" % (n, "I" if magic == 20240801 else "H"), b, 1024)
    return out[1:]  # the document's first id is the marker, which tokenizers.js does not add


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="llama3,llama2,gpt2,qwen2_5")
    ap.add_argument("--skip-slow-js", action="store_true", help="no tokenizers.js runs of LLaMA 2's")
    ap.add_argument("--dtrain", default=os.path.join(ROOT, "build", "dtrain"))
    args = ap.parse_args()
    text = os.path.join(ROOT, "data", "kjv.txt")
    mb = os.path.getsize(text) / 1e6
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = os.path.join(tmp, "kjv.jsonl")
        with open(jsonl, "w") as f:
            for para in open(text, encoding="utf-8").read().split("\n\n"):
                if para.strip():
                    f.write(json.dumps({"text": para}) + "\n")
        for name in args.only.split(","):
            d = os.path.join(ROOT, "data", "tokenizers", name)
            runs = {"dtrain, one document, 1 thread": [], "dtrain, paragraphs (.jsonl), all cores": [],
                    "tokenizers.js, one document": []}
            same = "-"
            for _ in range(args.rounds):
                for label, source, threads in (("dtrain, one document, 1 thread", text, "1"),
                                               ("dtrain, paragraphs (.jsonl), all cores", jsonl, "0")):
                    runs[label].append(timed([args.dtrain, "tokenize", source, "--tokenizer", "hf", "--tokenizer-dir",
                                              d, "--out", f"{tmp}/{name}" + ("" if source == text else "_docs"),
                                              "--threads", threads]))
                if name == "llama2" and args.skip_slow_js:
                    continue
                js_out = f"{tmp}/{name}.js.bin"
                runs["tokenizers.js, one document"].append(timed(["node", JS, d, js_out, "--int32", text]))
                js = list(struct.unpack("<%di" % (os.path.getsize(js_out) // 4), open(js_out, "rb").read()))
                same = "yes" if js == dtrain_ids(f"{tmp}/{name}") else "NO"
            for label, times in runs.items():
                if times:
                    s = statistics.median(times)
                    rows.append((name, label, s, mb / s, same))
    print(f"# {cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, "
          f"{mb:.1f} MB of text, median of {args.rounds}")
    print(f"| tokenizer | program | seconds | MB/s | same ids |")
    print(f"|---|---|---|---|---|")
    for name, label, s, rate, same in rows:
        print(f"| {name} | {label} | {s:.2f} | {rate:.2f} | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
