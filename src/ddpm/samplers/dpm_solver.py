"""DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models"): multistep solvers of the diffusion ODE in its data-prediction form, in
log-SNR time. (2M) is the paper's Algorithm 2; (3M) carries the same exponential-integrator
expansion one term further; both with the SDE variant (diffusers' ``sde-dpmsolver++``,
k-diffusion's ``sample_dpmpp_2m_sde`` and ``sample_dpmpp_3m_sde``)."""

from collections import deque

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
    return _multistep(2, process, model, x, sigmas, noise, callback, clip_denoised, model_kwargs, eta)


def sample_dpmpp_3m(process, model, x, sigmas, noise, *, callback=None, clip_denoised=False, model_kwargs=None,
                    eta=0.0):
    """DPM-Solver++(3M): :func:`sample_dpmpp_2m` with the data prediction's second derivative in
    lambda estimated from the last three predictions, a third-order multistep method.

    The exact step integrates x0(lambda) against e^{-(lambda_i - lambda)} (DPM-Solver++ eq. 8);
    its Taylor expansion about lambda_{i-1} (with kappa = 1 + eta, phi_2(z) = 1 + (e^{-z} - 1) / z,
    phi_3(z) = phi_2(z) / z - 1/2) gives

        x_i = (sigma_i / sigma_{i-1}) e^{-eta h} x_{i-1} - alpha_i (e^{-kappa h} - 1) x0_{i-1}
              + alpha_i phi_2(kappa h) h x0' - alpha_i phi_3(kappa h) h^2 x0'' (+ the SDE's noise),

    with h x0' and h^2 x0'' from divided differences of x0_{i-1}, x0_{i-2}, x0_{i-3}
    (r_0 = h_{i-1} / h, r_1 = h_{i-2} / h):

        D1_0 = (x0_{i-1} - x0_{i-2}) / r_0,   D1_1 = (x0_{i-2} - x0_{i-3}) / r_1,
        h x0'   ~ D1_0 + r_0 / (r_0 + r_1) (D1_0 - D1_1),   h^2 x0'' ~ 2 (D1_0 - D1_1) / (r_0 + r_1).

    The reference implementation (and diffusers' and k-diffusion's after it) use half that
    estimate of h^2 x0'', which leaves the method second order; this one converges at third
    order (``tests/test_samplers.py``). The first step is first order and the second is the
    (2M) step; so is the last step before sigma = 0 on grids of fewer than 15 steps (diffusers'
    "lower order final", which keeps few-step sampling stable), and the step to sigma = 0 returns
    x0. One network evaluation per step; runs in either direction (inversion).
    """
    return _multistep(3, process, model, x, sigmas, noise, callback, clip_denoised, model_kwargs, eta)


def _multistep(order, process, model, x, sigmas, noise, callback, clip_denoised, model_kwargs, eta):
    history = deque(maxlen=order - 1)  # (x0, h) of the last steps taken, newest last
    lower_order_final = order > 2 and len(sigmas) - 1 < 15

    def step(i, x):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        _, x0 = process.predict_at(model, x, sigma, clip_denoised, model_kwargs)
        if sigma_next == 0:
            return x0, x0
        a, a_next = alpha_of(sigma), alpha_of(sigma_next)
        # in the VP form: sigma_t = alpha sigma, so sigma_t / sigma_{t-1} and lambda = -log(sigma)
        h = np.log(sigma) - np.log(sigma_next)
        kh = (1 + eta) * h
        k = min(order, len(history) + 1)
        if k == 3 and lower_order_final and i + 2 < len(sigmas) and sigmas[i + 2] == 0:
            k = 2
        x_next = (a_next * sigma_next) / (a * sigma) * np.exp(-eta * h) * x - a_next * np.expm1(-kh) * x0
        if k == 2:
            x0_1, h_1 = history[-1]
            x_next = x_next - a_next * np.expm1(-kh) * (x0 - x0_1) * h / (2 * h_1)
        elif k == 3:
            (x0_2, h_2), (x0_1, h_1) = history
            r0, r1 = h_1 / h, h_2 / h
            d1_0, d1_1 = (x0 - x0_1) / r0, (x0_1 - x0_2) / r1
            d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
            d2 = 2 * (d1_0 - d1_1) / (r0 + r1)
            phi_2 = np.expm1(-kh) / kh + 1
            phi_3 = phi_2 / kh - 0.5
            x_next = x_next + a_next * phi_2 * d1 - a_next * phi_3 * d2
        if eta > 0:
            x_next = x_next + a_next * sigma_next * np.sqrt(-np.expm1(-2 * eta * h)) * noise()
        history.append((x0, h))
        return x_next, x0

    return run_steps(step, x, sigmas, callback)
