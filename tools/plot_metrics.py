#!/usr/bin/env python3
"""Draws the loss curves of one or several dtrain runs into a PNG.

    python3 tools/plot_metrics.py runs/gpt -o loss.png
    python3 tools/plot_metrics.py runs/a runs/b runs/c -o compare.png

Each RUN_DIR is a run's output directory (log.out_dir): its metrics.jsonl
gives the training loss of every step and the evaluation loss (and accuracy
for classifiers) at each evaluation; its config.toml gives the items per
step (train.global_batch x train.seq_len tokens for a GPT, global_batch
images for a CNN), so the curves are drawn against steps (left) and against
tokens or images seen (right). Runs are overlaid, one colour each: training
loss as a thin line, evaluation loss as dots joined by a dashed line. Rows:
loss, then accuracy when a run has it. `dtrain run` calls this at the end
when log.plot = true (writing RUN_DIR/loss.png).

Needs matplotlib (Debian's python3-matplotlib; tools/setup.sh installs it).
"""
import argparse
import json
import os
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None


def fail(message):
    """Bad input: one line on stderr and exit 2, as dtrain's own commands."""
    print("plot_metrics: " + message, file=sys.stderr)
    sys.exit(2)


def read_run(run_dir):
    # A run's directory, or its metrics.jsonl itself.
    if os.path.isfile(run_dir) and run_dir.endswith(".jsonl"):
        path, run_dir = run_dir, os.path.dirname(run_dir) or "."
    else:
        path = os.path.join(run_dir, "metrics.jsonl")
    train, evals = [], []
    def number(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        fail("%s: not UTF-8 text (byte %d)" % (path, e.start))
    except OSError as e:
        fail("cannot read %s: %s" % (path, e.strerror))
    # A record without its newline at the end is one a run stopped while writing
    # (a kill, a full disk): left out, and said; dtrain resume repairs it.
    torn = len(lines) if lines and lines[-1].strip() else 0
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except ValueError:
            if n == torn:
                print("plot_metrics: %s:%d: the last record is cut short (the run stopped while writing it): "
                      "left out" % (path, n), file=sys.stderr)
                continue
            fail("%s:%d: not a JSON record" % (path, n))
        if not isinstance(r, dict):
            fail("%s:%d: not a JSON object" % (path, n))
        for key in ("step", "loss", "eval_loss", "eval_accuracy"):
            if key in r and r[key] is not None and not number(r[key]):
                fail("%s:%d: %s is %s, not a number" % (path, n, key, json.dumps(r[key])[:40]))
        if "loss" in r and "step" in r:
            train.append((r["step"], r["loss"]))
        if "eval_loss" in r and "step" in r:
            evals.append((r["step"], r["eval_loss"], r.get("eval_accuracy")))
    items, unit = None, "items"
    cfg_path = os.path.join(run_dir, "config.toml")
    if tomllib and os.path.exists(cfg_path):
        with open(cfg_path, "rb") as f:
            cfg = tomllib.load(f)
        t = cfg.get("train", {})
        if cfg.get("model", {}).get("type", "gpt") == "gpt":
            items, unit = t.get("global_batch", 0) * t.get("seq_len", 0), "tokens"
        else:
            items, unit = t.get("global_batch", 0), "images"
    return {"name": os.path.basename(os.path.normpath(run_dir)), "train": train, "eval": evals,
            "items_per_step": items or None, "unit": unit}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Plot training and evaluation loss of dtrain runs.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run output directories (their metrics.jsonl), or metrics.jsonl files")
    parser.add_argument("-o", "--out", required=True, help="the PNG to write")
    parser.add_argument("--title", default=None, help="figure title (default: the run names)")
    args = parser.parse_args(argv)
    # The figure's format follows the name; a directory or an unknown extension fails now, in one line.
    if os.path.isdir(args.out):
        fail("-o %s: a directory; give the PNG's file name" % args.out)
    if os.path.splitext(args.out)[1].lower() not in (".png", ".svg", ".pdf"):
        fail("-o %s: expected a .png, .svg or .pdf file name" % args.out)

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        hint = ""
        if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and os.path.exists("/usr/bin/python3"):
            hint = f"; this is {sys.executable}: Debian's /usr/bin/python3 is the one it is installed for"
        raise SystemExit("plot_metrics: matplotlib is missing: apt-get install python3-matplotlib "
                         f"(tools/setup.sh installs it){hint}")

    runs = [read_run(d) for d in args.runs]
    if not any(r["train"] or r["eval"] for r in runs):
        fail("no loss records in %s" % ", ".join(args.runs))
    accuracy = any(a is not None for r in runs for (_, _, a) in r["eval"])
    rows = 2 if accuracy else 1
    fig, axes = plt.subplots(rows, 2, figsize=(12, 4.5 * rows), squeeze=False)
    units = sorted({r["unit"] for r in runs if r["items_per_step"]})
    xlabels = ["step", " / ".join(units) + " seen" if units else "items seen"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(runs):
        c = colours[i % len(colours)]
        for col in range(2):
            scale = 1 if col == 0 else r["items_per_step"]
            if scale is None:
                continue  # no config.toml: no tokens axis for this run
            ax = axes[0][col]
            if r["train"]:
                ax.plot([s * scale for s, _ in r["train"]], [l for _, l in r["train"]], color=c, lw=0.8,
                        alpha=0.8, label="%s train" % r["name"])
            if r["eval"]:
                ax.plot([s * scale for s, _, _ in r["eval"]], [l for _, l, _ in r["eval"]], color=c, ls="--",
                        marker="o", ms=4, label="%s eval" % r["name"])
            if accuracy:
                acc = [(s, a) for s, _, a in r["eval"] if a is not None]
                if acc:
                    axes[1][col].plot([s * scale for s, _ in acc], [100 * a for _, a in acc], color=c, ls="--",
                                      marker="o", ms=4, label="%s eval" % r["name"])
    for col in range(2):
        for row, ylabel in ((0, "loss"), (1, "accuracy (%)"))[:rows]:
            ax = axes[row][col]
            ax.set_ylabel(ylabel)
            ax.set_xlabel(xlabels[col])
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:  # a panel with no curve (no config.toml: no tokens axis) has none
                ax.legend(fontsize=8)
    fig.suptitle(args.title or ", ".join(r["name"] for r in runs))
    fig.tight_layout()
    out_dir = os.path.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    try:
        fig.savefig(args.out, dpi=100)
    except OSError as e:
        fail("cannot write %s: %s" % (args.out, e.strerror))
    print("wrote %s (%d run%s)" % (args.out, len(runs), "" if len(runs) == 1 else "s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
