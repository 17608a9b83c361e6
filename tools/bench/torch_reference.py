"""PyTorch reference models for the side-by-side CPU benchmark (tools/bench/bench_cpu.sh).

The same shapes as dtrain's configs: a GPT-2-style decoder (pre-LayerNorm,
causal attention, tanh-GELU MLP, tied head, AdamW), the same decoder with
LLaMA's parts (RMSNorm, SwiGLU, rotary embeddings, no biases, untied head:
`llama`, written as Hugging Face's modeling_llama.py computes it) and the
ResNet-style CNN (BasicBlocks with batch norm). Trains on random data for --steps after
--warmup steps and prints one JSON line with the measured throughput.

Run with Debian's torch: /usr/bin/python3 tools/bench/torch_reference.py gpt --layers 12 ...
On a GPU (tools/gpu/accept.sh): --device cuda --precision bf16 --compile --sdpa, the
nanoGPT recipe (autocast bf16, scaled_dot_product_attention(is_causal=True),
fused AdamW, torch.compile).
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def causal_attention(q, k, v):
    """softmax(q k^T / sqrt(d), causal) v over (b, heads, t, d); F.scaled_dot_product_attention under --sdpa."""
    if Block.sdpa:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.size(-2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    return att.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v


class Block(nn.Module):
    sdpa = False  # F.scaled_dot_product_attention (flash attention on a GPU)

    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.ln2 = nn.LayerNorm(c)
        self.fc = nn.Linear(c, 4 * c)
        self.fc_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = causal_attention(q, k, v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, ctx, layers, heads, c):
        super().__init__()
        self.wte = nn.Embedding(vocab, c)
        self.wpe = nn.Embedding(ctx, c)
        self.blocks = nn.ModuleList(Block(c, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(c)

    def forward(self, idx, targets):
        t = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


class RMSNorm(nn.Module):  # torch 1.13 has no nn.RMSNorm: modeling_llama.py's LlamaRMSNorm
    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, c, heads, hidden, kv_heads=0):
        super().__init__()
        self.heads = heads
        self.kv_heads = kv_heads or heads  # grouped-query attention below heads
        self.ln1 = RMSNorm(c)
        self.qkv = nn.Linear(c, c + 2 * (c // heads) * self.kv_heads, bias=False)
        self.proj = nn.Linear(c, c, bias=False)
        self.ln2 = RMSNorm(c)
        self.gate_up = nn.Linear(c, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, c, bias=False)

    def forward(self, x, cos, sin):
        b, t, c = x.shape
        d = c // self.heads
        q, k, v = self.qkv(self.ln1(x)).split([c, d * self.kv_heads, d * self.kv_heads], dim=2)
        q = q.view(b, t, self.heads, d).transpose(1, 2)
        k, v = (z.view(b, t, self.kv_heads, d).transpose(1, 2) for z in (k, v))
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if self.kv_heads != self.heads:  # modeling_llama.py's repeat_kv
            k, v = (z.repeat_interleave(self.heads // self.kv_heads, dim=1) for z in (k, v))
        y = causal_attention(q, k, v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.proj(y)
        gate, up = self.gate_up(self.ln2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class Llama(nn.Module):
    def __init__(self, vocab, layers, heads, c, hidden, theta=10000.0, kv_heads=0):
        super().__init__()
        self.wte = nn.Embedding(vocab, c)
        self.blocks = nn.ModuleList(LlamaBlock(c, heads, hidden, kv_heads) for _ in range(layers))
        self.ln_f = RMSNorm(c)
        self.head = nn.Linear(c, vocab, bias=False)
        d = c // heads
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))

    def forward(self, idx, targets):
        t = idx.size(1)
        freqs = torch.outer(torch.arange(t, dtype=torch.float32), self.inv_freq).to(idx.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x = self.wte(idx)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class CNN(nn.Module):
    def __init__(self, cin, stem, channels, blocks, classes):
        super().__init__()
        layers = [nn.Conv2d(cin, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()]
        c = stem
        for s, (cout, n) in enumerate(zip(channels, blocks)):
            for b in range(n):
                layers.append(BasicBlock(c, cout, 2 if (s > 0 and b == 0) else 1))
                c = cout
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x, targets):
        return F.cross_entropy(self.fc(self.body(x).mean(dim=(2, 3))), targets)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["gpt", "llama", "cnn"])
    ap.add_argument("--hidden", type=int, default=0, help="llama: the MLP's hidden width (0: 8/3 width, to 256)")
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=0, help="llama: key/value heads (grouped-query attention); 0: --heads")
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--image", type=int, default=28)
    ap.add_argument("--stem", type=int, default=16)
    ap.add_argument("--channels", default="16,32,64")
    ap.add_argument("--blocks", default="1,1,1")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: the step's forward under torch.autocast(device, dtype=torch.bfloat16)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--sdpa", action="store_true", help="attention by F.scaled_dot_product_attention")
    ap.add_argument("--peak-tflops", type=float, default=0,
                    help="the device's bf16 peak, to report MFU (6N + attention FLOPs per token, as dtrain)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    Block.sdpa = a.sdpa
    dev = torch.device(a.device)
    if a.model in ("gpt", "llama"):
        hidden = a.hidden or (8 * a.width // 3 + 255) // 256 * 256
        model = (GPT(a.vocab, a.ctx, a.layers, a.heads, a.width) if a.model == "gpt"
                 else Llama(a.vocab, a.layers, a.heads, a.width, hidden, kv_heads=a.kv_heads))
        x = torch.randint(0, 256, (a.batch, a.seq), device=dev)
        y = torch.randint(0, 256, (a.batch, a.seq), device=dev)
        items = a.batch * a.seq
    else:
        model = CNN(1, a.stem, [int(c) for c in a.channels.split(",")],
                    [int(b) for b in a.blocks.split(",")], 10)
        x = torch.randn(a.batch, 1, a.image, a.image, device=dev)
        y = torch.randint(0, 10, (a.batch,), device=dev)
        items = a.batch
    model = model.to(dev)
    params = sum(p.numel() for p in model.parameters())
    cuda = a.device == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, **({"fused": True} if cuda else {}))
    step_model = torch.compile(model) if a.compile else model
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = []
    for i in range(a.warmup + a.steps):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = step_model(x, y)
        loss.backward()
        opt.step()
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    mean = sum(times) / len(times)
    out = {"impl": "pytorch" + ("-compile" if a.compile else ""), "model": a.model, "device": a.device,
           "precision": a.precision, "step_seconds": mean, "items_per_second": items / mean, "params": params}
    if a.model in ("gpt", "llama"):
        # dtrain's count: 6 x (non-embedding + head) parameters + attention's 6 L T C per token (fwd + bwd).
        flops_per_token = 6 * params + 6 * a.layers * a.seq * a.width
        out["tflops"] = flops_per_token * items / mean / 1e12
        if a.peak_tflops > 0:
            out["mfu"] = out["tflops"] / a.peak_tflops
    if cuda:
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
