#!/usr/bin/env python3
"""Plain PyTorch versions of phasetop's built-in models (MLP, with or without a token
embedding; the pre-norm transformer), trained on the batches phasetop drew from the
weights phasetop initialised, to compare loss curves step for step.

    cargo run --release --example reference -- CONFIG.toml OUT [STEPS]
    python scripts/reference/train.py CONFIG.toml OUT [--steps N] [--weights FILE]

OUT holds what the example (or tests/reference.rs) wrote: `init.safetensors` (the
initial weights as `init.<name>`; a checkpoint `runs/<id>/checkpoints/step-*.safetensors`
has the same keys and can be passed as --weights) and `batches.safetensors` (`x`, `y`:
one batch per step). The config's first phase gives the optimizer (sgd, adam, adamw;
constant schedule, with an optional linear `warmup_steps`, or `schedule = "warmup"`) and
its loss terms (ce, mse, hinge, l2). Prints JSON: {"losses": [...], "train_acc": [...]}
— the training loss and batch accuracy at each step, before that step's update, as
phasetop's `train_loss` and `train_acc`. With --eval-every N it also scores the
held-out split in OUT/heldout.safetensors after every N-th step and after the last,
as phasetop's evals do: "evals": [[step, val_loss, val_acc], ...].

The models are written as a PyTorch user would write them (nn.Linear, nn.Embedding,
nn.LayerNorm, F.cross_entropy, torch.optim), with module names that give the same
parameter names as phasetop's, so the weights load with load_state_dict(strict=True).
Only the task's data comes from phasetop: its generators (ChaCha streams keyed by seed
and step) would have to be re-implemented bit for bit otherwise.
"""
import argparse
import json
import math
import sys
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    """The safetensors format: an 8-byte little-endian header length, a JSON header
    (dtype, shape, byte offsets of each tensor), then the raw bytes."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf = bytearray(data[base + start : base + end])
        t = torch.frombuffer(buf, dtype=dtypes[info["dtype"]]) if buf else torch.empty(0, dtype=dtypes[info["dtype"]])
        out[key] = t.reshape(info["shape"])
    return out


ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}


class TokenEmbedding(nn.Module):
    def __init__(self, vocab, width, positions, shared):
        super().__init__()
        self.shared = shared
        if shared:
            self.tok = nn.Embedding(vocab, width)
        else:
            for i in range(positions):
                setattr(self, f"tok{i}", nn.Embedding(vocab, width))
        self.positions = positions

    def forward(self, x):
        if self.shared:
            return self.tok(x).flatten(1)
        return torch.cat([getattr(self, f"tok{i}")(x[:, i]) for i in range(self.positions)], 1)


class MLP(nn.Module):
    def __init__(self, m, in_dim, classes, tokens=None):
        super().__init__()
        width, depth = m.get("width", 128), m.get("depth", 2)
        self.act = ACTIVATIONS[m.get("activation", "relu")]
        if tokens is not None:
            vocab, positions = tokens
            self.embed = TokenEmbedding(vocab, m["embed"], positions, m.get("embed_shared", True))
            in_dim = positions * m["embed"]
        else:
            self.embed = None
        dims = [in_dim] + [width] * depth
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x):
        h = x if self.embed is None else self.embed(x)
        for layer in self.mlp:
            h = self.act(layer(h))
        return self.head(h)


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape
        dh = d // self.heads
        qkv = self.qkv(x).view(b, t, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        probs = (q @ k.transpose(-2, -1) / math.sqrt(dh)).softmax(-1)
        return self.proj((probs @ v).transpose(1, 2).contiguous().view(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc = nn.Linear(d, ff)
        self.out = nn.Linear(ff, d)

    def forward(self, x):
        return self.out(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.attn = Attention(d, heads)
        self.mlp = FeedForward(d, ff)

    def forward(self, h):
        h = h + self.attn(self.attn.ln(h))
        return h + self.mlp(self.mlp.ln(h))


class Embed(nn.Module):
    def __init__(self, vocab, d, seq_len, positional):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(seq_len, d)) if positional else None

    def forward(self, x):
        h = self.tok(x)
        return h + self.pos if self.pos is not None else h


class Head(nn.Module):
    def __init__(self, d, classes):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.out = nn.Linear(d, classes)


class Transformer(nn.Module):
    """Pre-norm, no mask, the prediction read at the last position (`=`)."""

    def __init__(self, m, vocab, seq_len, classes):
        super().__init__()
        d = m.get("d_model", 128)
        self.embed = Embed(vocab, d, seq_len, m.get("positional", True))
        self.block = nn.ModuleList(
            Block(d, m.get("heads", 4), m.get("d_ff", 4 * d)) for _ in range(m.get("layers", 1))
        )
        self.head = Head(d, classes)

    def forward(self, x):
        h = self.embed(x)
        for b in self.block:
            h = b(h)
        return self.head.out(self.head.ln(h[:, -1]))


def classes_of(task):
    kind = task["kind"]
    if kind == "modular":
        return task.get("p", 97)
    if kind == "parity":
        return 2
    if kind == "gaussian":
        return task.get("classes", 4)
    sys.exit(f"task kind {kind!r}: the reference covers the built-in tasks (modular, parity, gaussian)")


def build_model(cfg, x):
    task, m = cfg["task"], cfg["model"]
    classes = classes_of(task)
    if m["kind"] == "transformer":
        return Transformer(m, task.get("p", 97) + 1, x.shape[2], classes)
    if "embed" in m:
        return MLP(m, None, classes, tokens=(task.get("p", 97), x.shape[2]))
    return MLP(m, x.shape[2], classes)


def make_optimizer(phase, params):
    kind, lr = phase["optimizer"], phase["lr"]
    wd = phase.get("weight_decay", 0.0)
    if phase.get("schedule", "constant") not in ("constant", "warmup"):
        sys.exit("the reference covers constant learning rates (with an optional warmup)")
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=phase.get("momentum", 0.0), weight_decay=wd, foreach=False)
    betas = tuple(phase.get("betas", (0.9, 0.999)))
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
    # AdamW's PyTorch default weight_decay is 0.01; phasetop's is 0: always pass it.
    return cls(params, lr=lr, betas=betas, eps=1e-8, weight_decay=wd, foreach=False)


def make_scheduler(phase, opt):
    """phasetop's linear warmup: step k (0-based) of the phase uses lr · (k + 1) / w for
    k < w, then lr (src/trainer/schedule.rs)."""
    w = phase.get("warmup_steps", 0)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (k + 1) / w if k < w else 1.0)


@torch.no_grad()
def evaluate(model, x, y):
    """Mean cross-entropy and accuracy over the held-out split, in chunks of 4096 rows
    (phasetop's `Trainer::evaluate`)."""
    loss_sum, correct = 0.0, 0.0
    for start in range(0, x.shape[0], 4096):
        logits = model(x[start : start + 4096])
        yy = y[start : start + 4096]
        loss_sum += F.cross_entropy(logits, yy, reduction="sum").item()
        correct += (logits.argmax(-1) == yy).float().sum().item()
    n = max(x.shape[0], 1)
    return loss_sum / n, correct / n


def loss_fn(kind, logits, y, model, classes):
    if kind == "ce":
        return F.cross_entropy(logits, y)
    if kind == "mse":
        return F.mse_loss(logits, F.one_hot(y, classes).float())
    if kind == "hinge":
        sign = y.float() * 2 - 1
        return F.relu(1 - sign * (logits[:, 1] - logits[:, 0])).mean()
    if kind == "l2":
        return 0.5 * sum(p.square().sum() for p in model.parameters())
    sys.exit(f"loss {kind!r} not covered")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--weights", default=None, help="init.safetensors or a checkpoint (init.<name> keys)")
    ap.add_argument("--eval-every", type=int, default=0, help="score OUT/heldout.safetensors every N steps")
    args = ap.parse_args()
    with open(args.config, "rb") as f:
        cfg = tomllib.load(f)
    torch.set_num_threads(max(1, cfg["run"].get("threads", 1)))
    batches = read_safetensors(f"{args.out}/batches.safetensors")
    x_all, y_all = batches["x"], batches["y"]
    weights = read_safetensors(args.weights or f"{args.out}/init.safetensors")
    state = {k[len("init.") :]: v for k, v in weights.items() if k.startswith("init.")}
    model = build_model(cfg, x_all)
    model.load_state_dict(state, strict=True)
    phase = cfg["phase"][0]
    opt = make_optimizer(phase, model.parameters())
    sched = make_scheduler(phase, opt)
    if args.eval_every:
        heldout = read_safetensors(f"{args.out}/heldout.safetensors")
        val_x, val_y = heldout["x"], heldout["y"]
    terms = [(t["kind"], t.get("weight", 1.0)) for t in phase.get("loss", [{"kind": "ce"}])]
    classes = classes_of(cfg["task"])
    steps = x_all.shape[0] if args.steps is None else min(args.steps, x_all.shape[0])
    losses, accs, evals = [], [], []
    for s in range(steps):
        x, y = x_all[s], y_all[s]
        opt.zero_grad()
        logits = model(x)
        total = None
        for kind, w in terms:
            v = loss_fn(kind, logits, y, model, classes)
            v = v if w == 1.0 else v * w
            total = v if total is None else total + v
        losses.append(total.item())
        accs.append((logits.detach().argmax(-1) == y).float().mean().item())
        if math.isfinite(losses[-1]):
            total.backward()
            opt.step()
        sched.step()
        if args.eval_every and ((s + 1) % args.eval_every == 0 or s + 1 == steps):
            evals.append([s + 1, *evaluate(model, val_x, val_y)])
    out = {"losses": losses, "train_acc": accs}
    if args.eval_every:
        out["evals"] = evals
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
