"""configs/digits.toml's CNN and two-phase schedule in plain PyTorch, and phasetop's run
of the config, side by side in one run: held-out accuracy and loss of each.

    .venv/bin/python examples/digits_ref.py [--phasetop BIN] [--seeds N]

The twin: conv 3x3 (padding 1) -> BatchNorm2d -> ReLU -> MaxPool 2x2 per entry of
`channels`, a linear head on the flattened features; Adam; phase "augmented" at a
constant lr with Gaussian input noise, phase "clean" with a cosine decay to min_lr (the
optimizer's state kept, as phasetop keeps it between two Adam phases); batches of
`batch_size` drawn uniformly with replacement; evaluation in eval mode. It reads the
settings from the config, so an edited config is compared as edited. Initialisation
and batches come from each side's own random streams, so the two runs agree in
distribution (accuracy within noise), not bit for bit.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import tomllib

import torch
from safetensors.torch import load_file
from torch import nn

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIG = os.path.join(ROOT, "configs", "digits.toml")


def lr_at(phase, k):
    base = phase["lr"]
    if phase.get("schedule", "constant") != "cosine":
        return base
    lo, span = phase.get("min_lr", 0.0), max(phase["steps"], 1)
    return lo + (base - lo) * 0.5 * (1 + math.cos(math.pi * min(k, span) / span))


def build(cfg, data):
    """The config's CNN in plain PyTorch (default initialisation, as phasetop's `init = "torch"`)."""
    m = cfg["model"]
    layers, c = [], data["x_train"].shape[1]
    h = data["x_train"].shape[2]
    for out in m.get("channels", [32, 64]):
        layers += [nn.Conv2d(c, out, 3, padding=1)]
        if m.get("batch_norm", False):
            layers += [nn.BatchNorm2d(out)]
        layers += [nn.ReLU()]
        if h >= 2 and m.get("pool", "max") != "none":
            layers += [nn.MaxPool2d(2) if m.get("pool", "max") == "max" else nn.AvgPool2d(2)]
            h //= 2
        c = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * h, int(data["y_train"].max()) + 1))


def twin(cfg, data, seed):
    torch.manual_seed(seed)
    model = build(cfg, data)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["phase"][0]["lr"])
    x, y = data["x_train"], data["y_train"]
    g = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for phase in cfg["phase"]:
        for k in range(phase["steps"]):
            for group in opt.param_groups:
                group["lr"] = lr_at(phase, k)
            idx = torch.randint(0, len(y), (phase["batch_size"],), generator=g)
            xb = x[idx]
            if phase.get("input_noise", 0) > 0:
                xb = xb + phase["input_noise"] * torch.randn(xb.shape, generator=g)
            model.train()
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        logits = model(data["x_val"])
        return {
            "val_acc": (logits.argmax(1) == data["y_val"]).float().mean().item(),
            "val_loss": nn.functional.cross_entropy(logits, data["y_val"]).item(),
            "seconds": seconds,
        }


def phasetop(binary, seed, tmp):
    run = os.path.join(tmp, f"digits-{seed}")
    done = subprocess.run([binary, "train", "--headless", "--seed", str(seed), "--run-dir", run, CONFIG],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"phasetop failed: {done.stderr}")
    s = json.loads(subprocess.run([binary, "inspect", run, "--json"], check=True, capture_output=True).stdout)
    f = s["final_metrics"]
    return {"val_acc": f["val_acc"], "val_loss": f["val_loss"], "steps_per_s": f.get("steps_per_s", float("nan"))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phasetop", default=None, help="phasetop binary (default: target/release, else target/debug)")
    ap.add_argument("--seeds", type=int, default=1)
    a = ap.parse_args()
    binary = a.phasetop or next(
        (p for p in (os.path.join(ROOT, "target", d, "phasetop") for d in ("release", "debug")) if os.path.exists(p)), None)
    if binary is None:
        sys.exit("no phasetop binary: cargo build --release")
    with open(CONFIG, "rb") as f:
        cfg = tomllib.load(f)
    torch.set_num_threads(max(cfg["run"].get("threads", 0), 1))
    data = load_file(os.path.join(os.path.dirname(CONFIG), cfg["task"]["path"]))
    print(f"digits: {len(data['y_train'])} training, {len(data['y_val'])} held-out images; "
          f"{' -> '.join(p['name'] for p in cfg['phase'])}, {sum(p['steps'] for p in cfg['phase'])} steps")
    print(f"{'seed':>4}  {'phasetop acc':>12} {'PyTorch acc':>12}  {'phasetop loss':>13} {'PyTorch loss':>12}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(a.seeds):
            p, t = phasetop(binary, seed, tmp), twin(cfg, data, seed)
            rows.append((p, t))
            print(f"{seed:>4}  {p['val_acc']:>12.4f} {t['val_acc']:>12.4f}  {p['val_loss']:>13.4f} {t['val_loss']:>12.4f}")
    mean = lambda k, i: sum(r[i][k] for r in rows) / len(rows)
    print(f"mean  {mean('val_acc', 0):>12.4f} {mean('val_acc', 1):>12.4f}  {mean('val_loss', 0):>13.4f} {mean('val_loss', 1):>12.4f}")


if __name__ == "__main__":
    main()
