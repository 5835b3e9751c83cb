"""The one validation pass over a resolved configuration, run by every command before any work.

Types are checked as values are set (:mod:`ddpm.config`); here every field's range and
choices, and the rules between fields (sampling steps within T, the learning-rate floor
below the rate, ...). Choices come from the modules that implement them, so a new
schedule or sampler is accepted here as soon as it exists. A failed check raises
:class:`~ddpm.errors.ConfigError` naming the field, the value and the fix.
"""

from __future__ import annotations

import json
import math
from typing import get_args

from .compilation import COMPILE_MODES
from .errors import ConfigError
from .precision import PRECISIONS

OPTIMIZERS = ("adam", "adamw")
DECAYS = ("constant", "cosine", "linear")
MODEL_KINDS = ("mlp", "unet", "diffusers")
ATTENTIONS = ("full", "linear")
SPLITS = ("train", "test")


def _fail(field: str, value, fix: str):
    raise ConfigError(f"{field}={value!r} is invalid: {fix}")


def _choice(field: str, value, options) -> None:
    if value not in options:
        _fail(field, value, f"choose one of {', '.join(map(str, options))}")


def _at_least(field: str, value, low, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or not math.isfinite(value) or not value >= low:
        _fail(field, value, f"use a finite value >= {low}")


def _positive(field: str, value, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or not math.isfinite(value) or not value > 0:
        _fail(field, value, "use a finite positive value")


def check_data(d) -> None:
    if not isinstance(d.name, str) or not d.name.strip():
        _fail("data.name", d.name, "name a data set or a path")
    _at_least("data.n", d.n, 1)
    _choice("data.split", d.split, SPLITS)
    sides = d.image_size if isinstance(d.image_size, (list, tuple)) else [d.image_size]
    if d.image_size is not None and (not 1 <= len(sides) <= 2 or any(
            not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sides)):
        _fail("data.image_size", d.image_size, "give a positive side (e.g. 32) or a positive height and width "
              "(e.g. 32,48)")
    if d.channels is not None:
        _choice("data.channels", d.channels, (1, 3))
    from .data.folder import ALPHA_POLICIES

    _choice("data.alpha", d.alpha, tuple(ALPHA_POLICIES))
    if d.mean is not None and len(d.mean) != 2:
        _fail("data.mean", d.mean, "give two numbers, e.g. data.mean=[0.0,1.0]")
    if d.cov is not None and (len(d.cov) != 2 or any(len(row) != 2 for row in d.cov)):
        _fail("data.cov", d.cov, "give a 2x2 matrix, e.g. data.cov=[[1.0,0.0],[0.0,1.0]]")


def check_model(m) -> None:
    from .nets.embeddings import TIME_EMBEDDINGS
    from .nets.unet import UNET_PRESETS

    _choice("model.kind", m.kind, MODEL_KINDS)
    for name in ("width", "depth", "time_dim"):
        _at_least(f"model.{name}", getattr(m, name), 1)
    _choice("model.unet", m.unet, tuple(UNET_PRESETS))
    _choice("model.time_embedding", m.time_embedding, TIME_EMBEDDINGS)
    for name in ("base_channels", "num_res_blocks", "num_heads", "num_groups"):
        _at_least(f"model.{name}", getattr(m, name), 1, optional=True)
    for name in ("channel_mults", "attention_resolutions"):
        values = getattr(m, name)
        if values is not None and any(v < 1 for v in values):
            _fail(f"model.{name}", values, "use positive integers, e.g. [1,2,2]")
    if m.channel_mults is not None and not m.channel_mults:
        _fail("model.channel_mults", m.channel_mults, "give at least one level, e.g. [1,2,2]")
    if m.dropout is not None and not 0 <= m.dropout < 1:
        _fail("model.dropout", m.dropout, "use a probability in [0, 1)")
    if m.attention is not None:
        _choice("model.attention", m.attention, ATTENTIONS)
    _positive("model.norm_eps", m.norm_eps, optional=True)
    if m.unet2d_config is not None:
        try:
            json.loads(m.unet2d_config)
        except ValueError:
            _fail("model.unet2d_config", m.unet2d_config[:40] + "...", "give a UNet2DModel configuration as JSON")
        if m.kind != "diffusers":
            _fail("model.kind", m.kind, "model.unet2d_config is a diffusers network: set model.kind=diffusers")
    for name in ("freq_shift", "downsample_padding"):
        if getattr(m, name) is not None:
            _choice(f"model.{name}", getattr(m, name), (0, 1))


def check_diffusion(d) -> None:
    from .diffusion import LossType, Target, Variance
    from .schedules import SCHEDULES

    _at_least("diffusion.T", d.T, 1)
    _choice("diffusion.schedule", d.schedule, SCHEDULES)
    for name in ("beta_start", "beta_end"):
        value = getattr(d, name)
        if value is not None and not 0 < value < 1:  # (False for NaN too)
            _fail(f"diffusion.{name}", value, "a beta lies in (0, 1)")
    if d.beta_start is not None and d.beta_end is not None and d.beta_start > d.beta_end:
        _fail("diffusion.beta_start", d.beta_start, f"it must not exceed diffusion.beta_end={d.beta_end}")
    if d.schedule == "custom":
        if not d.betas:
            _fail("diffusion.betas", d.betas, "the custom schedule needs T betas in (0, 1)")
        if len(d.betas) != d.T:
            _fail("diffusion.T", d.T, f"the custom schedule has {len(d.betas)} betas: set diffusion.T={len(d.betas)}")
    _choice("diffusion.target", d.target, get_args(Target))
    _choice("diffusion.variance", d.variance, get_args(Variance))
    _choice("diffusion.loss", d.loss, get_args(LossType))
    _positive("diffusion.min_snr_gamma", d.min_snr_gamma, optional=True)
    _at_least("diffusion.vlb_weight", d.vlb_weight, 0)


def check_train(t) -> None:
    _at_least("train.steps", t.steps, 1)
    _positive("train.minutes", t.minutes, optional=True)
    _at_least("train.batch_size", t.batch_size, 1)
    _at_least("train.grad_accum", t.grad_accum, 1)
    _positive("train.lr", t.lr)
    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _at_least("train.weight_decay", t.weight_decay, 0)
    _at_least("train.warmup", t.warmup, 0)
    _choice("train.decay", t.decay, DECAYS)
    _at_least("train.min_lr", t.min_lr, 0)
    if t.min_lr > t.lr:
        _fail("train.min_lr", t.min_lr, f"the floor of the learning rate must not exceed train.lr={t.lr}")
    _positive("train.grad_clip", t.grad_clip, optional=True)
    if not 0 <= t.ema_decay < 1:  # (False for NaN too)
        _fail("train.ema_decay", t.ema_decay, "use a decay in [0, 1), e.g. 0.999")
    _positive("train.ema_halflife_kimg", t.ema_halflife_kimg, optional=True)
    if t.ema_std is not None:
        if not 0 < t.ema_std < 0.3:  # (False for NaN too)
            _fail("train.ema_std", t.ema_std, "use a relative width in (0, 0.3), e.g. EDM2's 0.05 or 0.10")
        if t.ema_halflife_kimg is not None:
            _fail("train.ema_std", t.ema_std, "give either train.ema_std or train.ema_halflife_kimg, not both")
    betas = t.adam_betas
    if not (isinstance(betas, list | tuple) and len(betas) == 2
            and all(isinstance(b, int | float) and 0 <= b < 1 for b in betas)):
        _fail("train.adam_betas", betas, "give two numbers in [0, 1), e.g. [0.9, 0.999]")
    _choice("train.precision", t.precision, tuple(PRECISIONS))
    _choice("train.compile", t.compile, COMPILE_MODES)
    from .train.timesteps import TIMESTEP_SAMPLING

    _choice("train.timestep_sampling", t.timestep_sampling, TIMESTEP_SAMPLING)
    if t.label_dropout is not None and not 0 <= t.label_dropout < 1:  # (False for NaN too)
        _fail("train.label_dropout", t.label_dropout, "use a share in [0, 1), e.g. 0.1")
    for name in ("log_every", "keep_checkpoints", "max_nonfinite"):
        _at_least(f"train.{name}", getattr(t, name), 1)
    for name in ("sample_every", "checkpoint_every", "eval_every"):
        _at_least(f"train.{name}", getattr(t, name), 0)
    _at_least("train.eval_n", t.eval_n, 2)
    if t.eval_features is not None:
        from .eval.image_metrics import FEATURES

        for f in t.eval_features:
            _choice("train.eval_features", f, FEATURES)
    _check_device("train.device", t.device)


def _check_device(field: str, name: str) -> None:
    kind, _, index = name.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        _fail(field, name, "use auto, cpu, cuda, cuda:N or mps")


def check_sample(s, T: int, chain_sigmas: tuple[float, float] | None = None) -> None:
    """The sample section; ``chain_sigmas``: the noise levels of the chain's first and last steps,
    which bound a sigma range (checked when given)."""
    from .samplers import SAMPLERS, Sampler, Spacing, resolve_sampler
    from .samplers.grid import BETWEEN_STEPS

    _choice("sample.sampler", s.sampler, get_args(Sampler))
    if s.steps is not None and not 1 <= s.steps <= T:
        _fail("sample.steps", s.steps, f"sampling takes 1..{T} steps (diffusion.T={T}), or none for all")
    if s.spacing is not None:
        _choice("sample.spacing", s.spacing, get_args(Spacing))
        if s.sampler == "ancestral" and s.spacing in BETWEEN_STEPS:
            _fail("sample.spacing", s.spacing, "ancestral sampling runs on the chain's own steps: use linspace, "
                  "leading or trailing")
    spacing = s.spacing or SAMPLERS[resolve_sampler(s.sampler)][1]
    lo, hi = chain_sigmas if chain_sigmas is not None else (0.0, math.inf)
    for name in ("sigma_min", "sigma_max"):
        value = getattr(s, name)
        _positive(f"sample.{name}", value, optional=True)
        if value is not None and spacing not in BETWEEN_STEPS:
            _fail(f"sample.{name}", value, f"a sigma range bounds the karras and logsnr grids, not the {spacing} "
                  "spacing's chain steps: leave it out or use the karras or logsnr spacing")
        if value is not None and not lo * (1 - 1e-9) <= value <= hi * (1 + 1e-9):
            _fail(f"sample.{name}", value, f"use a noise level within the chain's, {lo:.4g}..{hi:.4g}")
    if s.sigma_min is not None and s.sigma_max is not None and not s.sigma_min < s.sigma_max:
        _fail("sample.sigma_min", s.sigma_min, f"the range must rise to sample.sigma_max={s.sigma_max}")
    if not (math.isfinite(s.eta) and s.eta >= 0):
        _fail("sample.eta", s.eta, "eta (DDIM, DPM-Solver++) is >= 0 (0: deterministic, 1: as stochastic as ancestral sampling)")
    if not (math.isfinite(s.churn) and s.churn >= 0):
        _fail("sample.churn", s.churn, "EDM's churn is >= 0 (0: deterministic)")
    if s.dynamic_threshold is not None and not 0 < s.dynamic_threshold < 1:  # (False for NaN too)
        _fail("sample.dynamic_threshold", s.dynamic_threshold, "give a quantile in (0, 1), e.g. 0.995, or none")
    _choice("sample.precision", s.precision, tuple(PRECISIONS))
    _choice("sample.compile", s.compile, COMPILE_MODES)
    _at_least("sample.n", s.n, 1)
    _at_least("sample.batch_size", s.batch_size, 1)


def validate(cfg) -> None:
    """Every section of a resolved :class:`~ddpm.config.Config`, and the rules between them."""
    _at_least("seed", cfg.seed, 0)
    check_data(cfg.data)
    check_model(cfg.model)
    check_diffusion(cfg.diffusion)
    check_train(cfg.train)
    ranged = cfg.sample.sigma_min is not None or cfg.sample.sigma_max is not None
    check_sample(cfg.sample, cfg.diffusion.T, _chain_sigmas(cfg) if ranged else None)


def _chain_sigmas(cfg) -> tuple[float, float]:
    """The noise levels of a valid configuration's chain's first and last steps."""
    import warnings

    from .runs import build_process

    with warnings.catch_warnings():  # a chain that does not reach noise: building the run's process warns
        warnings.simplefilter("ignore")
        return build_process(cfg).sigma_range
