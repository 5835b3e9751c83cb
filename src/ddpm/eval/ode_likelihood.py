"""Exact log-likelihood of vector data under the probability-flow ODE (Song et al. 2021, sec. 4.3
and appendix D.2), beside the variational bound of :mod:`ddpm.eval.likelihood`.

In EDM's variables y = x / alpha (the data plus noise of level sigma) the sampler's ODE is
dy/dsigma = eps_theta(alpha y; sigma) (Karras et al. 2022, eq. 3), and by the instantaneous
change of variables (Chen et al. 2018)

    log p_{sigma_min}(y_min) = log p_{sigma_max}(y_max) + integral_{sigma_min}^{sigma_max} div_y eps_theta dsigma,

with y_max the end of the ODE solved upwards from y_min and p_{sigma_max} = N(0, (1 + sigma_max^2) I),
the DDPM prior N(0, I) of x_T. The divergence is the exact trace of the D x D Jacobian (one
backward pass per dimension: this is for 2-D data), the integral a fixed-step fourth-order
Runge-Kutta in log sigma. The ODE starts at the chain's first noise level (sigma_min, that of
t = 0; 0.01 for the linear schedule) with y_min = x_0, as Song et al. start at t = epsilon: the
result is the density of x_0 + sigma_min eps, the data as the network models it, in nats per
dimension (as the sampler's inversion, :func:`ddpm.samplers.invert`, takes the data as that state).
"""

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, RunError
from .likelihood import _load_split

RESULT = "nll.json"


def _velocity_and_divergence(process, model, y, sigma, model_kwargs):
    """dy/dsigma = eps_theta(alpha y; sigma) and its exact divergence in y, per example."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        alpha = 1.0 / math.sqrt(1.0 + sigma * sigma)
        eps, _ = process.predict_at(model, alpha * y, sigma, False, model_kwargs)
        div = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        for d in range(y.shape[1]):
            (grad,) = torch.autograd.grad(eps[:, d].sum(), y, retain_graph=d + 1 < y.shape[1])
            div = div + grad[:, d]
    return eps.detach(), div.detach()


def ode_log_likelihood(process, model, x0: torch.Tensor, steps: int = 200, model_kwargs=None) -> dict:
    """log p(x0) per example (nats, summed over dimensions) under the probability-flow ODE of
    ``model``, with ``steps`` RK4 steps evenly spaced in log sigma (4 network evaluations and D
    backward passes each). Returns ``log_likelihood`` (B,), ``prior`` (B,) and ``x_T`` (B, D)."""
    if x0.ndim != 2:
        raise ConfigError(f"the exact likelihood is for vector data (N, D), got shape {tuple(x0.shape)}")
    if steps < 1:
        raise ConfigError(f"steps={steps} is invalid: pass a positive number of integration steps, e.g. 200")
    x0 = x0.double()
    s_min, s_max = process.sigma_range
    grid = np.exp(np.linspace(math.log(s_min), math.log(s_max), steps + 1))
    y = x0  # the state at sigma_min, in EDM's variables
    log_det = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)

    def f(y, sigma):  # d/d(log sigma) of (y, integral) = sigma * (velocity, divergence)
        v, div = _velocity_and_divergence(process, model, y, sigma, model_kwargs)
        return sigma * v, sigma * div

    for a, b in zip(grid[:-1], grid[1:]):
        h = math.log(b) - math.log(a)
        mid = math.sqrt(a * b)
        k1y, k1 = f(y, a)
        k2y, k2 = f(y + h / 2 * k1y, mid)
        k3y, k3 = f(y + h / 2 * k2y, mid)
        k4y, k4 = f(y + h * k3y, b)
        y = y + h / 6 * (k1y + 2 * k2y + 2 * k3y + k4y)
        log_det = log_det + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    D = x0.shape[1]
    var_T = 1.0 + s_max * s_max
    prior = -0.5 * (y.pow(2).sum(1) / var_T + D * math.log(2 * math.pi * var_T))
    log_lik = prior + log_det
    return {"log_likelihood": log_lik, "prior": prior, "x_T": y / math.sqrt(var_T)}


def evaluate_nll(run, out_dir, *, split: str = "test", n: int | None = 1000, steps: int = 200,
                 batch_size: int = 1000) -> dict:
    """The probability-flow ODE's negative log-likelihood of a 2-D run on ``n`` points of ``split``
    (for 2-D data "test" is a fresh draw of the true distribution), in nats/dim; written to
    ``nll.json`` in ``out_dir``."""
    if run.is_image:
        raise ConfigError("the exact ODE likelihood is computed for vector (2-D) runs: use --bpd for images")
    if steps < 1 or (n is not None and n < 1) or batch_size < 1:
        raise ConfigError(f"--nll needs positive n, steps and batch size, got n={n}, steps={steps}, "
                          f"batch_size={batch_size}")
    data = _load_split(run.cfg, split, n)
    if tuple(data.shape) != tuple(run.shape):
        raise RunError(f"the {split!r} data has shape {tuple(data.shape)}, the run models {tuple(run.shape)}")
    x = data.x[: n or len(data)].double()
    values = []
    for start in range(0, len(x), batch_size):
        values.append(ode_log_likelihood(run.process, run.model, x[start : start + batch_size], steps)["log_likelihood"])
    nll = -torch.cat(values).numpy() / x.shape[1]
    result = {"nll": {
        "value": float(nll.mean()), "std_error": float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else None,
        "n": len(nll), "unit": "nats/dim", "data": run.cfg.data.name, "split": split, "steps": steps,
        "method": "probability-flow ODE, RK4 in log sigma, exact divergence",
        "density_of": "x_0 + sigma_min eps", "sigma_min": float(run.process.sigma_at(0)),
        "checkpoint_step": run.step,
        "weights": getattr(run, "weights", "ema"),
    }}
    out_dir = Path(out_dir)
    tmp = out_dir / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out_dir / RESULT)
    return result
