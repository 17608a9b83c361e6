#!/usr/bin/env python3
"""The hostile-input campaign of issue 14, re-run with one command.

    python3 tools/campaign.py [--dtrain build/dtrain] [--quick] [--only CAT ...] [--log FILE]

Tries, on the binary given (and on build/sanitize/dtrain when it exists, the
AddressSanitizer + UBSan build), every category of the issue and prints per
category: cases tried, crashes (a signal or exit 3), sanitizer reports, hangs
(past the timeout), silent loads of damaged state (exit 0 where the input was
damaged in a way dtrain can detect) and messages that do not name the file,
key or rank. Goal: 0 in every column but the first.

A command past its timeout is run once more by itself with twice the time
before it counts as a hang (the machines this runs on are shared: a loaded
one can make a healthy case slow); the retries are printed and counted.
Every finding, with its whole command and the end of its stderr, goes to
--log (default: dtrain-campaign-findings.txt in the temporary directory).

Categories:
  config    malformed configs and --set values, each through `validate` (and
            `run` for those validate passes);
  data      damaged token and IDX files (truncations, header fields, flipped
            bytes in headers, FIFOs) through `run`;
  ckpt      damaged checkpoints: byte flips over every file (master, rank
            files, manifest), truncations, h5py edits of shapes and dtypes with
            the CRC and manifest recomputed, a FIFO, another run's checkpoint
            copied in (as the newest, and named for a later step), through
            `inspect --verify` and `resume`;
  process   stop signals during setup and training, SIGKILL to mpirun, a
            stopped peer, a full disk, `| head`: the end-to-end scripts
            tests/apps/hostile_process.sh and hostile_disk.sh.
"""
import argparse, os, random, shutil, signal, struct, subprocess, sys, tempfile, time, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 60
RETRIES = []  # (command, seconds of the retry or 'hang'): the commands past their timeout once


class Tally:
    def __init__(self, name):
        self.name, self.cases, self.crashes, self.san, self.hangs, self.silent, self.unnamed = name, 0, 0, 0, 0, 0, 0
        self.t0 = self.last = time.time()
        self.examples = []  # every finding: (kind, case, the end of stderr)

    def note(self, kind, case, err):
        self.examples.append((kind, case, "\n".join(err.strip().splitlines()[-30:])))

    def progress(self, i, n):
        """Every minute: how far through its n inputs the category is, and a guess at the rest."""
        now = time.time()
        if now - self.last >= 60 and i:
            self.last = now
            spent = now - self.t0
            print(f"campaign: {self.name}: input {i} of {n}, {spent:.0f} s, about {spent * (n - i) / i:.0f} s left "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)

    def row(self):
        return f"{self.name:<22}{self.cases:>7}{self.crashes:>9}{self.san:>11}{self.hangs:>7}{self.silent:>8}{self.unnamed:>9}"


def run(cmd, env=None, timeout=TIMEOUT, cwd=None, scratch=()):
    """(exit code or 'hang', stderr). Past `timeout`, the command is run once more with twice
    the time (after removing the `scratch` directories the first try may have left) and is a
    hang only if that too runs out."""
    rc, err = run_once(cmd, env, timeout, cwd)
    if rc != "hang":
        return rc, err
    for d in scratch:
        shutil.rmtree(d, ignore_errors=True)
    t0 = time.time()
    rc, err = run_once(cmd, env, 2 * timeout, cwd)
    RETRIES.append((" ".join(cmd), "hang" if rc == "hang" else f"{time.time() - t0:.0f} s", os.getloadavg()))
    print(f"campaign: past {timeout} s, retried alone: {RETRIES[-1][1]} (load {RETRIES[-1][2][0]:.1f}): "
          f"{' '.join(cmd)[:300]}", flush=True)
    return rc, err


def run_once(cmd, env, timeout, cwd):
    e = dict(os.environ, OMP_NUM_THREADS="1", ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1",
             UBSAN_OPTIONS="print_stacktrace=1")
    if env:
        e.update(env)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=e, cwd=cwd, start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout)
        return p.returncode, err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return "hang", ""


