"""Builds a small ResNet-style model for 8x8 single-channel images (the digits of
configs/torchscript.toml), scripts it and saves it, so phasetop trains it:

    .venv/bin/python examples/export_model.py [OUT]     (default data/resnet.pt)
    phasetop train configs/torchscript.toml

The module exports `features(x) -> Dict[str, Tensor]` (`@torch.jit.export`): its keys
are the layers phasetop can probe (`[probes] layers`, `until` rules), and its
parameter names (`stem.*`, `blocks.0.*`, `head.*`) are what a phase may `freeze`.
"""
import os
import sys
from typing import Dict

import torch
from torch import nn


class Block(nn.Module):
    """conv-bn-relu-conv-bn plus the input (the identity shortcut), then relu."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class ResNet(nn.Module):
    def __init__(self, channels: int = 16, blocks: int = 2, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.ModuleList([Block(channels) for _ in range(blocks)])
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        return self.features(x)["head"]

    @torch.jit.export
    def features(self, x) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        h = self.stem(x)
        out["stem"] = h
        i = 0
        for b in self.blocks:
            h = b(h)
            out["block." + str(i)] = h
            i += 1
        pooled = h.mean(dim=(2, 3))
        out["pool"] = pooled
        out["head"] = self.head(pooled)
        return out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "resnet.pt")
    torch.manual_seed(0)
    model = torch.jit.script(ResNet())
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    model.save(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: ResNet-style, {n} parameters, layers {list(model.features(torch.zeros(1, 1, 8, 8)).keys())}")


if __name__ == "__main__":
    main()
