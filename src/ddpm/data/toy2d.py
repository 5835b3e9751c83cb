"""Seeded 2-D data sets: fresh, exact draws from known distributions.

Each generator takes ``(n, rng)`` with a NumPy ``Generator`` and returns the points (n, 2)
and, for mixture-like data, the component each point was drawn from (its class label:
the moon, the Gaussian, the circle, the checkerboard square), else None. Because the true distribution is known, metrics can compare samples with a fresh draw
of the data ("the data-versus-data floor").
"""

import numpy as np
import torch
from sklearn.datasets import make_moons, make_swiss_roll

from ..errors import DataError
from .base import Dataset


def swissroll(n, rng):
    """scikit-learn's swiss roll (noise 0.5) in its x/z plane, divided by 10: about [-1, 1.5]^2."""
    x, _ = make_swiss_roll(n, noise=0.5, random_state=_seed(rng))
    return x[:, [0, 2]] / 10.0, None


def spiral(n, rng):
    """One arm of two turns, r = sqrt(u), angle = 4 pi sqrt(u), plus N(0, 0.02^2) jitter."""
    r = np.sqrt(rng.uniform(size=n))
    theta = 4 * np.pi * r
    pts = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return pts + 0.02 * rng.standard_normal((n, 2)), None


def moons(n, rng):
    """scikit-learn's two moons (noise 0.05), centred: about [-1.5, 1.5] x [-0.75, 0.75]; label: the moon."""
    x, y = make_moons(n, noise=0.05, random_state=_seed(rng))
    return x - np.array([0.5, 0.25]), y


def eight_gaussians(n, rng):
    """Eight Gaussians (std 0.05) evenly on the circle of radius 1 (Grathwohl et al. 2019); label: which."""
    k = rng.integers(0, 8, size=n)
    angle = k * np.pi / 4
    centres = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + 0.05 * rng.standard_normal((n, 2)), k


def checkerboard(n, rng):
    """Uniform on the eight dark squares of a 4x4 checkerboard on [-2, 2]^2, scaled by 1/2; label: the
    square (column * 2 + which of its two dark squares)."""
    x1 = rng.uniform(-2, 2, size=n)
    row = rng.integers(0, 2, size=n)
    x2 = rng.uniform(0, 1, size=n) + row * 2 - 2 + (np.floor(x1) % 2)
    return np.stack([x1, x2], axis=1) / 2.0, (np.floor(x1).astype(np.int64) + 2) * 2 + row


def circles(n, rng):
    """Two concentric circles, radii 1 and 0.5, equal mass, N(0, 0.03^2) jitter; label: 0 outer, 1 inner."""
    inner = rng.uniform(size=n) >= 0.5
    radius = np.where(inner, 0.5, 1.0)
    angle = rng.uniform(0, 2 * np.pi, size=n)
    pts = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return pts + 0.03 * rng.standard_normal((n, 2)), inner.astype(np.int64)


def gaussian(n, rng, mean=(0.0, 0.0), cov=((1.0, 0.0), (0.0, 1.0))):
    """A 2-D Gaussian N(mean, cov); cov must be symmetric positive semi-definite."""
    mean, cov = np.asarray(mean, dtype=np.float64), np.asarray(cov, dtype=np.float64)
    if mean.shape != (2,) or cov.shape != (2, 2):
        raise DataError("gaussian data needs mean of length 2 and a 2x2 cov, e.g. --set data.mean=[1,0]")
    if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() < -1e-12:
        raise DataError("gaussian data needs a symmetric positive semi-definite cov matrix")
    return rng.multivariate_normal(mean, cov, size=n), None


TOY2D = {
    "swissroll": swissroll,
    "spiral": spiral,
    "moons": moons,
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "circles": circles,
    "gaussian": gaussian,
}


#: number of components of the mixture-like data sets (their class labels 0 .. k-1)
COMPONENTS = {"moons": 2, "8gaussians": 8, "checkerboard": 8, "circles": 2}


def _seed(rng) -> int:
    return int(rng.integers(0, 2**31 - 1))


def draw_toy2d(name: str, n: int, seed: int, **params) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` fresh points of the 2-D data set ``name`` from ``seed``, float32 (n, 2), and their
    int64 component labels (None for data that is not a mixture)."""
    if name not in TOY2D:
        raise DataError(f"unknown 2-D data set {name!r}: choose one of {', '.join(TOY2D)}")
    if n < 1:
        raise DataError(f"number of points must be positive, got {n}")
    kwargs = {k: v for k, v in params.items() if v is not None} if name == "gaussian" else {}
    x, y = TOY2D[name](n, np.random.default_rng(seed), **kwargs)
    return x.astype(np.float32), None if y is None else np.asarray(y, dtype=np.int64)


def sample_toy2d(name: str, n: int, seed: int, **params) -> np.ndarray:
    """``n`` fresh points of the 2-D data set ``name`` from ``seed``, float32 (n, 2)."""
    return draw_toy2d(name, n, seed, **params)[0]


def load_toy2d(name: str, n: int, seed: int, **params) -> Dataset:
    """A :class:`Dataset` of ``n`` points of ``name``, labelled by component for mixture-like data."""
    x, y = draw_toy2d(name, n, seed, **params)
    classes = [str(i) for i in range(COMPONENTS[name])] if name in COMPONENTS else None
    return Dataset(torch.from_numpy(x), None if y is None else torch.from_numpy(y), name=name, classes=classes)
