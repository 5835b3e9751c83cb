import numpy as np
import pytest

from ddpm.data import TOY2D, load_dataset, sample_toy2d
from ddpm.config import DataConfig
from ddpm.data.toy2d import COMPONENTS
from ddpm.errors import DataError
from ddpm.eval.toy_metrics import evaluate_points, mmd_rbf, sliced_wasserstein, wasserstein2


@pytest.mark.parametrize("name", list(TOY2D))
def test_toy_sets_are_seeded_finite_2d(name):
    a, b, c = sample_toy2d(name, 500, 1), sample_toy2d(name, 500, 1), sample_toy2d(name, 500, 2)
    assert a.shape == (500, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a).max() < 10


def test_shapes_of_known_sets():
    x = sample_toy2d("8gaussians", 4000, 0)
    radius = np.linalg.norm(x, axis=1)
    assert abs(np.median(radius) - 1.0) < 0.02
    angles = np.round(np.arctan2(x[:, 1], x[:, 0]) / (np.pi / 4)) % 8
    assert len(np.unique(angles)) == 8
    c = sample_toy2d("circles", 4000, 0)
    r = np.linalg.norm(c, axis=1)
    assert np.mean(np.abs(r - 1) < 0.15) + np.mean(np.abs(r - 0.5) < 0.15) > 0.98
    cb = sample_toy2d("checkerboard", 4000, 0)
    cells = (np.floor(cb[:, 0] * 2) + np.floor(cb[:, 1] * 2)) % 2
    assert np.all(cells == cells[0])  # only squares of one colour
    g = sample_toy2d("gaussian", 20000, 0, mean=[1.0, -2.0], cov=[[2.0, 0.5], [0.5, 1.0]])
    assert np.allclose(g.mean(0), [1, -2], atol=0.05) and np.allclose(np.cov(g.T), [[2, 0.5], [0.5, 1]], atol=0.08)


def test_mixture_like_sets_are_labelled_by_their_component():
    def load(name):
        d = load_dataset(DataConfig(name=name, n=4000))
        assert d.num_classes == COMPONENTS[name] and set(d.y.tolist()) == set(range(COMPONENTS[name]))
        assert np.array_equal(d.x.numpy(), sample_toy2d(name, 4000, 0))  # labels add nothing to the draw
        return d.x.numpy(), d.y.numpy()

    x, y = load("8gaussians")
    angle = np.arctan2(x[:, 1], x[:, 0]) % (2 * np.pi)
    assert np.array_equal(np.round(angle / (np.pi / 4)).astype(int) % 8, y)
    x, y = load("circles")
    assert np.array_equal(np.linalg.norm(x, axis=1) < 0.75, y == 1)
    x, y = load("checkerboard")
    assert np.array_equal((np.floor(x[:, 0] * 2).astype(int) + 2) * 2 + (x[:, 1] * 2 >= np.floor(x[:, 0] * 2) % 2),
                          y)
    x, y = load("moons")
    assert x[y == 0, 1].mean() > 0.3 > -0.3 > x[y == 1, 1].mean() - 0.1  # the upper moon and the lower one
    for name in ("swissroll", "spiral", "gaussian"):
        assert load_dataset(DataConfig(name=name, n=10)).y is None


def test_bad_toy_requests():
    with pytest.raises(DataError, match="unknown 2-D data set"):
        sample_toy2d("swirl", 10, 0)
    with pytest.raises(DataError, match="positive semi-definite"):
        sample_toy2d("gaussian", 10, 0, mean=[0, 0], cov=[[1, 2], [2, 1]])


def test_metrics_are_zero_on_identical_sets_and_grow_with_shift():
    x = sample_toy2d("moons", 800, 0)
    for fn in (sliced_wasserstein, mmd_rbf, wasserstein2):
        assert fn(x, x) == pytest.approx(0.0, abs=1e-9)
        assert fn(x, x + 0.1) < fn(x, x + 0.5)


def test_wasserstein_of_a_translation_is_its_length():
    x = sample_toy2d("8gaussians", 300, 0)
    shift = np.array([0.3, 0.4])
    assert wasserstein2(x, x + shift) == pytest.approx(0.5, rel=1e-6)
    # sliced W2 of a translation: sqrt(E (theta . s)^2) = |s| / sqrt(2) in 2-D
    assert sliced_wasserstein(x, x + shift, n_projections=20000) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_evaluation_reports_floor_and_separates_wrong_distributions():
    good = evaluate_points(sample_toy2d("swissroll", 1000, 99), "swissroll")
    bad = evaluate_points(np.random.default_rng(0).normal(size=(1000, 2)), "swissroll")
    for name in ("sliced_wasserstein", "mmd_rbf", "wasserstein2"):
        assert good[name]["floor"] > 0
        assert good[name]["ratio"] < 1.6
        assert bad[name]["ratio"] > 3
