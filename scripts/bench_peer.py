"""The PyTorch eager peer for benches/trainer.rs: the same models, optimizer, batch and
thread count, written the way a PyTorch user would. Prints steps/s as JSON.

usage: bench_peer.py mlp|transformer STEPS THREADS [--device DEVICE]

--device (default cpu): where the model, data and batches live, e.g. cuda for the
device check (scripts/device/check-device); `loss.item()` each step synchronises, as
phasetop's loss read does.
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, ff)
        self.out = nn.Linear(ff, d)

    def forward(self, x):
        b, t, d = x.shape
        dh = d // self.heads
        qkv = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        probs = (q @ k.transpose(-2, -1) / math.sqrt(dh)).softmax(-1)
        a = (probs @ v).transpose(1, 2).contiguous().view(b, t, d)
        x = x + self.proj(a)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Transformer(nn.Module):
    def __init__(self, vocab, seq, d, heads, ff, layers, classes):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(seq, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, heads, ff) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        h = self.tok(x) + self.pos
        for b in self.blocks:
            h = b(h)
        return self.head(self.ln(h[:, -1]))


def setup(kind, threads, device="cpu"):
    """The model, optimizer and data of `kind` on `device`; returns one training step."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if kind == "mlp":
        # benches/trainer.rs MLP: 32 → 128 → 128 → 128 → 8, relu, AdamW, batch 128.
        layers, d = [], 32
        for _ in range(3):
            layers += [nn.Linear(d, 128), nn.ReLU()]
            d = 128
        model = nn.Sequential(*layers, nn.Linear(d, 8))
        x_all = torch.randn(8192, 32)
        y_all = torch.randint(0, 8, (8192,))
        batch, lr, wd = 128, 0.002, 0.01
    else:
        # Modular addition p = 59, d_model 64, 4 heads, 1 layer, d_ff 256, batch 512.
        p = 59
        model = Transformer(p + 1, 3, 64, 4, 256, 1, p)
        x_all = torch.randint(0, p, (1392, 3))
        y_all = torch.randint(0, p, (1392,))
        batch, lr, wd = 512, 0.001, 1.0
    model, x_all, y_all = model.to(device), x_all.to(device), y_all.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    n = x_all.shape[0]

    def step():
        idx = torch.randint(0, n, (batch,), device=device)
        x, y = x_all[idx], y_all[idx]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def main():
    args, device = sys.argv[1:], "cpu"
    if "--device" in args:
        i = args.index("--device")
        device = args[i + 1]
        del args[i : i + 2]
    kind, steps, threads = args[0], int(args[1]), int(args[2])
    step = setup(kind, threads, device)
    for _ in range(20):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"kind": kind, "device": device, "steps_per_s": steps / dt}))


if __name__ == "__main__":
    main()
