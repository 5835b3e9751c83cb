"""Samplers over a :class:`~ddpm.diffusion.GaussianDiffusion` and a network.

:func:`sample` is the one entry point: it builds the grid of noise levels for the requested
number of steps and spacing, draws each sample's noise from its own seed, runs the chosen
sampler in batches, and returns the samples with the steps they visited (and the trajectory
when asked). :func:`invert` runs a deterministic sampler backwards, from data to its x_T.

Every sampler is one function of the same signature (k-diffusion's convention):
``sampler(process, model, x, sigmas, noise, *, callback, clip_denoised, model_kwargs, **options)``,
where ``x`` is the state at noise level ``sigmas[0]`` and ``noise()`` returns the next
standard-normal draw.
"""

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from ..compilation import Compiled, resolve_compile
from ..diffusion import GaussianDiffusion
from ..errors import ConfigError
from ..precision import Autocast, resolve_precision
from .ancestral import p_sample, sample_ancestral
from .ddim import sample_ddim
from .dpm_solver import sample_dpmpp_2m, sample_dpmpp_3m
from .grid import BETWEEN_STEPS, Spacing, paper_steps, sigma_grid
from .guidance import ClassifierFreeGuidance
from .karras import karras_sigmas, sample_euler, sample_heun
from .loop import alpha_of
from .noise import PerSampleNoise

Sampler = Literal["ancestral", "ddim", "dpm++2m", "dpm++", "dpm++3m", "euler", "heun"]

#: name -> (function, its default spacing, options it takes)
SAMPLERS = {
    "ancestral": (sample_ancestral, "linspace", ()),
    "ddim": (sample_ddim, "linspace", ("eta",)),
    "dpm++2m": (sample_dpmpp_2m, "karras", ("eta",)),
    "dpm++3m": (sample_dpmpp_3m, "karras", ("eta",)),
    "euler": (sample_euler, "karras", ("churn",)),
    "heun": (sample_heun, "karras", ("churn",)),
}
ALIASES = {"dpm++": "dpm++2m"}
#: samplers that are deterministic given x_T (with their default options) and so invertible
DETERMINISTIC = ("ddim", "dpm++2m", "dpm++3m", "euler", "heun")

__all__ = ["sample", "invert", "SampleOutput", "p_sample", "sample_ancestral", "sample_ddim", "sample_dpmpp_2m",
           "sample_dpmpp_3m", "sample_euler", "sample_heun", "karras_sigmas", "sigma_grid", "PerSampleNoise", "Sampler",
           "Spacing", "SAMPLERS", "resolve_sampler", "network_evaluations", "ClassifierFreeGuidance"]


@dataclass
class SampleOutput:
    """What :func:`sample` returns.

    x: the samples, float32 CPU (N, *shape).
    timesteps: the paper's step t of each state visited, x_T first (T) and the samples last (0);
        fractional between the chain's steps for EDM's grid.
    sigmas: the EDM noise level of each of those states (0 last).
    nfe: network evaluations per sample.
    trajectory: every state, (len(timesteps), N, *shape), when asked for.
    """

    x: torch.Tensor
    timesteps: np.ndarray
    sigmas: np.ndarray
    nfe: int
    trajectory: torch.Tensor | None = None


def resolve_sampler(name: str) -> str:
    """The canonical name of a sampler (``dpm++`` -> ``dpm++2m``), or a one-line error."""
    name = ALIASES.get(name, name)
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}: choose one of {', '.join(get_args(Sampler))}")
    return name


def network_evaluations(sampler: str, steps: int) -> int:
    """Network evaluations per sample of ``steps`` steps (Heun: 2 steps - 1)."""
    return 2 * steps - 1 if resolve_sampler(sampler) == "heun" else steps


