"""EDM's deterministic and stochastic samplers (Karras et al. 2022, Algorithms 1 and 2) over a
discrete-time DDPM network, through its denoiser D(x; sigma) in the variance-exploding form."""

import numpy as np

from .loop import alpha_of, run_steps

#: EDM's sigma-schedule exponent (Karras et al. 2022, eq. 5 and table 1)
RHO = 7.0


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = RHO) -> np.ndarray:
    """EDM eq. 5: sigma_i = (sigma_max^(1/rho) + i / (n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    i = 0..n-1, then 0."""
    ramp = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return np.append((inv_max + ramp * (inv_min - inv_max)) ** rho, 0.0)


def _sample(process, model, x, sigmas, noise, heun, callback, clip_denoised, model_kwargs, churn,
            s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0):
    n = len(sigmas) - 1

    def denoise(x_ve, sigma):
        # D(x; sigma): the network sees x / sqrt(1 + sigma^2) (EDM's c_in for a VP network) at the
        # step whose level is sigma, interpolated between training steps (clamped to the chain)
        _, x0 = process.predict_at(model, x_ve * alpha_of(sigma), sigma, clip_denoised, model_kwargs)
        return x0

    def step(i, x):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x = x / alpha_of(sigma)  # VP -> VE: x / alpha = x_0 + sigma eps
        gamma = min(churn / n, np.sqrt(2.0) - 1.0) if churn > 0 and s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:  # Algorithm 2, lines 5-6: raise the noise level to sigma_hat
            x = x + np.sqrt(sigma_hat**2 - sigma**2) * s_noise * noise()
        x0 = denoise(x, sigma_hat)
        d = (x - x0) / sigma_hat  # dx/dsigma of the probability-flow ODE, eq. 3 with sigma(t) = t
        x_next = x + (sigma_next - sigma_hat) * d
        if heun and sigma_next != 0:  # Algorithm 1, lines 9-11: second-order correction
            d_next = (x_next - denoise(x_next, sigma_next)) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * (d + d_next) / 2
        return x_next * alpha_of(sigma_next), x0

    return run_steps(step, x, sigmas, callback)


def sample_euler(process, model, x, sigmas, noise, *, callback=None, clip_denoised=False, model_kwargs=None,
                 churn=0.0):
    """Euler's method on the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma (EDM eq. 3),
    with EDM Algorithm 2's churn when ``churn`` > 0. One network evaluation per step."""
    return _sample(process, model, x, sigmas, noise, False, callback, clip_denoised, model_kwargs, churn)


def sample_heun(process, model, x, sigmas, noise, *, callback=None, clip_denoised=False, model_kwargs=None,
                churn=0.0):
    """Heun's second-order method (EDM Algorithm 1; with churn > 0, Algorithm 2): 2 n - 1 network
    evaluations for n steps (the last step, to sigma = 0, is Euler's)."""
    return _sample(process, model, x, sigmas, noise, True, callback, clip_denoised, model_kwargs, churn)
