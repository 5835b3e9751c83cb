"""Distances between point clouds for vector data, each reported with its floor.

The floor of a metric is its value between two independent draws of the same size
from the true distribution: a model cannot be told apart from the data once it is
within a small factor of it.
"""

import numpy as np
import ot
import torch

from ..data.toy2d import sample_toy2d


def sliced_wasserstein(x, y, n_projections: int = 512, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance (Bonneel et al. 2015) between equal-size point sets.

    SW_2^2 = E_theta W_2^2(theta.x, theta.y) over uniform directions theta, estimated with
    ``n_projections`` seeded directions; each 1-D W_2 is exact (sorted points matched in order).
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    if x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein needs equal-size point sets, got {tuple(x.shape)} and {tuple(y.shape)}")
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], n_projections, generator=gen, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    xp, yp = (x @ theta).sort(dim=0).values, (y @ theta).sort(dim=0).values
    return float(((xp - yp) ** 2).mean().sqrt())


def mmd_rbf(x, y, bandwidths=(0.05, 0.1, 0.2, 0.5, 1.0, 2.0)) -> float:
    """Squared MMD (Gretton et al. 2012, eq. 5: the biased, always non-negative estimate)
    with a sum of RBF kernels exp(-|a - b|^2 / (2 h^2)) over the bandwidths ``h``."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)

    def kernel(a, b):
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    return float(kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean())


def wasserstein2(x, y) -> float:
    """Exact 2-Wasserstein distance between two empirical measures (network simplex, POT ``emd2``)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    cost = ot.dist(x, y, metric="sqeuclidean")
    return float(np.sqrt(ot.emd2(ot.unif(len(x)), ot.unif(len(y)), cost, numItermax=10_000_000)))


METRICS = {"sliced_wasserstein": sliced_wasserstein, "mmd_rbf": mmd_rbf, "wasserstein2": wasserstein2}

#: exact optimal transport is cubic: beyond this many points only the other metrics are computed
W2_MAX_POINTS = 5000


def evaluate_points(samples, data_name: str, seed: int = 12345, data_params: dict | None = None, repeats: int = 3, metrics=None) -> dict:
    """Each metric between ``samples`` and fresh draws of the true data, with its floor.

    ``value`` is the mean of the metric between the samples and ``repeats`` fresh data
    draws of the same size; ``floor`` the mean of the metric between each such draw and
    another independent draw (the data-versus-data floor). Returns
    ``{metric: {"value", "floor", "ratio"}, "n": N}``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    n = len(samples)
    params = data_params or {}
    refs = [sample_toy2d(data_name, n, seed + 2 * i, **params) for i in range(repeats)]
    others = [sample_toy2d(data_name, n, seed + 2 * i + 1, **params) for i in range(repeats)]
    out = {}
    for name in metrics or METRICS:
        if name == "wasserstein2" and n > W2_MAX_POINTS:
            continue
        fn = METRICS[name]
        value = float(np.mean([fn(samples, r) for r in refs]))
        floor = float(np.mean([fn(o, r) for o, r in zip(others, refs)]))
        out[name] = {"value": value, "floor": floor, "ratio": value / floor}
    out["n"] = n
    return out
