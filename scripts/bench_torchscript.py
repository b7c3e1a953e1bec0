"""The PyTorch eager peers of benches/torchscript.rs: the same model, optimizer, batch
and thread count as phasetop's run, written as a PyTorch user would. Prints steps/s as
JSON.

usage: bench_torchscript.py resnet|cnn STEPS THREADS
  resnet: examples/export_model.py's ResNet (eager, not scripted), Adam lr 0.002, batch 64
  cnn:    configs/digits.toml's CNN (examples/digits_ref.py's twin), Adam, batch 64
Both on data/digits.safetensors, uniform batches with replacement, train mode.
"""
import json
import os
import sys
import time
import tomllib

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "examples"))


def main():
    kind, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = load_file(os.path.join(ROOT, "data", "digits.safetensors"))
    if kind == "resnet":
        from export_model import ResNet

        model = ResNet()
    else:
        import digits_ref

        with open(os.path.join(ROOT, "configs", "digits.toml"), "rb") as f:
            model = digits_ref.build(tomllib.load(f), data)
    opt = torch.optim.Adam(model.parameters(), lr=0.002)
    x, y = data["x_train"], data["y_train"]
    model.train()

    def step():
        idx = torch.randint(0, len(y), (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(20):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    print(json.dumps({"steps_per_s": steps / (time.perf_counter() - started)}))


if __name__ == "__main__":
    main()
