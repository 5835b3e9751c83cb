"""Runs as diffusers ``DDPMPipeline`` folders and back (diffusers is an optional extra).

:func:`export_run` writes a folder ``DDPMPipeline.from_pretrained`` loads: ``unet/``
(``UNet2DModel`` config and safetensors weights), ``scheduler/`` (a ``DDPMScheduler``
carrying the run's schedule, T, prediction type, variance type and clipping) and
``model_index.json``, written by diffusers itself, plus the run's ``config.toml`` as
``ddpm_config.toml``. :func:`import_pipeline` turns such a folder (e.g. google/ddpm-cifar10-32
as downloaded) into a run directory that ``ddpm sample``, ``evaluate`` and ``report`` use
as any other. Networks map exactly (:mod:`ddpm.convert.unet2d`); settings either side
lacks are refused with one line naming them.
"""

import contextlib
import importlib
import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..config import Config, DiffusionConfig, ModelConfig, load_config, save_config
from ..errors import ConfigError, RunError
from ..schedules import make_betas
from ..train import checkpoint as ckpt
from ..validate import validate
from .unet2d import check_group_counts, from_unet2d, native_options, to_unet2d, unet2d_config

#: ddpm's targets and variances in diffusers' names
PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
VARIANCE_TYPES = {"fixed_small": "fixed_small", "fixed_large": "fixed_large", "learned_range": "learned_range"}
#: diffusers' names of the schedules whose betas it computes as ddpm does (checked numerically)
NAMED_SCHEDULES = {"linear": "linear", "quadratic": "scaled_linear", "sigmoid": "sigmoid", "cosine": "squaredcos_cap_v2"}


def _require_diffusers() -> None:
    """Refuse, with the install line, when the optional diffusers package is missing."""
    try:
        importlib.import_module("diffusers")
    except ImportError:
        raise ConfigError("diffusers is not installed: pip install 'ddpm[diffusers]'") from None


