import warnings

import numpy as np
import pytest

from ddpm.errors import ScheduleError
from ddpm.schedules import SCHEDULES, cosine_betas, linear_range, make_betas


@pytest.mark.parametrize("name", [s for s in SCHEDULES if s != "custom"])
@pytest.mark.parametrize("T", [1, 10, 50, 1000])
def test_every_schedule_is_valid_float64(name, T):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        betas = make_betas(name, T)
    assert betas.dtype == np.float64 and betas.shape == (T,)
    assert np.all((betas > 0) & (betas < 1))
    if T > 1 and name != "cosine":
        assert np.all(np.diff(betas) >= 0)


def test_linear_is_the_papers_at_T1000_and_scaled_otherwise():
    b = make_betas("linear", 1000)
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    b50 = make_betas("linear", 50)
    assert b50[0] == pytest.approx(2e-3) and b50[-1] == pytest.approx(0.4)
    assert linear_range(50) == pytest.approx((2e-3, 0.4))


def test_explicit_range_and_unscaled_short_chain_warns():
    with pytest.warns(UserWarning, match="alpha-bar_T=0.6"):
        b = make_betas("linear", 50, 1e-4, 0.02)
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    assert np.prod(1 - b) == pytest.approx(0.6035, abs=1e-3)


def test_schedules_that_reach_noise_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("linear", "cosine", "quadratic", "sigmoid"):
            make_betas(name, 1000)


def test_cosine_follows_nichol_dhariwal():
    T, s = 1000, 0.008
    betas = cosine_betas(T, s)
    ab = np.cumprod(1 - betas)
    f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    t = np.arange(1, T + 1)
    expected = f(t) / f(0)
    unclipped = betas < 0.999
    assert np.allclose(ab[unclipped], expected[unclipped], rtol=1e-9)
    assert betas.max() <= 0.999


def test_custom_betas_and_errors():
    assert np.array_equal(make_betas("custom", betas=[0.1, 0.5, 0.9]), [0.1, 0.5, 0.9])
    with pytest.raises(ScheduleError, match=r"\(0, 1\)"):
        make_betas("custom", betas=[0.1, 1.0])
    with pytest.raises(ScheduleError, match=r"\(0, 1\)"):
        make_betas("linear", 10, beta_start=-0.1)
    with pytest.raises(ScheduleError, match="T must be"):
        make_betas("linear", 0)
    with pytest.raises(ScheduleError, match="unknown schedule"):
        make_betas("exponential", 10)
    with pytest.raises(ScheduleError, match="needs betas"):
        make_betas("custom", 10)
