"""FID, KID, precision/recall and density/coverage as properties of feature sets."""

import numpy as np
import pytest
import torch

from ddpm.eval import feature_metrics as fm


def gaussian(n, mean, cov, seed):
    return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n)


def random_spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_equals_the_closed_form_of_two_gaussians():
    # commuting covariances: tr((S1 S2)^1/2) = sum sqrt(l1 l2) in a shared eigenbasis
    d = 6
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))
    l1, l2 = np.linspace(0.5, 3, d), np.linspace(2, 0.1, d)
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    mu1, mu2 = np.arange(d, dtype=float), np.ones(d)
    expected = ((mu1 - mu2) ** 2).sum() + (l1 + l2 - 2 * np.sqrt(l1 * l2)).sum()
    assert fm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    # general covariances: against the definition with an explicit matrix square root
    s1, s2 = random_spd(d, 1), random_spd(d, 2)
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(w)) @ v.T
    tr = np.sqrt(np.linalg.eigvalsh(root @ s2 @ root)).sum()
    mean_term = ((mu1 - mu2) ** 2).sum()
    assert fm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(mean_term + np.trace(s1 + s2) - 2 * tr, rel=1e-10)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise():
    x = gaussian(2000, np.zeros(8), random_spd(8, 3), 0)
    assert abs(fm.fid(x, x)) < 1e-8
    rng = np.random.default_rng(1)
    values = [fm.fid(x + s * rng.normal(size=x.shape), x) for s in (0.1, 0.3, 1.0, 3.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_fid_of_rank_deficient_statistics_is_finite():
    x = gaussian(50, np.zeros(100), np.eye(100), 0)  # fewer samples than dimensions: singular covariance
    y = gaussian(50, np.ones(100), np.eye(100), 1)
    assert np.isfinite(fm.fid(x, y)) and fm.fid(x, y) > 0


def test_fid_agrees_with_torchmetrics_on_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Identity(torch.nn.Module):  # the features are the input: both sides see the same numbers
        num_features = 16

        def forward(self, x):
            return x.flatten(1).double()

    a = gaussian(500, np.zeros(16), random_spd(16, 4), 0)
    b = gaussian(400, 0.3 * np.ones(16), random_spd(16, 5), 1)
    metric = FrechetInceptionDistance(feature=Identity(), normalize=True)
    metric.update(torch.tensor(a).reshape(-1, 1, 4, 4).float(), real=True)
    metric.update(torch.tensor(b).reshape(-1, 1, 4, 4).float(), real=False)
    theirs = float(metric.compute())
    ours = fm.fid(torch.tensor(a).float().double().numpy(), torch.tensor(b).float().double().numpy())
    assert ours == pytest.approx(theirs, rel=1e-3)


def test_kid_is_unbiased_on_two_draws_of_one_distribution():
    cov = random_spd(10, 6)
    means = [fm.kid(gaussian(300, np.zeros(10), cov, 2 * s), gaussian(300, np.zeros(10), cov, 2 * s + 1),
                    subsets=20, seed=s)[0] for s in range(20)]
    # the unbiased estimate averages to zero (a biased one would stay positive)
    assert abs(np.mean(means)) < 3 * np.std(means) / np.sqrt(len(means))
    assert min(means) < 0 < max(means)
    shifted = fm.kid(gaussian(300, np.zeros(10), cov, 0), gaussian(300, 0.5 * np.ones(10), cov, 1))[0]
    assert shifted > 10 * np.std(means)


def test_precision_recall_one_for_identical_sets_and_falling_for_disjoint_ones():
    x = gaussian(400, np.zeros(5), np.eye(5), 0)
    assert fm.precision_recall(x, x) == (1.0, 1.0)
    values = [fm.precision_recall(x, x + shift) for shift in (0.5, 2.0, 50.0)]
    assert values[-1] == (0.0, 0.0)
    assert values[0][0] > values[1][0] > values[2][0]
    # a model covering half the data: precision stays high, recall falls
    half = x[x[:, 0] > 0]
    p, r = fm.precision_recall(x, half)
    assert p == 1.0 and 0.3 < r < 0.8


def test_density_and_coverage():
    x = gaussian(500, np.zeros(4), np.eye(4), 0)
    d, c = fm.density_coverage(x, x)
    assert c == 1.0 and d >= 1.0
    y = gaussian(500, np.zeros(4), np.eye(4), 1)
    d, c = fm.density_coverage(x, y)
    assert 0.7 < d < 1.3 and 0.85 < c <= 1.0
    assert fm.density_coverage(x, x + 100.0) == (0.0, 0.0)


def test_fids_against_one_reference_equal_each_fid():
    ref = gaussian(300, np.zeros(12), random_spd(12, 7), 0)
    sets = [gaussian(n, 0.2 * i * np.ones(12), random_spd(12, 8 + i), i + 1) for i, n in enumerate((40, 200, 300))]
    direct = [fm.frechet_distance(*fm.gaussian_statistics(x), *fm.gaussian_statistics(ref)) for x in sets]
    assert fm.fids(sets, ref) == pytest.approx(direct, rel=1e-9)