@contextlib.contextmanager
def _quiet_diffusers():
    """diffusers' loading messages (e.g. that ``accelerate`` would load faster) silenced."""
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _check_new(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(f"{path} already exists: choose a new folder for the {what}")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise RunError(f"{blocker} is a file, not a folder: choose another output path")


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` to ``out`` (an empty ``out`` is replaced)."""
    if out.is_dir():
        out.rmdir()
    tmp.rename(out)


def _same_betas(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------ export
def scheduler_config(cfg: Config, betas: np.ndarray) -> dict:
    """``DDPMScheduler`` arguments of a run: its named schedule when diffusers computes the same
    betas from the name, else the betas themselves (``trained_betas``)."""
    from diffusers import DDPMScheduler

    d = cfg.diffusion
    clip = cfg.sample.clip_denoised is not False
    common = dict(num_train_timesteps=len(betas), prediction_type=PREDICTION_TYPES[d.target],
                  variance_type=VARIANCE_TYPES[d.variance], clip_sample=clip, clip_sample_range=1.0)
    if d.schedule in NAMED_SCHEDULES:
        named = dict(common, beta_schedule=NAMED_SCHEDULES[d.schedule], beta_start=float(betas[0]),
                     beta_end=float(betas[-1]))
        if _same_betas(DDPMScheduler(**named).betas, betas):
            return named
    return dict(common, trained_betas=[float(b) for b in betas])


def export_run(run_dir, out, raw: bool = False, checkpoint: int | None = None) -> Path:
    """Write run ``run_dir`` (EMA weights, or ``raw``) as a ``DDPMPipeline`` folder ``out``."""
    from ..runs import load_run

    out = Path(out)
    _check_new(out, "exported pipeline")
    _require_diffusers()
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    run = load_run(run_dir, weights="raw" if raw else "ema", checkpoint=checkpoint)
    if not run.is_image or run.cfg.model.kind not in ("unet", "diffusers"):
        raise ConfigError(f"{run.path} holds a {run.cfg.model.kind} network for data of shape {run.shape}: only "
                          "U-Net image runs export to a diffusers DDPMPipeline")
    _, H, W = run.shape
    if H % run.model.multiple or W % run.model.multiple:
        raise ConfigError(f"{H}x{W} images are not a multiple of {run.model.multiple}: the U-Net pads them and "
                          "diffusers' UNet2DModel does not, so the exported network would differ; train at a "
                          f"size divisible by {run.model.multiple}")
    sample_size = H if H == W else (H, W)
    if run.cfg.model.kind == "diffusers":
        unet = run.model.unet
        unet.register_to_config(sample_size=sample_size)
    else:
        config = unet2d_config(run.model.config, sample_size)
        check_group_counts(run.model)
        unet = UNet2DModel(**config)
        unet.load_state_dict(to_unet2d(run.model.state_dict()))
    scheduler = DDPMScheduler(**scheduler_config(run.cfg, run.process.betas))
    tmp = out.with_name(out.name + ".tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    DDPMPipeline(unet=unet.eval(), scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
    save_config(run.cfg, tmp / "ddpm_config.toml")
    _publish(tmp, out)
    return out


# ------------------------------------------------------------------ import
def diffusion_config(scheduler: dict) -> tuple[DiffusionConfig, bool | float]:
    """The diffusion section equal to a diffusers scheduler configuration, and the clipping
    (True, False or a dynamic-thresholding quantile) it samples with."""
    from diffusers import DDPMScheduler

    def refuse(name, value, fix):
        raise ConfigError(f"scheduler setting {name}={value!r} is not supported by ddpm: {fix}")

    prediction = scheduler.get("prediction_type", "epsilon")
    target = {v: k for k, v in PREDICTION_TYPES.items()}.get(prediction)
    if target is None:
        refuse("prediction_type", prediction, f"ddpm models predict one of {', '.join(PREDICTION_TYPES.values())}")
    variance_type = scheduler.get("variance_type", "fixed_small") or "fixed_small"
    variance = {"fixed_small": "fixed_small", "fixed_small_log": "fixed_small", "fixed_large": "fixed_large",
                "fixed_large_log": "fixed_large", "learned_range": "learned_range"}.get(variance_type)
    if variance is None:
        refuse("variance_type", variance_type, "ddpm has fixed_small, fixed_large and learned_range")
    if scheduler.get("rescale_betas_zero_snr", False):
        refuse("rescale_betas_zero_snr", True, "a zero terminal SNR has no Gaussian prior to start sampling from")
    clip = bool(scheduler.get("clip_sample", True))
    if clip and scheduler.get("clip_sample_range", 1.0) != 1.0:
        refuse("clip_sample_range", scheduler["clip_sample_range"], "ddpm clips x0 to [-1, 1]")
    if scheduler.get("thresholding", False) and scheduler.get("sample_max_value", 1.0) > 1.0:
        clip = float(scheduler.get("dynamic_thresholding_ratio", 0.995))
    elif scheduler.get("thresholding", False):
        clip = True  # a threshold capped at sample_max_value=1 clips to [-1, 1]
    known = {k: v for k, v in scheduler.items() if not k.startswith("_")}
    betas = DDPMScheduler.from_config(known).betas.double().numpy()
    T = len(betas)
    section = DiffusionConfig(T=T, schedule="custom", betas=[float(b) for b in betas], target=target,
                              variance=variance)
    for ours, theirs in NAMED_SCHEDULES.items():
        if scheduler.get("trained_betas", None) is None and scheduler.get("beta_schedule", "linear") == theirs:
            start, end = scheduler.get("beta_start", 0.0001), scheduler.get("beta_end", 0.02)
            named = replace(section, schedule=ours, betas=None, beta_start=None if ours == "cosine" else float(start),
                            beta_end=None if ours == "cosine" else float(end))
            if _same_betas(make_betas(ours, T, named.beta_start, named.beta_end), betas):
                section = named
    return section, clip


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path} is missing: pass the folder of a diffusers DDPMPipeline "
                       "(model_index.json, unet/, scheduler/)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not valid JSON ({e}): download the pipeline again") from None


def import_pipeline(folder, out, data: str | None = None) -> Path:
    """Make run directory ``out`` from the ``DDPMPipeline`` folder ``folder``: the network and the
    process from the folder; the data, train and sample sections from its ``ddpm_config.toml``
    when it has one (an exported run), else the defaults; ``data`` names the data set the model
    was trained on (what ``ddpm evaluate`` compares with), else ``data.name`` is "unknown"."""
    folder, out = Path(folder), Path(out)
    _check_new(out, "imported run")
    _read_json(folder / "model_index.json")
    unet_config = _read_json(folder / "unet" / "config.json")
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    if unet_config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ConfigError(f"{folder / 'unet'} holds a {unet_config['_class_name']}: ddpm imports UNet2DModel pipelines")
    _require_diffusers()
    from diffusers import UNet2DModel

    from ..nets.unet import UNet
    from ..runs import RUN_FORMAT, build_network, write_json

    diffusion, clip = diffusion_config(scheduler)
    with _quiet_diffusers():
        unet = UNet2DModel.from_pretrained(folder, subfolder="unet").eval()
    size = unet.config.sample_size
    H, W = (size, size) if isinstance(size, int) else tuple(size)
    channels = unet.config.in_channels
    if unet.config.out_channels != channels * (2 if diffusion.variance == "learned_range" else 1):
        raise ConfigError(f"the UNet2DModel outputs {unet.config.out_channels} channels for {channels}-channel "
                          f"images, which does not fit variance_type={scheduler.get('variance_type', 'fixed_small')}")
    exported = folder / "ddpm_config.toml"
    cfg = load_config(exported) if exported.is_file() else Config(preset="imported")
    if data is not None or not exported.is_file():
        cfg.data.name = data or "unknown"
    try:
        options = native_options(dict(unet.config))
        check_group_counts(UNet(in_channels=channels, **options))
    except ConfigError as reason:  # keep the diffusers backbone as it is
        warnings.warn(f"kept as a diffusers network (model.kind=diffusers): {reason}")
        config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
        num_classes = max((unet.config.num_class_embeds or 1) - 1, 0)
        model = ModelConfig(kind="diffusers", unet=cfg.model.unet, class_conditional=bool(num_classes),
                            unet2d_config=json.dumps(config))
    else:
        num_classes = options["num_classes"] or 0
        model = ModelConfig(kind="unet", unet=cfg.model.unet, class_conditional=bool(num_classes),
                            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()
                               if k not in ("out_channels", "image_size", "resample_with_conv", "num_classes")})
    sample = replace(cfg.sample, clip_denoised=clip if isinstance(clip, bool) else None,
                     dynamic_threshold=None if isinstance(clip, bool) else clip)
    diffusion = replace(diffusion, loss=cfg.diffusion.loss, min_snr_gamma=cfg.diffusion.min_snr_gamma,
                        vlb_weight=cfg.diffusion.vlb_weight)
    cfg = replace(cfg, model=model, diffusion=diffusion, sample=sample)
    validate(cfg)
    shape = (channels, H, W)
    network = build_network(cfg, shape, num_classes)
    if model.kind == "unet":
        network.load_state_dict(from_unet2d(unet.state_dict(), network.state_dict()))
    else:
        network.unet.load_state_dict(unet.state_dict())
    meta = {"shape": list(shape), "num_classes": num_classes, "ddpm_version": __version__, "run_format": RUN_FORMAT,
            "imported_from": str(folder.resolve())}
    tmp = out.with_name(out.name + ".tmp-import")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_config(cfg, tmp / "config.toml")
    write_json(meta, tmp / "run.json")
    ckpt.atomic_save({k: v.contiguous() for k, v in network.state_dict().items()}, tmp / "model.safetensors",
                     {**meta, "step": 0})
    _publish(tmp, out)
    return out

