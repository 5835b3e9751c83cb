"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", Algorithm 2): multistep, second order, data prediction, log-SNR time; and
its SDE variant (diffusers' ``sde-dpmsolver++``, k-diffusion's ``sample_dpmpp_2m_sde``)."""

import numpy as np

from .loop import alpha_of, run_steps


def sample_dpmpp_2m(process, model, x, sigmas, noise, *, callback=None, clip_denoised=False, model_kwargs=None,
                    eta=0.0):
    """Solve the probability-flow ODE (``eta`` = 0) or the reverse SDE (``eta`` = 1) with
    DPM-Solver++(2M) over the grid ``sigmas``.

    With lambda = log(alpha_t / sigma_t) (half the log-SNR) and h_i = lambda_i - lambda_{i-1},
    each step is (Algorithm 2)

        x_i = (sigma_i / sigma_{i-1}) x_{i-1} - alpha_i (e^{-h_i} - 1) D_i,
        D_i = (1 + 1 / (2 r_i)) x0_{i-1} - 1 / (2 r_i) x0_{i-2},   r_i = h_{i-1} / h_i,

    in the variance-preserving alpha_t, sigma_t; the first step and the last (to sigma = 0, where
    h is infinite and the update returns x0) are first order, D_i = x0_{i-1}. The data
    prediction x0 comes from an eps-, x0- or v-network alike, clipped if asked. One network
    evaluation per step; runs in either direction (inversion).

    With ``eta`` > 0 each step also solves the linear part of the reverse SDE exactly and adds the
    noise it calls for, with eta h in place of the SDE's h (eta = 1: SDE-DPM-Solver++(2M)):

        x_i = (sigma_i / sigma_{i-1}) e^{-eta h_i} x_{i-1} - alpha_i (e^{-(1 + eta) h_i} - 1) D_i
              + sigma_i sqrt(1 - e^{-2 eta h_i}) z,

    which is the ODE step at eta = 0 and, for the first-order step, ancestral sampling's posterior
    mean and variance (DDIM with eta = 1) at eta = 1. Stochastic steps correct the errors of an
    imperfect network, so they often beat the ODE at a given number of evaluations on short-trained
    models (``README.md``'s MNIST table).
    """
    history = {}

    def step(i, x):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        _, x0 = process.predict_at(model, x, sigma, clip_denoised, model_kwargs)
        if sigma_next == 0:
            return x0, x0
        a, a_next = alpha_of(sigma), alpha_of(sigma_next)
        # in the VP form: sigma_t = alpha sigma, so sigma_t / sigma_{t-1} and lambda = -log(sigma)
        h = np.log(sigma) - np.log(sigma_next)
        d = x0
        if "x0" in history:
            r = history["h"] / h
            d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * history["x0"]
        x_next = (a_next * sigma_next) / (a * sigma) * np.exp(-eta * h) * x - a_next * np.expm1(-(1 + eta) * h) * d
        if eta > 0:
            x_next = x_next + a_next * sigma_next * np.sqrt(-np.expm1(-2 * eta * h)) * noise()
        history.update(x0=x0, h=h)
        return x_next, x0

    return run_steps(step, x, sigmas, callback)
