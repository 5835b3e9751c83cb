"""Ancestral sampling: DDPM Algorithm 2, including the final noiseless t=0 step."""

import torch


def p_sample(process, model, x_t, t, noise, clip_denoised=False, model_kwargs=None):
    """One step x_{t-1} ~ p_theta(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I) (Algorithm 2, line 4).

    Returns (x_{t-1}, predicted x_0). At t=0 the mean is returned without noise.
    """
    out = process.p_mean_variance(model, x_t, t, clip_denoised, model_kwargs)
    nonzero = (t != 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
    x_prev = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
    return x_prev, out["pred_xstart"]


def ancestral_loop(process, model, x_T, noise, clip_denoised=False, model_kwargs=None, on_step=None):
    """Run the reverse chain from x_T through every step of ``process`` (T-1 .. 0).

    ``noise()`` returns the next standard-normal draw; ``on_step(x)`` sees each new state.
    """
    x = x_T
    for i in reversed(range(process.num_timesteps)):
        t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
        x, _ = p_sample(process, model, x, t, noise(), clip_denoised, model_kwargs)
        if on_step is not None:
            on_step(x)
    return x
