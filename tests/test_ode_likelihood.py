"""The probability-flow ODE likelihood equals the closed-form density of Gaussian data (whose
exact denoiser is known), and the command reports it beside the bound."""

import math

import numpy as np
import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.eval.ode_likelihood import ode_log_likelihood
from ddpm.schedules import make_betas

from mixture import MixtureDenoiser


def _mixture_density(process, means, stds, weights, x, step=0, variance_exploding=False):
    """log density of x_t = alpha x_data + sigma_t eps at a step of the chain (of x_t / alpha when
    ``variance_exploding``)."""
    sigma = float(process.sigma_at(step))
    alpha = 1.0 if variance_exploding else 1.0 / math.sqrt(1.0 + sigma * sigma)
    var = alpha**2 * (np.asarray(stds) ** 2 + sigma**2)
    d = x.shape[1]
    logs = []
    for m, v, w in zip(means, var, weights):
        logs.append(np.log(w) - 0.5 * ((x - alpha * np.asarray(m)) ** 2).sum(1) / v - 0.5 * d * np.log(2 * np.pi * v))
    return np.logaddexp.reduce(np.stack(logs), axis=0)


@pytest.mark.parametrize("means,stds,weights", [
    ([[0.5, -0.3]], [0.7], [1.0]),
    ([[-1.0, 0.0], [1.0, 0.5]], [0.3, 0.5], [0.3, 0.7]),
])
def test_ode_likelihood_matches_the_closed_form(means, stds, weights):
    process = GaussianDiffusion(make_betas("linear", 1000))
    model = MixtureDenoiser(process, means, stds, weights)
    x = model.sample_data(200, seed=3)
    exact = _mixture_density(process, means, stds, weights, x.numpy(), variance_exploding=True)
    out = ode_log_likelihood(process, model, x, steps=100)
    got = out["log_likelihood"].numpy()
    # the only approximation beside the integration: the prior N(0, I) for x_T; with the true
    # terminal density in its place the ODE's change of variables is exact
    s_max = float(process.sigma_at(999))
    y_T = out["x_T"].numpy() * math.sqrt(1 + s_max**2)
    true_prior = _mixture_density(process, means, stds, weights, y_T, step=999, variance_exploding=True)
    corrected = got - out["prior"].numpy() + true_prior
    assert np.allclose(corrected, exact, atol=2e-4), float(np.abs(corrected - exact).max())
    assert np.abs(got - exact).mean() < 1e-2  # the prior mismatch, O(|mean| / sigma_max), is small at T = 1000
    coarse = ode_log_likelihood(process, model, x, steps=10)["log_likelihood"].numpy()
    assert np.abs(coarse - exact).mean() > 10 * np.abs(corrected - exact).mean()  # converging with the steps


def test_images_are_refused():
    process = GaussianDiffusion(make_betas("linear", 10))
    with pytest.raises(ConfigError, match="vector"):
        ode_log_likelihood(process, lambda x, t: x, torch.zeros(2, 1, 4, 4))
