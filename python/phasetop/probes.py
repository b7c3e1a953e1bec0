"""The probe formulas of docs/SIGNALS.md (src/probes.rs) in torch, float64: the same
numbers, to 1e-5, as the built-in trainer's probes (tests/fixtures/probes).

For features H (n × d; more dimensions are flattened to n × rest):
mean_cos, diversity = 1 − mean_cos, eff_rank (Roy & Vetterli), entropy (von Neumann of
the row-normalised kernel), participation (of the centred covariance); attention
probabilities (…, q, k) give attn_entropy.
"""

import math

ENTROPY_EIG_FLOOR = 1e-12
PARTICIPATION_ZERO_ENERGY = 1e-24
PROBE_METRICS = ("mean_cos", "diversity", "eff_rank", "entropy", "participation")
ATTENTION_METRIC = "attn_entropy"


def _matrix(h):
    import torch

    h = torch.as_tensor(h).detach()
    n = h.shape[0] if h.dim() > 0 else 1
    return h.to(torch.float64).reshape(n, -1)


def _unit_rows(h):
    norms = h.square().sum(1, keepdim=True).sqrt()
    nonzero = norms > 0
    count = int(nonzero.sum())
    return h / norms.where(nonzero, 1.0), count


def _small_gram(x):
    n, d = x.shape
    return x.T @ x if n > d else x @ x.T


def mean_cosine(h):
    h = _matrix(h)
    n = h.shape[0]
    if n < 2:
        return math.nan
    u, nonzero = _unit_rows(h)
    s = u.sum(0)
    return (float(s @ s) - nonzero) / (n * (n - 1))


def effective_rank(h):
    import torch

    s = torch.linalg.svdvals(_matrix(h))
    total = float(s.sum())
    if total <= 0 or not math.isfinite(total):
        return 0.0
    p = s / total
    p = p[p > 0]
    return math.exp(float(-(p * p.log()).sum()))


def matrix_entropy(h):
    import torch

    u, nonzero = _unit_rows(_matrix(h))
    if nonzero == 0:
        return 0.0
    lam = torch.linalg.eigvalsh(_small_gram(u) / nonzero)
    lam = lam[lam > ENTROPY_EIG_FLOOR]
    return float(-(lam * lam.log()).sum())


def participation_ratio(h):
    h = _matrix(h)
    hc = h - h.mean(0, keepdim=True)
    energy = float(hc.square().sum())
    if energy <= PARTICIPATION_ZERO_ENERGY * float(h.square().sum()):
        return 0.0
    frob2 = float(_small_gram(hc).square().sum())
    return 0.0 if frob2 <= 0 else energy * energy / frob2


def attention_entropy(p):
    import torch

    p = torch.as_tensor(p).detach().to(torch.float64)
    k = max(p.shape[-1] if p.dim() > 0 else 1, 1)
    p = p.reshape(-1, k)
    if p.shape[0] == 0:
        return math.nan
    return float((-torch.xlogy(p, p).sum(1)).mean())


def metrics(h):
    """All feature metrics of ``h``."""
    mc = mean_cosine(h)
    return {
        "mean_cos": mc,
        "diversity": 1.0 - mc,
        "eff_rank": effective_rank(h),
        "entropy": matrix_entropy(h),
        "participation": participation_ratio(h),
    }


def layer_metrics(layer, features):
    """What ``run.probe`` logs: attention entropy for a layer named ``*.attn``, the
    feature metrics otherwise."""
    if layer.endswith(".attn"):
        return {ATTENTION_METRIC: attention_entropy(features)}
    return metrics(features)
