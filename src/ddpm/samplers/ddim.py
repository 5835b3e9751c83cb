"""DDIM sampling (Song, Meng & Ermon 2021), deterministic at eta = 0."""

import torch


def ddim_step(process, model, x_t, t, noise, eta=0.0, clip_denoised=False, model_kwargs=None):
    """x_{t-1} from x_t by DDIM eq. 12 with sigma_t from eq. 16 scaled by ``eta``.

    x_{t-1} = sqrt(a_{t-1}) x0 + sqrt(1 - a_{t-1} - sigma^2) eps + sigma z, where a is
    alpha-bar and sigma = eta sqrt((1 - a_{t-1}) / (1 - a_t)) sqrt(1 - a_t / a_{t-1}).
    Returns (x_{t-1}, predicted x_0).
    """
    eps, x0 = process.model_predictions(model, x_t, t, clip_denoised, model_kwargs)
    a_t = process._extract("alphas_cumprod", t, x_t)
    a_prev = process._extract("alphas_cumprod_prev", t, x_t)
    sigma = eta * torch.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    x_prev = torch.sqrt(a_prev) * x0 + torch.sqrt((1 - a_prev - sigma**2).clamp(min=0)) * eps
    if eta > 0:
        x_prev = x_prev + sigma * noise
    return x_prev, x0


def ddim_loop(process, model, x_T, noise, eta=0.0, clip_denoised=False, model_kwargs=None, on_step=None):
    """Run DDIM over every step of ``process`` (usually a respaced process)."""
    x = x_T
    for i in reversed(range(process.num_timesteps)):
        t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
        x, _ = ddim_step(process, model, x, t, noise(), eta, clip_denoised, model_kwargs)
        if on_step is not None:
            on_step(x)
    return x
