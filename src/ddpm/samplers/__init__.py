"""Samplers over a :class:`~ddpm.diffusion.GaussianDiffusion` and a network.

:func:`sample` is the one entry point: it respaces the process to the requested
number of steps (always starting at the noisiest step), draws each sample's noise
from its own seed, runs the chosen sampler in batches, and can return the whole
trajectory.
"""

from typing import Literal, get_args

import torch
from tqdm.auto import tqdm

from ..diffusion import GaussianDiffusion, spaced_timesteps
from ..errors import ConfigError
from .ancestral import ancestral_loop, p_sample
from .ddim import ddim_loop, ddim_step
from .noise import PerSampleNoise

Sampler = Literal["ancestral", "ddim"]

__all__ = ["sample", "p_sample", "ddim_step", "ancestral_loop", "ddim_loop", "PerSampleNoise", "Sampler"]


@torch.no_grad()
def sample(
    process: GaussianDiffusion,
    model: torch.nn.Module,
    shape,
    seeds,
    *,
    sampler: Sampler = "ancestral",
    steps: int | None = None,
    eta: float = 0.0,
    clip_denoised: bool = False,
    labels: torch.Tensor | None = None,
    batch_size: int = 64,
    device=None,
    return_trajectory: bool = False,
    progress: bool = False,
):
    """Draw one sample per seed, of per-sample ``shape``, e.g. (2,) or (1, 28, 28).

    Args:
        sampler: ``ancestral`` (DDPM Algorithm 2) or ``ddim`` (with ``eta``; 0 is deterministic).
        steps: number of network evaluations; None uses every step of the chain.
            Fewer steps respace the chain (improved-diffusion), evenly from T-1 down to 0.
        clip_denoised: clip the predicted x_0 to [-1, 1] at every step (bounded data).
        labels: class label per sample, passed to the network as ``y``.
        batch_size: samples per network call; results do not depend on it.
        return_trajectory: also return every state, shape (steps + 1, N, *shape), x_T first.

    Returns a float32 CPU tensor (N, *shape) (and the trajectory when asked).
    """
    if sampler not in get_args(Sampler):
        raise ConfigError(f"unknown sampler {sampler!r}: choose one of {', '.join(get_args(Sampler))}")
    if eta < 0:
        raise ConfigError(f"eta must be >= 0, got {eta}")
    seeds = [int(s) for s in seeds]
    if steps is not None:
        process = process.respaced(spaced_timesteps(process.num_timesteps, steps))
    if device is None:
        device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else "cpu"
    device = torch.device(device)
    dtype = torch.float32 if device.type == "mps" else torch.float64
    is_module = isinstance(model, torch.nn.Module)
    was_training = is_module and model.training
    if is_module:
        model.eval()
    results, trajectories = [], []
    bar = tqdm(total=len(seeds) * process.num_timesteps, disable=not progress, desc=sampler, unit="eval")
    try:
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start : start + batch_size]
            noise = PerSampleNoise(chunk, shape, process.num_timesteps + 1, device, dtype)
            x_T = noise()
            kwargs = {} if labels is None else {"y": labels[start : start + batch_size].to(device)}
            states = [x_T.float().cpu()] if return_trajectory else None

            def on_step(x, states=states, n=len(chunk)):
                bar.update(n)
                if states is not None:
                    states.append(x.float().cpu())

            if sampler == "ancestral":
                x = ancestral_loop(process, model, x_T, noise, clip_denoised, kwargs, on_step)
            else:
                x = ddim_loop(process, model, x_T, noise, eta, clip_denoised, kwargs, on_step)
            results.append(x.float().cpu())
            if states is not None:
                trajectories.append(torch.stack(states))
    finally:
        bar.close()
        if is_module:
            model.train(was_training)
    out = torch.cat(results)
    if return_trajectory:
        return out, torch.cat(trajectories, dim=1)
    return out