def _check(sampler, spacing, eta, churn, clip_denoised, invertible=False) -> tuple:
    sampler = resolve_sampler(sampler)
    if not isinstance(clip_denoised, bool) and not 0 < clip_denoised < 1:
        raise ConfigError(f"clip_denoised must be True, False or a dynamic-thresholding quantile in (0, 1), "
                          f"got {clip_denoised!r}")
    fn, default_spacing, options = SAMPLERS[sampler]
    spacing = spacing or default_spacing
    if spacing not in get_args(Spacing):
        raise ConfigError(f"unknown spacing {spacing!r}: choose one of {', '.join(get_args(Spacing))}")
    if sampler == "ancestral" and spacing in BETWEEN_STEPS:
        raise ConfigError("ancestral sampling runs on the chain's own steps: use a linspace, leading or trailing spacing")
    if not eta >= 0:
        raise ConfigError(f"eta must be >= 0, got {eta}")
    if not churn >= 0:
        raise ConfigError(f"churn must be >= 0, got {churn}")
    kwargs = {k: v for k, v in (("eta", eta), ("churn", churn)) if k in options}
    if invertible and (sampler not in DETERMINISTIC or any(v > 0 for v in kwargs.values())):
        raise ConfigError(f"only deterministic samplers invert ({', '.join(DETERMINISTIC)}, with eta=0 and churn=0); "
                          f"got {sampler} {kwargs}")
    return sampler, fn, spacing, kwargs


@torch.no_grad()
def sample(
    process: GaussianDiffusion,
    model,
    shape,
    seeds,
    *,
    sampler: Sampler = "ancestral",
    steps: int | None = None,
    spacing: Spacing | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    eta: float = 0.0,
    churn: float = 0.0,
    clip_denoised: bool | float = False,
    labels: torch.Tensor | None = None,
    guidance: float | None = None,
    null_label: int | None = None,
    guidance_rescale: float = 0.0,
    x_T: torch.Tensor | None = None,
    batch_size: int = 64,
    device=None,
    precision: str = "fp32",
    compile: str = "none",
    return_trajectory: bool = False,
    progress: bool = False,
) -> SampleOutput:
    """Draw one sample per seed, of per-sample ``shape``, e.g. (2,) or (1, 28, 28).

    Args:
        sampler: ``ancestral`` (DDPM Algorithm 2), ``ddim`` (with ``eta``; 0 is deterministic),
            ``dpm++2m`` (alias ``dpm++``; DPM-Solver++(2M), with ``eta``: 0 solves the ODE, 1 the
            SDE), ``dpm++3m`` (its third-order multistep sibling, with ``eta``), ``euler`` or
            ``heun`` (EDM, with ``churn``).
        steps: number of steps; None uses every step of the chain. Heun takes two network
            evaluations per step but the last (see ``SampleOutput.nfe``).
        spacing: where the steps lie: ``linspace`` (from T-1 down to 0), ``leading``, ``trailing``,
            ``karras`` (EDM's) or ``logsnr`` (even in log-SNR); None: the sampler's own default,
            ``karras`` for DPM-Solver++ (measured best at few steps), Euler and Heun, else
            ``linspace``.
        sigma_min, sigma_max: narrow the ``karras`` and ``logsnr`` grids to these noise levels
            (EDM's sigma range) inside the chain's; None: the chain's first and last steps'.
        clip_denoised: clip the predicted x_0 to [-1, 1] at every step (bounded data); or a
            quantile p in (0, 1): Imagen's dynamic thresholding at that quantile of |x_0|.
        labels: class label per sample, passed to the network as ``y``.
        guidance: classifier-free guidance scale w (0: unconditional, 1: conditional, > 1: guided;
            Ho & Salimans 2022), in one batched call per step; needs ``labels`` and ``null_label``,
            the network's "no label" class. ``guidance_rescale``: Lin et al.'s rescale in [0, 1].
        x_T: start from these states (N, *shape) instead of each seed's noise (e.g. from
            :func:`invert`); the seeds still drive any noise drawn on the way.
        batch_size: samples per network call; results do not depend on it.
        precision: the network's: ``fp32``, or autocast ``bf16``/``fp16``, or ``auto`` (bf16 where the
            device has it natively, :mod:`ddpm.precision`); the samplers' arithmetic stays float64.
        compile: ``torch.compile`` of the network: ``none``, ``default``, ``reduce-overhead`` (CUDA
            graphs: one launch per network call), ``max-autotune``, or ``auto`` (the fastest that
            works on ``device``: :func:`ddpm.compilation.resolve_compile`).
        return_trajectory: also return every state, x_T first.
    """
    sampler, fn, spacing, kwargs = _check(sampler, spacing, eta, churn, clip_denoised)
    device = _device(model, device)
    precision = resolve_precision(precision, device)
    compile = resolve_compile(compile, device)
    if precision != "fp32":
        model = Autocast(model, precision)
    if compile != "none":
        model = Compiled(model, compile, device)
    if guidance is not None:
        if labels is None or null_label is None:
            raise ConfigError("guidance needs the labels to guide towards and the network's null label: "
                              "pass labels=... and null_label=<number of classes>")
        if not 0 <= guidance_rescale <= 1:
            raise ConfigError(f"guidance_rescale must lie in [0, 1], got {guidance_rescale}")
        model = ClassifierFreeGuidance(model, guidance, null_label, guidance_rescale, process.learned_variance)
    seeds = [int(s) for s in seeds]
    sigmas = sigma_grid(process, process.num_timesteps if steps is None else steps, spacing, sigma_min, sigma_max)
    if x_T is not None and tuple(x_T.shape) != (len(seeds), *shape):
        raise ConfigError(f"x_T has shape {tuple(x_T.shape)}, expected {(len(seeds), *shape)}")
    x, traj = _run(process, model, shape, seeds, sigmas, fn, kwargs, clip_denoised, labels, x_T, batch_size, device,
                   return_trajectory, progress, sampler)
    return SampleOutput(x, paper_steps(process, sigmas), sigmas, network_evaluations(sampler, len(sigmas) - 1), traj)


