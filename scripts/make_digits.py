"""Writes data/digits.safetensors: scikit-learn's bundled 8x8 handwritten digits (1 797
images, shipped inside its wheel: nothing is downloaded), as a phasetop `tensors` task.

x_train/x_val: float32 [n, 1, 8, 8], pixel values 0..16 scaled to [0, 1];
y_train/y_val: int64 class 0..9. A fixed shuffle (seed 0) puts 20 % (360 images) in
the held-out split. Usage: make_digits.py [OUT] (default data/digits.safetensors).
"""
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "digits.safetensors")
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    n_val = 360
    val, train = order[:n_val], order[n_val:]
    tensors = {
        "x_train": torch.from_numpy(np.ascontiguousarray(x[train])),
        "y_train": torch.from_numpy(np.ascontiguousarray(y[train])),
        "x_val": torch.from_numpy(np.ascontiguousarray(x[val])),
        "y_val": torch.from_numpy(np.ascontiguousarray(y[val])),
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    save_file(tensors, tmp)
    os.replace(tmp, out)
    print(f"wrote {out}: {len(train)} training and {n_val} held-out 8x8 digits")


if __name__ == "__main__":
    main()
