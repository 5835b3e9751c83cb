"""Grids of noise levels to sample on: the chain's own steps by a named spacing, EDM's, or
levels even in log-SNR (DPM-Solver's)."""

from typing import Literal

import numpy as np

from ..diffusion import spaced_timesteps
from ..errors import ConfigError
from .karras import karras_sigmas

Spacing = Literal["linspace", "leading", "trailing", "karras", "logsnr"]
#: spacings whose levels lie between the chain's steps (not for ancestral sampling)
BETWEEN_STEPS = ("karras", "logsnr")


def sigma_grid(process, steps: int, spacing: Spacing, sigma_min: float | None = None,
               sigma_max: float | None = None) -> np.ndarray:
    """``steps`` + 1 descending EDM noise levels ending at 0 (clean data).

    ``linspace``, ``leading``, ``trailing``: steps of the chain chosen as
    :func:`~ddpm.diffusion.spaced_timesteps` names them; ``karras``: EDM eq. 5 (rho = 7)
    between the noise levels of the chain's first and last steps; ``logsnr``: levels even in
    lambda = -log sigma (half the log-SNR) between the same two, DPM-Solver's "logSNR" time steps
    (Lu et al. 2022, sec. 3.3), on which every step of DPM-Solver++ has the same h.

    ``sigma_min`` and ``sigma_max`` narrow those two grids to a range inside the chain's (EDM's
    sigma_min and sigma_max, Karras et al. 2022, Table 1): few steps are then not spent where the
    data is pure noise or already clean. Starting below the chain's sigma_max starts from
    N(0, I) all the same, as EDM does at its sigma_max; the last step still goes to 0.
    """
    if not 1 <= steps <= process.num_timesteps:
        raise ConfigError(f"number of sampling steps must lie in 1..{process.num_timesteps}, got {steps}")
    lo, hi = process.sigma_range
    if spacing not in BETWEEN_STEPS:
        if sigma_min is not None or sigma_max is not None:
            raise ConfigError(f"sigma_min and sigma_max bound the karras and logsnr grids; the {spacing} spacing takes "
                              "the chain's own steps: leave them out or use --spacing karras or logsnr")
        ts = spaced_timesteps(process.num_timesteps, steps, spacing)[::-1]
        return np.append(process.sigma_at(ts), 0.0)
    sigma_min = lo if sigma_min is None else float(sigma_min)
    sigma_max = hi if sigma_max is None else float(sigma_max)
    if not lo * (1 - 1e-9) <= sigma_min < sigma_max <= hi * (1 + 1e-9):  # (False for NaN too)
        raise ConfigError(f"sigma_min={sigma_min:g} and sigma_max={sigma_max:g} must satisfy {lo:.4g} <= sigma_min < "
                          f"sigma_max <= {hi:.4g}, the noise levels of the chain's first and last steps")
    if spacing == "karras":
        return karras_sigmas(steps, sigma_min, sigma_max)
    return np.append(np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), steps)), 0.0)


def paper_steps(process, sigmas) -> np.ndarray:
    """The paper's step t (1..T, fractional between steps; 0 for clean data) of each level."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    t = np.zeros_like(sigmas)
    noisy = sigmas > 0
    t[noisy] = process.t_at_sigma(sigmas[noisy]) + 1
    return t
