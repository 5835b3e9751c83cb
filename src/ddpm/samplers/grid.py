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


def sigma_grid(process, steps: int, spacing: Spacing) -> np.ndarray:
    """``steps`` + 1 descending EDM noise levels ending at 0 (clean data).

    ``linspace``, ``leading``, ``trailing``: steps of the chain chosen as
    :func:`~ddpm.diffusion.spaced_timesteps` names them; ``karras``: EDM eq. 5 (rho = 7)
    between the noise levels of the chain's first and last steps; ``logsnr``: levels even in
    lambda = -log sigma (half the log-SNR) between the same two, DPM-Solver's "logSNR" time steps
    (Lu et al. 2022, sec. 3.3), on which every step of DPM-Solver++ has the same h.
    """
    if not 1 <= steps <= process.num_timesteps:
        raise ConfigError(f"number of sampling steps must lie in 1..{process.num_timesteps}, got {steps}")
    if spacing in BETWEEN_STEPS:
        sigma_min, sigma_max = (float(s) for s in process.sigma_at([0, process.num_timesteps - 1]))
        if spacing == "karras":
            return karras_sigmas(steps, sigma_min, sigma_max)
        return np.append(np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), steps)), 0.0)
    ts = spaced_timesteps(process.num_timesteps, steps, spacing)[::-1]
    return np.append(process.sigma_at(ts), 0.0)


def paper_steps(process, sigmas) -> np.ndarray:
    """The paper's step t (1..T, fractional between steps; 0 for clean data) of each level."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    t = np.zeros_like(sigmas)
    noisy = sigmas > 0
    t[noisy] = process.t_at_sigma(sigmas[noisy]) + 1
    return t
