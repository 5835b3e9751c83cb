"""The one loop every sampler runs, over a grid of noise levels.

A sampler walks a grid ``sigmas`` of EDM noise levels sigma = sqrt((1 - alpha-bar) / alpha-bar)
(Karras et al. 2022, sec. 2): ``sigmas[0]`` is the level of the state it starts from and each
step moves the state to the next level; a grid ending at 0 ends at clean data. States are in
the variance-preserving form of DDPM, x = alpha (x_0 + sigma eps) with alpha = 1 / sqrt(1 + sigma^2).
"""

import numpy as np


def alpha_of(sigma: float) -> float:
    """sqrt(alpha-bar) at EDM noise level sigma: 1 / sqrt(1 + sigma^2)."""
    return 1.0 / np.sqrt(1.0 + sigma * sigma)


def run_steps(step, x, sigmas, callback=None):
    """x through ``step(i, x) -> (x_next, denoised)`` for each step i of the grid.

    ``callback`` (k-diffusion's convention) sees a dict with ``i``, ``x`` (the new state),
    ``sigma`` (the level stepped from), ``sigma_next`` and ``denoised`` (the predicted x_0).
    """
    for i in range(len(sigmas) - 1):
        x, denoised = step(i, x)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": float(sigmas[i]), "sigma_next": float(sigmas[i + 1]),
                      "denoised": denoised})
    return x
