"""Distances between two sets of features: FID, KID, precision/recall, density/coverage.

All take float arrays (N, D) of features (any :class:`~ddpm.eval.features.FeatureExtractor`)
and compute in float64.
"""

from __future__ import annotations

import numpy as np
import torch


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, N - 1) of features, float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least two feature vectors (N, D), got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_eigenvalues(w: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a PSD matrix with those below numerical resolution (d * eps * largest) set
    to 0: a rank-deficient covariance (fewer samples than features, as FID@1k in 2048-d) has
    rounding noise there, whose square roots would otherwise add up."""
    return torch.where(w > w.max() * len(w) * torch.finfo(w.dtype).eps, w, torch.zeros_like(w))


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by its eigendecomposition."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * _psd_eigenvalues(w).sqrt()) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, eq. 6):
    |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    tr((sigma1 sigma2)^(1/2)) is computed stably as the sum of the square roots of the
    eigenvalues of the symmetric PSD matrix sigma1^(1/2) sigma2 sigma1^(1/2) (same spectrum).
    """
    s1 = _f64(sigma1)
    return _frechet(_f64(mu1), s1, _sqrtm_psd(s1), _f64(mu2), _f64(sigma2))


def _frechet(mu1: torch.Tensor, s1: torch.Tensor, root1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor) -> float:
    """:func:`frechet_distance` given sigma1's square root ``root1``."""
    middle = root1 @ s2 @ root1
    tr_covmean = _psd_eigenvalues(torch.linalg.eigvalsh((middle + middle.T) / 2)).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean)


def fids(feature_sets, reference) -> list[float]:
    """FID of each feature set against one reference set, whose statistics and square root are
    computed once (a 2048-d square root costs seconds on a CPU)."""
    mu, sigma = (_f64(v) for v in gaussian_statistics(reference))
    root = _sqrtm_psd(sigma)
    return [_frechet(mu, sigma, root, *(_f64(v) for v in gaussian_statistics(f))) for f in feature_sets]


def fid(features_a, features_b) -> float:
    """FID between two feature sets (their Gaussian statistics)."""
    return fids([features_a], features_b)[0]


def kid(features_a, features_b, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): the unbiased estimate of MMD^2 with the
    cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over ``subsets`` random subsets
    of ``min(subset_size, N_a, N_b)`` from each set. Returns (mean, standard deviation)."""
    a, b = _f64(features_a), _f64(features_b)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least two feature vectors in each set")
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=gen)[:m]]
        y = b[torch.randperm(len(b), generator=gen)[:m]]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        values.append(float(off - 2 * kxy.mean()))
    return float(np.mean(values)), float(np.std(values))


def _pairwise(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    return torch.cat([torch.cdist(a[i : i + chunk], b) for i in range(0, len(a), chunk)])


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour in its own set (itself excluded)."""
    return _pairwise(x, x).kthvalue(k + 1, dim=1).values


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eq. 1-2): each set's manifold is
    the union of balls around its points reaching their k-th nearest neighbour; precision is
    the share of fake points inside the real manifold, recall the share of real points inside
    the fake manifold."""
    r, f = _f64(real), _f64(fake)
    d = _pairwise(f, r)  # (fake, real)
    precision = (d <= _knn_radii(r, k)[None, :]).any(dim=1).double().mean()
    recall = (d.T <= _knn_radii(f, k)[None, :]).any(dim=1).double().mean()
    return float(precision), float(recall)


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020, eq. 3-4) over k-nearest-neighbour balls of the
    real points: density counts how many real balls hold each fake point (divided by k; 1 on
    average when the sets are alike), coverage is the share of real balls holding a fake point."""
    r, f = _f64(real), _f64(fake)
    inside = _pairwise(f, r) <= _knn_radii(r, k)[None, :]  # (fake, real)
    return float(inside.double().sum() / (k * len(f))), float(inside.any(dim=0).double().mean())
