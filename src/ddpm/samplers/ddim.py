"""DDIM sampling (Song, Meng & Ermon 2021), deterministic at eta = 0."""

import numpy as np

from .loop import alpha_of, run_steps


def sample_ddim(process, model, x, sigmas, noise, *, callback=None, clip_denoised=False, model_kwargs=None,
                eta=0.0):
    """DDIM eq. 12 from each level of ``sigmas`` to the next, with sigma_t of eq. 16 scaled by ``eta``:

    x_{t-1} = sqrt(a_{t-1}) x0 + sqrt(1 - a_{t-1} - s^2) eps + s z, a = alpha-bar,
    s = eta sqrt((1 - a_{t-1}) / (1 - a_t)) sqrt(1 - a_t / a_{t-1}).

    eta = 1 is ancestral sampling with beta-tilde (the same update); eta = 0 is Euler's method
    on the probability-flow ODE in x / alpha (EDM sec. 4), and runs in either direction.
    """

    def step(i, x):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        eps, x0 = process.predict_at(model, x, sigma, clip_denoised, model_kwargs)
        a_t, a_prev = alpha_of(sigma) ** 2, alpha_of(sigma_next) ** 2
        s = eta * np.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) if eta > 0 else 0.0
        x_next = np.sqrt(a_prev) * x0 + np.sqrt(max(1 - a_prev - s * s, 0.0)) * eps
        if eta > 0:
            x_next = x_next + s * noise()
        return x_next, x0

    return run_steps(step, x, sigmas, callback)