def judge(t, case, rc, err, names, damaged=True):
    """Counts one case: rc from run(); `names`: what the message must mention
    (any of them); `damaged`: exit 0 would be a silent acceptance."""
    t.cases += 1
    if "AddressSanitizer" in err or "runtime error:" in err or "LeakSanitizer" in err:
        t.san += 1
        t.note("sanitizer", case, err)
    if rc == "hang":
        t.hangs += 1
        t.note("hang", case, err)
        return
    if rc < 0 or rc == 3 or rc >= 128:
        t.crashes += 1
        t.note(f"crash (exit {rc})", case, err)
        return
    if rc == 0:
        if damaged:
            t.silent += 1
            t.note("silent", case, err)
        return
    lines = [l for l in err.splitlines() if l.startswith("dtrain:")]
    if not lines or not any(n in err for n in names):
        t.unnamed += 1
        t.note("unnamed", case, err)


# ---------------------------------------------------------------- fixtures

def make_data(work):
    text = os.path.join(work, "text.txt")
    words = "the quick brown fox jumps over the lazy dog and then some more words follow here".split()
    with open(text, "w") as f:
        for i in range(3000):
            f.write(words[(i * 7) % len(words)] + (" " if i % 11 else ".\n"))
    subprocess.run([sys.executable, os.path.join(ROOT, "tools/text_to_bin.py"), text, "--out", os.path.join(work, "tok")],
                   check=True, stdout=subprocess.DEVNULL)
    cfg = os.path.join(work, "tiny.toml")
    with open(cfg, "w") as f:
        f.write(f"""[model]
type = "gpt"
vocab_size = 256
context_length = 16
n_layer = 2
n_head = 2
n_embd = 32
[data]
train = "{work}/tok_train.bin"
val = "{work}/tok_val.bin"
[train]
steps = 4
micro_batch = 4
grad_accum = 1
eval_every = 0
eval_batches = 2
threads = 1
[optim]
warmup_steps = 1
[log]
every = 10
""")
    return cfg


# ---------------------------------------------------------------- config

BAD_VALUES = ["-1", "0", "9223372036854775807", "9223372036854775808", "-9223372036854775809", "4611686018427387904",
              "2147483648", "1e10", "1e308", "-1e308", "nan", "inf", "-inf", "\"\"", "\"x\"", "\"a\\u0000b\"", "true",
              "[]", "[1, -1]", "[" * 100 + "]" * 100, "{a = 1}", "1979-05-27", "0x7fffffffffffffff", "1_000_000_000_000",
              "3.5", "\"" + "x" * 5000 + "\""]


def config_cases(cfg_text):
    keys = []
    out = subprocess.run([DTRAIN, "keys"], capture_output=True, text=True).stdout.splitlines()
    for line in out:
        w = line.split()
        if w and "." in w[0] and w[0].split(".")[0] in ("model", "data", "train", "optim", "parallel", "checkpoint", "log"):
            keys.append(w[0])
    cases = []
    for k in keys:
        for v in BAD_VALUES:
            cases.append(("set", k, v))
    for extra in ["x = " + "[" * 3000 + "]" * 3000, "x = " + "{a = " * 2000 + "1" + "}" * 2000, "[model]\n[model]",
                  "= 1", "[train]\nsteps = 1\nsteps = 2", "\xcf'", "[log]\nout_dir = '''", "a.b.c.d = 1",
                  "[[train]]", "[data]\ntrain = \"/dev/zero\"", "[data]\ntrain = \"/\"", "[model]\ntype = \"rnn\""]:
        cases.append(("file", extra, None))
    return cases


