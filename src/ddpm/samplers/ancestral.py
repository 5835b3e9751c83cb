"""Ancestral sampling: DDPM Algorithm 2, including the final noiseless t=0 step."""

import torch

from .loop import run_steps


def p_sample(process, model, x_t, t, noise, clip_denoised=False, model_kwargs=None):
    """One step x_{t-1} ~ p_theta(x_{t-1} | x_t) = N(mu_theta, Sigma_theta) (Algorithm 2, line 4),
    with the process's fixed or learned variance. Returns (x_{t-1}, predicted x_0).
    At t=0 the mean is returned without noise."""
    out = process.p_mean_variance(model, x_t, t, clip_denoised, model_kwargs)
    nonzero = (t != 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
    x_prev = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
    return x_prev, out["pred_xstart"]


def sample_ancestral(process, model, x, sigmas, noise, *, callback=None, clip_denoised=False, model_kwargs=None):
    """DDPM Algorithm 2 over the steps of the grid ``sigmas`` (which must end at 0).

    Fewer steps than T run the respaced chain (iDDPM sec. 4): betas re-derived for the kept
    steps, so fixed variances and a learned variance's endpoints beta and beta-tilde are those
    of the shorter chain (as improved-diffusion does).
    """
    steps = process.steps_at_sigmas(sigmas[:-1])
    chain = process.respaced(steps)

    def step(i, x):
        t = torch.full((x.shape[0],), len(steps) - 1 - i, device=x.device, dtype=torch.long)
        return p_sample(chain, model, x, t, noise(), clip_denoised, model_kwargs)

    return run_steps(step, x, sigmas, callback)
