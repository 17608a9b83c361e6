#!/usr/bin/env python3
"""What the planner's GPU presets assume, measured on the GPU at hand.

The cost model (lib/parallel/cost_model.cpp) times a bf16 matrix product whose
smallest dimension is x at `efficiency * peak * x / (x + gemm_half_dim)` and a
memory-bound pass at `memory_bandwidth`. This measures both on the device,
through cuBLAS (PyTorch's matmul: the library dtrain's cuBLASLt path calls),
on random data (zeros run about 13% faster on Hopper: less switching power):

  1. square products n^3, n = 256 .. 16384: the efficiency curve, fitted as
     1/rate = 1/(e peak) + h/(e peak x) (least squares in 1/x);
  2. the transformer layer's products of every Megatron-Core r0.8 H100 row
     (tests/parallel/megatron_core_test.cpp): tokens 4096 (micro-batch 1 x
     sequence 4096), QKV, projection, fc1, fc2 at tensor-parallel size t,
     each forward, input gradient and weight gradient, and the logits';
     per row the rate of all of them together, beside the preset's prediction;
  3. causal flash attention (SDPA), forward and backward, per row's heads;
  4. memory-bound passes: a copy, layer norm forward, GELU (tanh) forward.

  python3 tools/gpu/gemm_sweep.py [--peak-tflops 989] [--json out.json]

Prints a markdown table (tools/bench/results_gpu.md holds the committed one).
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F

# (billions, heads, hidden, layers, tp, pp): megatron_core_test.cpp's rows.
ROWS = [(1.7, 16, 2048, 24, 1, 1), (7.1, 32, 4096, 30, 2, 1), (16, 48, 6144, 32, 4, 1), (32, 56, 7168, 48, 8, 1),
        (70, 64, 8192, 84, 8, 2), (119, 80, 10240, 92, 8, 4), (177, 96, 12288, 96, 8, 6),
        (314, 128, 16384, 96, 8, 8), (462, 144, 18432, 112, 8, 16)]
SEQ, VOCAB = 4096, 131072


def timed(fn, reps):
    """Seconds per call of fn: the median over `reps` rounds, each as many
    back-to-back calls between two CUDA events as make about 2 ms (a single
    small product is shorter than its launch), after warm-up."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    inner = max(1, min(200, int(2e-3 / max(a.elapsed_time(b) / 1e3, 1e-7))))
    times = []
    for _ in range(reps):
        a.record()
        for _ in range(inner):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / inner)
    return statistics.median(times)


def warm_up(seconds=2.0):
    """Large products until the clocks have risen from idle (345 MHz seen
    idle, 1980 under load): the first sweep read 0.05 of peak at n = 1024
    from a cold start."""
    x = rand(8192, 8192)
    y = torch.empty_like(x)
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    while True:
        for _ in range(20):
            torch.matmul(x, x, out=y)
        end.record()
        end.synchronize()
        if start.elapsed_time(end) / 1e3 > seconds:
            return


def rand(*shape):
    return torch.randn(*shape, device="cuda", dtype=torch.bfloat16)


def gemm_seconds(m, n, k, reps=10):
    """[m, k] x [k, n] in bf16 (fp32 accumulation), seconds."""
    a, b = rand(m, k), rand(k, n)
    out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    return timed(lambda: torch.matmul(a, b, out=out), reps)