def campaign_config(t, work, cfg, quick):
    cfg_text = open(cfg).read()
    cases = config_cases(cfg_text)
    if quick:
        random.Random(1).shuffle(cases)
        cases = cases[:120]
    for i, (kind, a, b) in enumerate(cases):
        t.progress(i, len(cases))
        if kind == "set":
            key, value = a, b
            cmd = [DTRAIN, "validate", cfg, "--set", f"{key}={value}"]
            names = [key, "--set"]
        else:
            path = os.path.join(work, f"c{i}.toml")
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(cfg_text + "\n" + a + "\n")
            cmd = [DTRAIN, "validate", path]
            names = [path]
        rc, err = run(cmd, cwd=work)  # relative paths in values land in the scratch directory
        # Many values are valid for some keys: only a crash, hang or an unnamed refusal counts then.
        judge(t, " ".join(cmd[2:])[:120], rc, err, names, damaged=False)
        if rc == 0 and kind == "set" and not quick:
            # 2 steps: the fixture's optim.warmup_steps (1) must stay below train.steps, or every run
            # is refused by its own validation and none of these values reaches training.
            rc, err = run([DTRAIN, "run", cfg, "--set", f"{key}={value}", "--set", "train.steps=2", "--out",
                           os.path.join(work, "cr")], timeout=120, cwd=work, scratch=[os.path.join(work, "cr")])
            judge(t, f"run --set {key}={value}", rc, err, names + ["data", "checkpoint", "error"], damaged=False)
            shutil.rmtree(os.path.join(work, "cr"), ignore_errors=True)


# ---------------------------------------------------------------- data

def campaign_data(t, work, cfg, quick):
    good = open(os.path.join(work, "tok_train.bin"), "rb").read()
    variants = []
    for n in [0, 1, 4, 100, 1023, 1024, 1025, 1026, len(good) - 1]:
        variants.append((f"truncated to {n}", good[:n]))
    for field, values in [(0, [0, 1, -1, 20240521]), (1, [0, 2, -1, 1 << 30]), (2, [0, -1, 1, 1 << 31 - 1, 10 ** 9, len(good)])]:
        for v in values:
            b = bytearray(good)
            b[4 * field:4 * field + 4] = struct.pack("<i", v)
            variants.append((f"header[{field}] = {v}", bytes(b)))
    rng = random.Random(2)
    for _ in range(10 if quick else 60):
        b = bytearray(good)
        at = rng.randrange(0, 12)
        b[at] ^= 1 << rng.randrange(8)
        variants.append((f"flipped header byte {at}", bytes(b)))
    for i, (name, data) in enumerate(variants):
        t.progress(i, len(variants))
        path = os.path.join(work, "bad.bin")
        with open(path, "wb") as f:
            f.write(data)
        damaged = data != good
        # A flipped bit in a header's unused field or a count kept consistent is not damage dtrain can see.
        if damaged and len(data) == len(good) and data[12:] == good[12:] and data[:12] == good[:12]:
            damaged = False
        rc, err = run([DTRAIN, "run", cfg, "--set", f"data.train={path}", "--out", os.path.join(work, "dr")],
                      scratch=[os.path.join(work, "dr")])
        judge(t, f"token file {name}", rc, err, [path], damaged=damaged)
        shutil.rmtree(os.path.join(work, "dr"), ignore_errors=True)
    fifo = os.path.join(work, "fifo.bin")
    os.mkfifo(fifo)
    for key in ["data.train", "data.val"]:
        rc, err = run([DTRAIN, "run", cfg, "--set", f"{key}={fifo}", "--out", os.path.join(work, "dr")], timeout=30,
                      scratch=[os.path.join(work, "dr")])
        judge(t, f"{key} = FIFO", rc, err, [fifo])
    # IDX: the CNN on damaged images/labels headers.
    images = struct.pack(">IIII", 0x803, 8, 28, 28) + bytes(8 * 28 * 28)
    labels = struct.pack(">II", 0x801, 8) + bytes(range(8))
    cnn = os.path.join(work, "cnn.toml")
    def cnn_cfg(ti, tl):
        with open(cnn, "w") as f:
            f.write(f"""[model]\ntype = "cnn"\nchannels = [4]\nblocks = [1]\nstem_channels = 4\n[data]\n
train_images = "{ti}"\ntrain_labels = "{tl}"\nval_images = "{ti}"\nval_labels = "{tl}"\n
[train]\nsteps = 1\nmicro_batch = 4\neval_batches = 1\nthreads = 1\n""")
    idx_variants = [("truncated images", images[:50], labels), ("truncated labels", images, labels[:9]),
                    ("count mismatch", images, struct.pack(">II", 0x801, 9) + bytes(9)),
                    ("bad magic", struct.pack(">I", 0x804) + images[4:], labels),
                    ("dims overflow", struct.pack(">IIII", 0x803, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), labels),
                    ("label 200", images, labels[:8] + bytes([200]) + labels[9:]),
                    ("28x27 images", struct.pack(">IIII", 0x803, 8, 28, 27) + bytes(8 * 28 * 27), labels)]
    for name, im, lb in idx_variants:
        ip, lp = os.path.join(work, "im.idx"), os.path.join(work, "lb.idx")
        open(ip, "wb").write(im)
        open(lp, "wb").write(lb)
        cnn_cfg(ip, lp)
        rc, err = run([DTRAIN, "run", cnn, "--out", os.path.join(work, "ir")], scratch=[os.path.join(work, "ir")])
        judge(t, f"IDX {name}", rc, err, [ip, lp, "model.image_size", "model.num_classes"])
        shutil.rmtree(os.path.join(work, "ir"), ignore_errors=True)