@torch.no_grad()
def invert(
    process: GaussianDiffusion,
    model,
    x0: torch.Tensor,
    *,
    sampler: Sampler = "ddim",
    steps: int | None = None,
    spacing: Spacing | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    clip_denoised: bool | float = False,
    labels: torch.Tensor | None = None,
    batch_size: int = 64,
    device=None,
) -> torch.Tensor:
    """Encode data ``x0`` (N, *shape) to the x_T from which :func:`sample` with the same sampler,
    steps, spacing and sigma range returns it (DDIM inversion, Song et al. 2021 sec. 4.3, and its analogue for
    every deterministic sampler): the sampler's ODE solved from the grid's least noisy level,
    where ``x0`` is taken as the state, up to its noisiest. Returns x_T, float32 CPU."""
    sampler, fn, spacing, kwargs = _check(sampler, spacing, 0.0, 0.0, clip_denoised, invertible=True)
    sigmas = sigma_grid(process, process.num_timesteps if steps is None else steps, spacing, sigma_min,
                        sigma_max)[-2::-1].copy()
    n = x0.shape[0]
    x, _ = _run(process, model, tuple(x0.shape[1:]), list(range(n)), sigmas, fn, kwargs, clip_denoised, labels,
                x0 * alpha_of(sigmas[0]), batch_size, device, False, False, sampler)
    return x


def _device(model, device) -> torch.device:
    """``device``, or by default the one the network's parameters are on."""
    if device is None:
        device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else "cpu"
    return torch.device(device)


def _run(process, model, shape, seeds, sigmas, fn, kwargs, clip_denoised, labels, x_T, batch_size, device,
         return_trajectory, progress, name):
    device = _device(model, device)
    dtype = torch.float32 if device.type == "mps" else torch.float64
    is_module = isinstance(model, torch.nn.Module)
    was_training = is_module and model.training
    if is_module:
        model.eval()
    steps = len(sigmas) - 1
    # a deterministic sampler draws x_T alone: do not draw ahead for steps it will not take
    draws = 1 if name in DETERMINISTIC and not any(v > 0 for v in kwargs.values()) else steps + 1
    results, trajectories = [], []
    bar = tqdm(total=len(seeds) * steps, disable=not progress, desc=name, unit="step")
    try:
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start : start + batch_size]
            noise = PerSampleNoise(chunk, shape, draws, device, dtype)
            x = noise() if x_T is None else x_T[start : start + batch_size].to(device, dtype)
            kw = {} if labels is None else {"y": labels[start : start + batch_size].to(device)}
            states = [x.float().cpu()] if return_trajectory else None

            def on_step(info, states=states, n=len(chunk)):
                bar.update(n)
                if states is not None:
                    states.append(info["x"].float().cpu())

            x = fn(process, model, x, sigmas, noise, callback=on_step, clip_denoised=clip_denoised,
                   model_kwargs=kw, **kwargs)
            results.append(x.float().cpu())
            if states is not None:
                trajectories.append(torch.stack(states))
    finally:
        bar.close()
        if is_module:
            model.train(was_training)
    return torch.cat(results), (torch.cat(trajectories, dim=1) if return_trajectory else None)