def layer_products(h, t, tokens):
    """(m, n, k) of one block's products on one tp rank: forward, input
    gradient, weight gradient of QKV, projection, fc1, fc2."""
    shapes = []
    for k, n in ((h, 3 * h // t), (h // t, h), (h, 4 * h // t), (4 * h // t, h)):
        shapes += [(tokens, n, k), (tokens, k, n), (k, n, tokens)]
    return shapes


def model_efficiency(x, e, half):
    return e * x / (x + half)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    ap.add_argument("--efficiency", type=float, default=0.8, help="the preset's, for the predicted column")
    ap.add_argument("--half-dim", type=float, default=183.1, help="the preset's gemm_half_dim (h200 183.1)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    peak = args.peak_tflops * 1e12
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "peak_tflops": args.peak_tflops}
    print(f"# {out['gpu']}, torch {out['torch']}, cuBLAS {torch.backends.cuda.preferred_blas_library()}")
    warm_up()

    # 1. Squares.
    print("\n| n (square, bf16) | TFLOP/s | of peak | preset predicts |")
    print("|---|---|---|---|")
    squares = []
    for n in (256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 16384):
        s = gemm_seconds(n, n, n, reps=9 if n <= 4096 else 5)
        rate = 2 * n ** 3 / s
        # Under ~30 us a call measures the host's dispatch (about 11 us per
        # torch.matmul on the H200 machine), not the GPU: left out of the fit.
        host_bound = s < 30e-6
        if not host_bound:
            squares.append((n, rate))
        print(f"| {n}{' (host-bound)' if host_bound else ''} | {rate / 1e12:.0f} | {rate / peak:.3f} | "
              f"{model_efficiency(n, args.efficiency, args.half_dim):.3f} |")
    # 1/rate = a + b/x, least squares; efficiency = 1/(a peak), half = b/a.
    xs, ys = [1 / n for n, _ in squares], [1 / r for _, r in squares]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    fit_e, fit_half = 1 / (a * peak), b / a
    print(f"\nfit over the squares: efficiency {fit_e:.3f}, gemm_half_dim {fit_half:.0f}")
    out["squares"] = [{"n": n, "tflops": r / 1e12} for n, r in squares]
    out["fit"] = {"efficiency": fit_e, "gemm_half_dim": fit_half}

    # 2-3. Each Megatron-Core row's block products and attention, one tp rank.
    print("\n| row | tp | block products TFLOP/s | of peak | preset predicts | logits of peak |"
          " flash attention fwd+bwd TFLOP/s | of peak |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for billions, heads, h, _, t, _ in ROWS:
        flops = secs = pred_secs = 0.0
        for m, n, k in layer_products(h, t, SEQ):
            s = gemm_seconds(m, n, k, reps=8)
            f = 2.0 * m * n * k
            flops, secs = flops + f, secs + s
            pred_secs += f / (peak * model_efficiency(min(m, n, k), args.efficiency, args.half_dim))
        logit = gemm_seconds(SEQ, VOCAB // t, h, reps=5)
        logit_rate = 2.0 * SEQ * VOCAB // t * h / logit
        # Attention of one sample: heads/t heads of 128 over 4096 tokens, causal.
        q, k_, v = (rand(1, heads // t, SEQ, h // heads).requires_grad_() for _ in range(3))
        g = rand(1, heads // t, SEQ, h // heads)

        def attn():
            o = F.scaled_dot_product_attention(q, k_, v, is_causal=True)
            o.backward(g)
        a_s = timed(attn, 5)
        # Counted causal: half of 2 products forward (4 s^2 d per head), 2.5x that backward.
        a_flops = 0.5 * 4 * SEQ * SEQ * (h // heads) * (heads // t) * 3.5
        rate, pred = flops / secs, flops / pred_secs
        rows.append({"billions": billions, "hidden": h, "tp": t, "block_tflops": rate / 1e12,
                     "predicted_tflops": pred / 1e12, "logits_tflops": logit_rate / 1e12,
                     "attention_tflops": a_flops / a_s / 1e12})
        print(f"| {billions}B | {t} | {rate / 1e12:.0f} | {rate / peak:.3f} | {pred / peak:.3f} | "
              f"{logit_rate / peak:.3f} | {a_flops / a_s / 1e12:.0f} | {a_flops / a_s / peak:.3f} |")
        del q, k_, v, g
    out["rows"] = rows

    # 4. Memory-bound passes: bytes read + written per second.
    n = 1 << 30  # 1 Gi elements of bf16: 2 GiB
    x = rand(n)
    y = torch.empty_like(x)
    copy = 2 * 2 * n / timed(lambda: y.copy_(x), 10)
    x2 = x.view(1 << 17, 1 << 13)
    w = torch.ones(1 << 13, device="cuda", dtype=torch.bfloat16)
    ln = 2 * 2 * n / timed(lambda: F.layer_norm(x2, (1 << 13,), w, w), 10)
    gelu = 2 * 2 * n / timed(lambda: F.gelu(x, approximate="tanh"), 10)
    print("\n| memory-bound pass, 2 GiB bf16 | GB/s (read + write) |")
    print("|---|---|")
    for name, r in (("copy", copy), ("layer norm forward", ln), ("GELU (tanh) forward", gelu)):
        print(f"| {name} | {r / 1e9:.0f} |")
    out["bandwidth_gbs"] = {"copy": copy / 1e9, "layer_norm": ln / 1e9, "gelu": gelu / 1e9}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