# ---------------------------------------------------------------- checkpoints

def remanifest(d):
    lines = open(os.path.join(d, "manifest")).read().splitlines()
    out = []
    for l in lines[:-1]:
        if l.startswith("file "):
            name = l.split()[1]
            data = open(os.path.join(d, name), "rb").read()
            l = "file %s %d %08x" % (name, len(data), zlib.crc32(data))
        out.append(l)
    body = "\n".join(out) + "\n"
    open(os.path.join(d, "manifest"), "w").write(body + "crc32 %08x\n" % zlib.crc32(body.encode()))


def campaign_ckpt(t, work, cfg, quick):
    base = os.path.join(work, "ck")
    rc, err = run([DTRAIN, "run", cfg, "--set", "train.steps=4", "--set", "checkpoint.every=2", "--out", base], timeout=300)
    if rc != 0:
        print("campaign: could not write the checkpoints to damage:", err[-500:])
        return
    root = os.path.join(base, "checkpoints")
    newest = os.path.join(root, "step_00000004")
    pristine = os.path.join(work, "pristine")
    shutil.copytree(newest, pristine)
    rng = random.Random(3)
    cases = []
    for name in sorted(os.listdir(pristine)):
        size = os.path.getsize(os.path.join(pristine, name))
        for _ in range(8 if quick else 40):
            cases.append(("flip", name, rng.randrange(size)))
        for n in [0, size // 2, size - 1]:
            cases.append(("truncate", name, n))
    try:
        import h5py, numpy as np
        with h5py.File(os.path.join(pristine, "rank_00000.h5"), "r") as f:
            keys = f.attrs["tensors"].split()
        for key in keys[:: max(1, len(keys) // (4 if quick else 20))]:
            for how in ["fewer", "flat", "more", "f64", "transposed"]:
                cases.append(("edit", key, how))
        cases.append(("empty-list", "checkpoint.h5", None))
    except ImportError:
        print("campaign: no h5py, structural edits left out")
    cases.append(("fifo", "rank_00000.h5", None))
    # Another run's checkpoint copied in: as the newest (its name fits its step), and under a newer
    # name than its step (step 4's contents as step_00000005).
    other = os.path.join(work, "other")
    rc, err = run([DTRAIN, "run", cfg, "--set", "train.steps=4", "--set", "train.seed=7", "--out", other], timeout=300)
    if rc == 0:
        cases.append(("foreign", "step_00000004", os.path.join(other, "checkpoints", "step_00000004")))
        cases.append(("foreign-renamed", "step_00000005", os.path.join(other, "checkpoints", "step_00000004")))
    else:
        print("campaign: could not write another run's checkpoint:", err[-500:])
    for i, (kind, name, arg) in enumerate(cases):
        t.progress(i, len(cases))
        shutil.rmtree(os.path.join(root, "step_00000005"), ignore_errors=True)
        shutil.rmtree(newest)
        shutil.copytree(pristine, newest)
        path = os.path.join(newest, name)
        if kind == "flip":
            b = bytearray(open(path, "rb").read())
            b[arg] ^= 1 << rng.randrange(8)
            open(path, "wb").write(b)
        elif kind == "truncate":
            os.truncate(path, arg)
        elif kind == "foreign":
            shutil.rmtree(newest)
            shutil.copytree(arg, newest)
        elif kind == "foreign-renamed":
            shutil.copytree(arg, os.path.join(root, name))
        elif kind == "fifo":
            os.remove(path)
            os.mkfifo(path)
        elif kind == "empty-list":
            import h5py
            with h5py.File(path, "r+") as f:
                f.attrs["tensors"] = ""
            remanifest(newest)
        else:
            import h5py, numpy as np
            rp = os.path.join(newest, "rank_00000.h5")
            with h5py.File(rp, "r+") as f:
                d = f[name]; a = d[()]; attrs = dict(d.attrs)
                if arg == "fewer": a = a[: max(1, a.shape[0] // 2)]
                elif arg == "flat": a = a.reshape(-1)
                elif arg == "more": a = np.concatenate([a, a])
                elif arg == "f64": a = a.astype(np.float64)
                elif arg == "transposed": a = a.T.copy() if a.ndim == 2 and a.shape[0] != a.shape[1] else a[: a.shape[0] - 1]
                if a.shape == d.shape and a.dtype == d.dtype:  # e.g. a 1-d tensor "flattened": no change
                    a = a[: a.shape[0] - 1]
                del f[name]
                n = f.create_dataset(name, data=np.ascontiguousarray(a))
                for k, v in attrs.items(): n.attrs[k] = v
                n.attrs["crc32"] = np.uint32(zlib.crc32(np.ascontiguousarray(a).tobytes()))
            remanifest(newest)
        label = f"{kind} {name} {arg if arg is not None and not kind.startswith('foreign') else ''}"
        # inspect --verify on the damaged one: must refuse (exit 2), naming the file. (Another run's
        # checkpoint is sound by itself: only resuming this run's directory must pass it over.)
        if not kind.startswith("foreign"):
            rc, err = run([DTRAIN, "inspect", newest, "--verify"], timeout=60)
            judge(t, "inspect " + label, rc, err, [name, "manifest", "checkpoint.h5"])
        # resume from the directory: must fall back to step 2 (exit 0, saying so); a silent load is exit 0 from step 4.
        out = os.path.join(work, "res")
        rc, err = run([DTRAIN, "resume", root, "--out", out, "--set", "train.steps=5"], timeout=120, scratch=[out])
        t.cases += 1
        if rc == "hang":
            t.hangs += 1; t.note("hang", "resume " + label, err)
        elif rc != 0 and (rc < 0 or rc >= 128 or rc == 3):
            t.crashes += 1; t.note(f"crash (exit {rc})", "resume " + label, err)
        elif rc == 0 and "falling back" not in err:
            t.silent += 1; t.note("silent", "resume " + label, err)
        elif rc == 0 and not any(n in err for n in [name, "manifest"]):
            t.unnamed += 1; t.note("unnamed", "resume " + label, err)
        if "AddressSanitizer" in err or "runtime error:" in err:
            t.san += 1; t.note("sanitizer", "resume " + label, err)
        shutil.rmtree(out, ignore_errors=True)


# ---------------------------------------------------------------- process and disk

def campaign_process(t, work, cfg, quick):
    for script in ["hostile_process.sh", "hostile_disk.sh"]:
        rc, err = run(["bash", os.path.join(ROOT, "tests/apps", script)], timeout=600,
                      env={"DTRAIN": DTRAIN, "DTRAIN_SOURCE_DIR": ROOT})
        n = {"hostile_process.sh": 9, "hostile_disk.sh": 2}[script]  # the scenarios each script tries
        t.cases += n
        if rc == "hang":
            t.hangs += 1; t.note("hang", script, err)
        elif rc == 77:
            t.cases -= n; print(f"campaign: {script} skipped (needs root)")
        elif rc != 0:
            # the scripts fail on a crash, a hang past their limits or a wrong message
            t.crashes += 1; t.note(f"failed (exit {rc})", script, err)


def main():
    global DTRAIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtrain", default=os.path.join(ROOT, "build/dtrain"))
    ap.add_argument("--sanitized", default=os.path.join(ROOT, "build/sanitize/dtrain"),
                    help="the ASan + UBSan build, also run when it exists ('' to skip)")
    ap.add_argument("--quick", action="store_true", help="a sample of each category (a few minutes)")
    ap.add_argument("--only", nargs="*", default=["config", "data", "ckpt", "process"])
    ap.add_argument("--log", default=os.path.join(tempfile.gettempdir(), "dtrain-campaign-findings.txt"),
                    help="every finding with its command and stderr (default: in the temporary directory, not the "
                         "source tree)")
    args = ap.parse_args()
    print(f"campaign: {' '.join(sys.argv)} at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load {os.getloadavg()}",
          flush=True)
    binaries = [args.dtrain] + ([args.sanitized] if args.sanitized and os.path.exists(args.sanitized) else [])
    rows = []
    for binary in binaries:
        DTRAIN = os.path.abspath(binary)
        tag = "asan" if "sanitize" in binary else "release"
        for cat in args.only:
            work = tempfile.mkdtemp(prefix="dtrain-campaign-")
            try:
                cfg = make_data(work)
                t = Tally(f"{cat} ({tag})")
                t0 = time.time()
                {"config": campaign_config, "data": campaign_data, "ckpt": campaign_ckpt, "process": campaign_process}[cat](
                    t, work, cfg, args.quick)
                rows.append(t)
                print(f"campaign: {t.name}: {t.cases} cases in {time.time() - t0:.0f} s", flush=True)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'category':<22}{'cases':>7}{'crashes':>9}{'sanitizer':>11}{'hangs':>7}{'silent':>8}{'unnamed':>9}")
    for t in rows:
        print(t.row())
    total = [sum(getattr(t, f) for t in rows) for f in ("cases", "crashes", "san", "hangs", "silent", "unnamed")]
    print(f"{'total':<22}" + "".join(f"{v:>{w}}" for v, w in zip(total, (7, 9, 11, 7, 8, 9))))
    for t in rows:
        for kind, case, err in t.examples[:5]:
            print(f"  {t.name}: {kind}: {case}: {err.splitlines()[-1][:200] if err else ''}")
    print(f"commands past their timeout and retried: {len(RETRIES)}, of which hangs: "
          f"{sum(r[1] == 'hang' for r in RETRIES)}; load average at the end {os.getloadavg()}")
    with open(args.log, "w") as f:
        for t in rows:
            for kind, case, err in t.examples:
                f.write(f"== {t.name}: {kind}: {case}\n{err}\n\n")
        for cmd, took, load in RETRIES:
            f.write(f"== retried after a timeout ({took}, load {load}): {cmd}\n")
    print(f"findings: {args.log}")
    return 0 if sum(total[1:]) == 0 else 1


DTRAIN = None
if __name__ == "__main__":
    try:
        import h5py  # noqa: F401  (the structural checkpoint edits)
    except ImportError:
        if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    sys.exit(main())
