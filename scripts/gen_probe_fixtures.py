#!/usr/bin/env python3
"""Reference values for the probe formulas (src/probes.rs), computed independently with
numpy only, written as JSON fixtures to tests/fixtures/probes/.

Run with the project's venv:  .venv/bin/python scripts/gen_probe_fixtures.py

The computations here deliberately take the direct, textbook route (explicit pairwise
cosines, the full n x n kernel, numpy's SVD and eigendecompositions of the covariance)
rather than the shortcuts the Rust code takes (O(nd) cosine sum, the smaller Gram
matrix, trace/Frobenius for the participation ratio), so agreement checks both.

Each matrix fixture: {"name", "kind": "features", "dtype": "f64"|"f32", "shape": [n, d],
"data": row-major list, "expected": {mean_cos, diversity, eff_rank, entropy,
participation}}. Attention fixtures: {"name", "kind": "attention", "shape", "data",
"expected": {"attention_entropy"}}. Values are written with repr(), which round-trips.
"""

import json
import math
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "probes")
EIG_FLOOR = 1e-12
ZERO_ENERGY = 1e-24


def mean_cos(h):
    n = h.shape[0]
    if n < 2:
        return float("nan")
    norms = np.sqrt((h * h).sum(axis=1))
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if norms[i] == 0.0 or norms[j] == 0.0:
                c = 0.0  # a zero row has cosine 0 with every row
            else:
                c = float(h[i] @ h[j]) / (norms[i] * norms[j])
            total += c
    return total / (n * (n - 1))


def eff_rank(h):
    s = np.linalg.svd(h, compute_uv=False)
    total = s.sum()
    if total <= 0.0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(math.exp(-(p * np.log(p)).sum()))


def entropy(h):
    n = h.shape[0]
    norms = np.sqrt((h * h).sum(axis=1))
    u = np.zeros_like(h)
    nz = norms > 0
    u[nz] = h[nz] / norms[nz][:, None]
    k = u @ u.T / n
    tr = np.trace(k)
    if tr <= 0.0:
        return 0.0
    if tr < 1.0:
        k = k / tr  # zero rows: renormalise so the eigenvalues sum to 1
    lam = np.linalg.eigvalsh(k)
    lam = lam[lam > EIG_FLOOR]
    return float(-(lam * np.log(lam)).sum())


def participation(h):
    # All eigenvalues zero (constant columns) up to rounding: the centred data's energy
    # is below 1e-24 of the raw data's (rounding leaves ~1e-32).
    hc = h - h.mean(axis=0)
    if (hc * hc).sum() <= ZERO_ENERGY * (h * h).sum():
        return 0.0
    c = np.atleast_2d(np.cov(h, rowvar=False))
    lam = np.linalg.eigvalsh(c)
    s1 = lam.sum()
    s2 = (lam * lam).sum()
    if s2 <= 0.0 or s1 <= 0.0:
        return 0.0
    return float(s1 * s1 / s2)


def attention_entropy(p):
    rows = p.reshape(-1, p.shape[-1])
    ent = []
    for r in rows:
        nzr = r[r > 0]
        ent.append(float(-(nzr * np.log(nzr)).sum()))
    return float(np.mean(ent))


def features(name, h, dtype="f64"):
    if dtype == "f32":
        h = h.astype(np.float32).astype(np.float64)  # the values the f32 tensor holds
    mc = mean_cos(h)
    return {
        "name": name,
        "kind": "features",
        "dtype": dtype,
        "shape": list(h.shape),
        "data": [float(x) for x in h.reshape(-1)],
        "expected": {
            "mean_cos": mc,
            "diversity": 1.0 - mc,
            "eff_rank": eff_rank(h),
            "entropy": entropy(h),
            "participation": participation(h),
        },
    }


def attention(name, p):
    return {
        "name": name,
        "kind": "attention",
        "shape": list(p.shape),
        "data": [float(x) for x in p.reshape(-1)],
        "expected": {"attention_entropy": attention_entropy(p)},
    }


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def main():
    rng = np.random.default_rng(20240607)
    cases = []
    cases.append(features("random_n_lt_d", rng.standard_normal((8, 20))))
    cases.append(features("random_n_gt_d", rng.standard_normal((40, 6))))
    cases.append(features("relu_n_gt_d", np.maximum(rng.standard_normal((32, 12)) + 0.3, 0.0)))
    cases.append(features("random_f32", rng.standard_normal((12, 7)) * 3.0 + 1.0, dtype="f32"))
    row = rng.standard_normal(5)
    cases.append(features("all_equal_rows", np.tile(row, (6, 1))))
    z = rng.standard_normal((7, 4))
    z[3] = 0.0
    cases.append(features("zero_row", z))
    z2 = rng.standard_normal((5, 9))
    z2[[0, 4]] = 0.0
    cases.append(features("two_zero_rows_n_lt_d", z2))
    cases.append(features("all_zero", np.zeros((5, 3))))
    a = rng.standard_normal(9)
    b = rng.standard_normal(6)
    cases.append(features("rank1", np.outer(a, b)))
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    cases.append(features("orthogonal_rows", q[:4] * np.array([[1.0], [2.0], [0.5], [3.0]])))
    cases.append(features("scaled_basis_n_gt_d", np.vstack([np.eye(3) * s for s in (1.0, 2.0, 5.0)])))
    p = softmax(rng.standard_normal((2, 3, 4, 5)) * 2.0)
    cases.append(attention("attention_softmax", p))
    onehot = np.zeros((3, 4))
    onehot[0, 1] = 1.0
    onehot[1] = [0.5, 0.5, 0.0, 0.0]
    onehot[2] = [0.25, 0.25, 0.25, 0.25]
    cases.append(attention("attention_with_zeros", onehot))

    os.makedirs(OUT, exist_ok=True)
    for c in cases:
        path = os.path.join(OUT, c["name"] + ".json")
        with open(path, "w") as f:
            json.dump(c, f, indent=1)
            f.write("\n")
        print(f"{path}: {c['expected']}")


if __name__ == "__main__":
    main()
