"""Runs: train into a self-describing directory, then sample and evaluate from it alone.

A run directory holds ``config.toml`` (resolved), ``metrics.jsonl``, ``model.safetensors``
(EMA weights), ``checkpoints/``, ``pictures/``, for images ``data.json`` (the data summary)
and, after evaluation, ``eval.json``.
These functions are what the command line calls; they are as usable from a notebook.
"""

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import Config, load_config, save_config
from .data import Dataset, load_dataset, to_uint8
from .diffusion import GaussianDiffusion
from .errors import ConfigError, RunError
from .nets import build_model
from .samplers import network_evaluations, sample
from .schedules import make_betas
from .train import checkpoint as ckpt
from .train.trainer import Trainer
from .validate import validate

#: version of the run-directory layout; a run of a newer layout is refused, not misread
RUN_FORMAT = 1
#: sampler settings of the pictures drawn during training (fixed seeds, so they compare across steps)
SNAPSHOT_SEEDS = range(10_000, 10_064)


def build_process(cfg: Config) -> GaussianDiffusion:
    d = cfg.diffusion
    betas = make_betas(d.schedule, d.T, d.beta_start, d.beta_end, d.betas)
    return GaussianDiffusion(betas, d.target, d.variance, d.loss, d.min_snr_gamma, vlb_weight=d.vlb_weight)


def build_network(cfg: Config, shape, num_classes: int = 0):
    """The configured network for data of ``shape``, with a variance output when the process learns one."""
    return build_model(cfg.model, shape, num_classes, 2 if cfg.diffusion.variance == "learned_range" else 1)


def sampling_options(cfg: Config, sampler=None, steps=None, spacing=None, eta=None, churn=None, precision=None,
                     device="cpu", compile=None, sigma_min=None, sigma_max=None) -> dict:
    """The run's sampler settings with any given overrides: sampler, steps, spacing, sigma range,
    eta, churn, precision, compile (the names of :func:`ddpm.samplers.sample`); the spacing resolved
    to the sampler's own default, the precision and the compile mode to the ones ``device`` runs. The
    run's spacing and sigma range hold for its own sampler only, the range for the grids it bounds."""
    from .compilation import resolve_compile
    from .precision import resolve_precision
    from .samplers import SAMPLERS, resolve_sampler
    from .samplers.grid import BETWEEN_STEPS

    s = cfg.sample
    name = resolve_sampler(sampler or s.sampler)
    own = sampler in (None, s.sampler)
    spacing = spacing or (s.spacing if own else None) or SAMPLERS[name][1]
    own_range = own and spacing in BETWEEN_STEPS
    return {"sampler": name, "steps": steps if steps is not None else s.steps, "spacing": spacing,
            "sigma_min": sigma_min if sigma_min is not None else (s.sigma_min if own_range else None),
            "sigma_max": sigma_max if sigma_max is not None else (s.sigma_max if own_range else None),
            "eta": s.eta if eta is None else eta, "churn": s.churn if churn is None else churn,
            "precision": resolve_precision(precision or s.precision, device),
            "compile": resolve_compile(compile or s.compile, device)}


def clip_denoised(cfg: Config, is_image: bool) -> bool | float:
    """Clip predicted x_0 to [-1, 1]: on by default for images (bounded data), off for vectors; or
    the quantile of dynamic thresholding when ``sample.dynamic_threshold`` is set."""
    if cfg.sample.dynamic_threshold is not None:
        return cfg.sample.dynamic_threshold
    return is_image if cfg.sample.clip_denoised is None else cfg.sample.clip_denoised


@dataclass
class Run:
    """A trained model loaded from its run directory, ready to sample."""

    path: Path
    cfg: Config
    process: GaussianDiffusion
    model: torch.nn.Module
    shape: tuple
    num_classes: int
    step: int
    weights: str = "ema"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def sample(self, n: int, seed: int = 0, sampler=None, steps=None, spacing=None, eta=None, churn=None, clip=None,
               labels=None, guidance=None, guidance_rescale=0.0, batch_size=None, return_trajectory=False,
               progress=False, precision=None, compile=None, sigma_min=None, sigma_max=None):
        """``n`` samples (a :class:`~ddpm.samplers.SampleOutput`), sample i from seed ``seed + i``;
        options default to the run's config. Non-finite samples (a diverged model) raise
        :class:`RunError` instead of being returned."""
        out = sample(
            self.process, self.model, self.shape, range(seed, seed + n),
            **sampling_options(self.cfg, sampler, steps, spacing, eta, churn, precision, self.device, compile,
                               sigma_min, sigma_max),
            clip_denoised=clip_denoised(self.cfg, self.is_image) if clip is None else clip,
            labels=labels, guidance=guidance, null_label=self.num_classes, guidance_rescale=guidance_rescale,
            batch_size=self.cfg.sample.batch_size if batch_size is None else batch_size,
            return_trajectory=return_trajectory,
            progress=progress,
        )
        x = out.x
        bad = int((~torch.isfinite(x.flatten(1))).any(dim=1).sum())
        if bad:
            raise RunError(f"{bad} of {n} samples of {self.path} hold non-finite values: the model diverged; "
                           "sample an earlier checkpoint with --checkpoint STEP or train again")
        return out


def load_run(run_dir, device="cpu", weights: str = "ema", checkpoint: int | None = None) -> Run:
    """A trained model from its run directory: the EMA weights (``weights="ema"``) or the raw
    ones (``"raw"``), of the finished run (``model.safetensors``, EMA only) or of a checkpoint
    (``checkpoint`` = its step; the newest when the run has not finished or raw weights are asked)."""
    path = Path(run_dir)
    if not (path / "config.toml").is_file() or not (path / "run.json").is_file():
        raise RunError(f"{path} is not a run directory (no config.toml/run.json): pass the --out of a `ddpm train`")
    if weights not in ("ema", "raw"):
        raise RunError(f"weights must be 'ema' or 'raw', got {weights!r}")
    cfg = load_config(path / "config.toml")
    validate(cfg)
    final = path / "model.safetensors"
    if checkpoint is None and weights == "ema" and final.is_file():
        state, meta = ckpt.load_verified(final)
    else:
        chosen = ckpt.latest_checkpoint(path) if checkpoint is None else path / "checkpoints" / f"step_{checkpoint:08d}"
        if not (chosen / ckpt.WEIGHTS).is_file():
            steps = ", ".join(str(int(p.name[5:])) for p in ckpt.list_checkpoints(path)) or "none"
            raise RunError(f"{path} has no checkpoint at step {checkpoint}: choose one of {steps}")
        tensors, meta = ckpt.load_verified(chosen / ckpt.WEIGHTS)
        state = ckpt.strip_prefix(tensors, "model" if weights == "raw" else "ema")
    meta = {**read_run_json(path), **meta}
    shape, num_classes = tuple(meta["shape"]), int(meta.get("num_classes", 0))
    model = build_network(cfg, shape, num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise RunError(f"the weights in {path} do not match its config.toml ({detail[:300]}): "
                       "sample with the configuration the run was trained with") from None
    bad = [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise RunError(f"the {weights} weights of {path} hold non-finite values (in {bad[0]}, {len(bad)} tensors): "
                       "the run diverged; sample an earlier checkpoint with --checkpoint STEP or train again")
    model.to(device).eval()
    return Run(path, cfg, build_process(cfg), model, shape, num_classes, int(meta.get("step", 0)), weights)


def read_run_json(path: Path) -> dict:
    """``run.json``, refused when unreadable or written by a newer, incompatible ``ddpm``."""
    try:
        meta = json.loads((path / "run.json").read_text())
        shape = meta["shape"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunError(f"{path / 'run.json'} is damaged: the run cannot be rebuilt; train it again") from None
    if not isinstance(shape, list):
        raise RunError(f"{path / 'run.json'} is damaged: the run cannot be rebuilt; train it again")
    if meta.get("run_format", 1) > RUN_FORMAT:
        raise RunError(f"{path} was written by ddpm {meta.get('ddpm_version', '?')} (run format "
                       f"{meta.get('run_format')}), which this ddpm {__version__} cannot read: upgrade ddpm")
    return meta


def save_samples(samples: torch.Tensor, path, is_image: bool, labels=None) -> Path:
    """``.npz`` with ``arr_0``: uint8 NHWC for images (the ADM evaluation layout), float32 (N, D) otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = to_uint8(samples).permute(0, 2, 3, 1).numpy() if is_image else samples.float().numpy()
    extra = {} if labels is None else {"arr_1": np.asarray(labels)}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, arr_0=arr, **extra)
    tmp.replace(path)
    return path


# ------------------------------------------------------------------ training
#: what ``--resume`` may change: how long and how a run goes on, never what it is
RESUMABLE = {"train": {"steps", "minutes", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
                       "progress", "tensorboard", "eval_every", "eval_n", "eval_features", "device"},
             "sample": None}  # None: every field


def check_resume(saved: Config, cfg: Config) -> None:
    """Refuse overrides that would change what a run is (its data, network, process, optimisation)."""
    old, new = asdict(saved), asdict(cfg)
    for section in ("seed", "preset", "data", "model", "diffusion", "train", "sample"):
        a, b = old.get(section), new.get(section)
        if not isinstance(a, dict):
            if a != b:
                raise RunError(f"--resume cannot change {section} ({a!r} -> {b!r}): start a new run with --out")
            continue
        allowed = RESUMABLE.get(section, set())
        for key in a:
            if a[key] != b[key] and allowed is not None and key not in allowed:
                raise RunError(f"--resume cannot change {section}.{key} ({a[key]!r} -> {b[key]!r}): it is part of "
                               "what the run is; start a new run with --out")


def run_state(run_dir: Path) -> str:
    """``new`` (nothing there), ``started`` (configured, no checkpoint yet: a failed or killed start),
    ``resumable`` (has checkpoints) or ``not a run``."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "new"
    if not (run_dir / "config.toml").is_file():
        return "not a run"
    return "resumable" if ckpt.list_checkpoints(run_dir) else "started"


def finished_at(run_dir: Path, cfg: Config) -> int | None:
    """The step of a run whose budget is spent (final weights written, newest checkpoint at its step or
    time budget), None when it can go on."""
    if not (run_dir / "model.safetensors").is_file() or not ckpt.list_checkpoints(run_dir):
        return None
    meta = ckpt.read_metadata(ckpt.latest_checkpoint(run_dir) / ckpt.STATE)
    t, step = cfg.train, int(meta["step"])
    timed_out = t.minutes is not None and (meta["elapsed"] >= 60 * t.minutes or (
        meta.get("budget_minutes") == t.minutes and step >= (meta.get("step_budget") or step + 1)))
    return step if step >= t.steps or timed_out else None


def check_network(model, data: Dataset, cfg: Config) -> None:
    """One forward pass on two examples, before anything is written: a network that cannot take this
    data (e.g. images too small for its levels) fails here with one line, not after set-up."""
    x, y = data.batch(torch.arange(min(2, len(data))))
    kwargs = {"y": y} if cfg.model.class_conditional else {}
    try:
        with torch.no_grad():
            out = model(x, torch.zeros(len(x)), **kwargs)
    except (RuntimeError, ValueError, IndexError) as e:
        raise ConfigError(f"the {cfg.model.kind} network cannot take this data of shape {tuple(data.shape)} "
                          f"({str(e).splitlines()[0][:200]}): change the model options or the data size") from None
    factor = 2 if cfg.diffusion.variance == "learned_range" else 1
    expected = (x.shape[0], x.shape[1] * factor, *x.shape[2:])
    if tuple(out.shape) != expected:
        raise ConfigError(f"the network maps {tuple(x.shape[1:])} to {tuple(out.shape[1:])}, expected "
                          f"{expected[1:]}: change the model options")


def train(cfg: Config, run_dir, resume: bool = False, progress: bool = True) -> Trainer:
    """Train the model ``cfg`` describes into ``run_dir``; then draw its pictures and, for 2-D
    data, write ``eval.json``. With ``resume``, continue from the newest intact checkpoint (a run
    directory whose first start failed before its first checkpoint starts again).

    Everything is checked before anything is written: the configuration, the data, one forward
    pass of the network, and on resume the checkpoint itself."""
    began = time.perf_counter()  # train.minutes counts from here
    run_dir = Path(run_dir)
    validate(cfg)
    state = run_state(run_dir)
    if state == "not a run":
        raise RunError(f"{run_dir} exists and is not a run directory: choose another --out")
    if not resume and state != "new":
        raise RunError(f"{run_dir} already holds a run: continue it with --resume, or choose another --out")
    if resume and state == "new":
        raise RunError(f"{run_dir} holds no run to resume: start one with --out {run_dir}")
    done = finished_at(run_dir, cfg) if resume else None
    if done is not None:
        raise RunError(f"{run_dir} already finished at step {done}: pass a larger train.steps "
                       "or train.minutes to train longer")
    data = load_dataset(cfg.data, cfg.seed)
    if cfg.train.eval_every and data.is_image:
        from .eval.image_metrics import check_request, default_features

        check_request(cfg.data, cfg.train.eval_features or default_features(cfg.data), "train", cfg.train.eval_n)
    process = build_process(cfg)
    torch.manual_seed(cfg.seed)
    model = build_network(cfg, data.shape, data.num_classes)
    check_network(model, data, cfg)
    torch.manual_seed(cfg.seed)
    meta = {"shape": list(data.shape), "num_classes": data.num_classes, "ddpm_version": __version__,
            "run_format": RUN_FORMAT}
    trainer = Trainer(process, model, data, replace(cfg.train, progress=cfg.train.progress and progress),
                      run_dir=run_dir, seed=cfg.seed, class_conditional=cfg.model.class_conditional,
                      weights_metadata=meta, on_snapshot=lambda tr, step: _snapshot(cfg, tr, data, step),
                      on_evaluate=lambda tr, step: evaluate_during_training(cfg, tr, data), started=began)
    try:
        if state == "resumable":
            trainer.resume()  # verified, and matched to the network, before anything is written
        meta["precision"] = trainer.precision  # train.precision as resolved on this device
        meta["compile"] = trainer.compile_mode  # train.compile as resolved for this run
        if trainer.dist.is_main:
            if progress:
                n_params = sum(p.numel() for p in model.parameters())
                print(f"{type(model).__name__} with {n_params:,} parameters on {trainer.device} ({trainer.precision}"
                      f"{'' if trainer.compile_mode == 'none' else ', compiled: ' + trainer.compile_mode}), "
                      f"{len(data):,} examples of shape {tuple(data.shape)}, T={cfg.diffusion.T} -> {run_dir}", flush=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.toml")
            write_json(meta, run_dir / "run.json")
            if data.is_image:
                announce_data(data, run_dir, progress)
            if trainer.step == 0:
                forward_picture(process, data, run_dir / "pictures" / "forward.png", cfg.seed)
        trainer.run()
        if trainer.dist.is_main and not trainer.interrupted:
            finish(cfg, trainer, data, run_dir)
    finally:
        trainer.close()  # every process leaves the group, so torchrun sees them all exit cleanly
    return trainer


def announce_data(data: Dataset, run_dir: Path, progress: bool) -> None:
    """Before training on images: the data summary (printed beside the network's line, and kept as
    ``RUN/data.json``), and a warning when the set is small enough to be memorised."""
    from .data.summary import small_data_warning, summarize, summary_lines

    summary = summarize(data)
    if progress:
        print("\n".join(summary_lines(summary)), flush=True)
    write_json(summary, run_dir / "data.json")
    warning = small_data_warning(len(data))
    if warning:
        warnings.warn(warning, stacklevel=3)


def forward_picture(process, data: Dataset, path, seed: int = 0):
    from . import viz

    n = 2000 if not data.is_image else 8
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    x0, _ = data.batch(idx)
    return viz.forward_strip(process, x0, path, seed=seed)


def _snapshot(cfg: Config, trainer: Trainer, data: Dataset, step: int) -> None:
    """Samples of the EMA model during training: a grid (images, 50 DDIM steps) or a scatter."""
    from . import viz

    out = trainer.run_dir / "samples" / f"step_{step:08d}.png"
    shape = data.shape
    if data.is_image:
        x = sample(trainer.process, trainer.ema, shape, SNAPSHOT_SEEDS, sampler="ddim",
                   steps=min(50, trainer.process.num_timesteps), clip_denoised=clip_denoised(cfg, True),
                   labels=_snapshot_labels(trainer, data), batch_size=64).x
        viz.save_image_grid(x, out, nrow=8)
        if trainer.writer is not None:
            grid = viz.image_grid(x, nrow=8)
            trainer.writer.add_image("samples", grid, step, dataformats="HW" if grid.ndim == 2 else "HWC")
    else:
        x = sample(trainer.process, trainer.ema, shape, range(1000), batch_size=1000).x
        viz.samples_over_data(x, data.x[:2000], out, title=f"step {step}")


def evaluate_during_training(cfg: Config, trainer: Trainer, data: Dataset) -> dict:
    """``train.eval_n`` samples of the EMA model, by the run's sampler, measured against the data
    (no memorisation check); the same seeds every time, so the values compare across steps."""
    n = cfg.train.eval_n
    options = sampling_options(cfg, device=trainer.device)
    labels = torch.arange(n) % data.num_classes if trainer.class_conditional else None
    x = sample(trainer.process, trainer.ema, data.shape, range(n), **options,
               clip_denoised=clip_denoised(cfg, data.is_image), labels=labels, batch_size=cfg.sample.batch_size).x
    if not data.is_image:
        from .eval.toy_metrics import evaluate_points

        return evaluate_points(x.numpy(), cfg.data.name, data_params={"mean": cfg.data.mean, "cov": cfg.data.cov})
    from .eval.image_metrics import default_features, evaluate_images

    protocol = {**options, "clip_denoised": clip_denoised(cfg, True), "weights": "ema", "checkpoint_step": trainer.step}
    features = cfg.train.eval_features or default_features(cfg.data)
    return evaluate_images(to_uint8(x), cfg.data, features=features, check_memorization=False,
                           protocol=protocol, device=trainer.device)


def _snapshot_labels(trainer: Trainer, data: Dataset):
    if not trainer.class_conditional:
        return None
    return torch.arange(len(SNAPSHOT_SEEDS)) % data.num_classes


def finish(cfg: Config, trainer: Trainer, data: Dataset, run_dir: Path) -> dict | None:
    """After training: the loss curve, samples with their reverse process (strip, GIF), and for
    2-D data the metrics against the true distribution in ``eval.json``."""
    from . import viz

    pictures = run_dir / "pictures"
    viz.loss_curve(run_dir / "metrics.jsonl", pictures / "loss.png")
    run = load_run(run_dir, device=trainer.device)
    if run.is_image:
        n = min(cfg.sample.n, 64)
        labels = torch.arange(n) % data.num_classes if trainer.class_conditional else None
        out = run.sample(n, seed=0, labels=labels, return_trajectory=True)
        viz.save_image_grid(out.x, pictures / "samples.png")
        viz.reverse_strip(out.trajectory[:, :8], out.timesteps, pictures / "reverse.png", run.process)
        viz.reverse_gif(out.trajectory[:, :16], out.timesteps, pictures / "reverse.gif", run.process)
        save_samples(out.x, run_dir / "samples.npz", True)
        return None
    out = run.sample(cfg.sample.n, seed=0, return_trajectory=True)
    save_samples(out.x, run_dir / "samples.npz", False)
    ref = data.x[:2000].numpy()
    viz.samples_over_data(out.x, ref, pictures / "samples.png")
    viz.reverse_strip(out.trajectory, out.timesteps, pictures / "reverse.png", run.process, reference=ref)
    viz.reverse_gif(out.trajectory, out.timesteps, pictures / "reverse.gif", run.process)
    return evaluate(run_dir, out.x.numpy())


# ---------------------------------------------------------------- evaluation
#: images drawn by ``evaluate`` for an image run unless ``n`` says otherwise (FID@1k)
IMAGE_EVAL_N = 1000


def evaluate(run_dir, samples=None, n: int | None = None, seed: int = 0, *, sampler=None, steps=None, eta=None,
             spacing=None, churn=None, sigma_min=None, sigma_max=None, weights: str = "ema",
             checkpoint: int | None = None, features=None, reference_split: str = "train",
             check_memorization: bool = True, out=None, samples_file=None, device="cpu",
             progress: bool = False, guidance: float | None = None, precision: str | None = None,
             compile: str | None = None) -> dict:
    """Metrics of a run's samples (given, or drawn now with the run's sampler settings unless
    overridden) against its data, each with its floor and the protocol; written to ``out``
    (default ``RUN/eval.json``). 2-D runs: distances to fresh draws of the true distribution
    (:mod:`ddpm.eval.toy_metrics`); image runs: :func:`ddpm.eval.image_metrics.evaluate_images`,
    with the drawn samples kept in ``RUN/eval_samples.npz`` and the memorisation pairs in
    ``RUN/pictures/memorization_pairs.png``. A class-conditional image run draws sample i of
    class i mod K, with classifier-free ``guidance`` when given, and is also measured per class
    (:mod:`ddpm.eval.conditional`)."""
    run = load_run(run_dir, device, weights, checkpoint)
    cfg, run_dir = run.cfg, Path(run_dir)
    if guidance is not None and not (cfg.model.class_conditional and run.is_image and samples is None):
        raise ConfigError("--guidance applies to samples drawn now from a class-conditional image run: "
                          "leave it out")
    out = Path(out) if out is not None else run_dir / "eval.json"
    check_writable(out)
    if not run.is_image:
        from .eval.toy_metrics import evaluate_points

        if features:
            raise ConfigError(f"feature spaces ({', '.join(features)}) measure images; {cfg.data.name} is 2-D data, "
                              "measured by distances to fresh draws: leave out --features")

        if samples is None:
            samples = run.sample(n or cfg.sample.n, seed=seed, sampler=sampler, steps=steps, spacing=spacing, eta=eta,
                                 churn=churn, precision=precision, compile=compile, sigma_min=sigma_min,
                                 sigma_max=sigma_max).x.numpy()
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 2 or samples.shape[1:] != run.shape:
            raise RunError(f"samples of shape {samples.shape} do not match the run's data shape {run.shape}")
        params = {"mean": cfg.data.mean, "cov": cfg.data.cov}
        result = {"data": cfg.data.name, "step": run.step, **evaluate_points(samples, cfg.data.name, data_params=params)}
        write_json(result, out)
        return result
    from .eval.image_metrics import check_request, default_features, evaluate_images
    from .eval.memorization import pairs_picture

    features = tuple(features or default_features(cfg.data))
    options = sampling_options(cfg, sampler, steps, spacing, eta, churn, precision, run.device, compile, sigma_min,
                               sigma_max)
    protocol = {**options, "nfe": network_evaluations(options["sampler"], options["steps"] or run.process.num_timesteps),
                "clip_denoised": clip_denoised(cfg, True), "weights": weights, "checkpoint_step": run.step}
    labels = None
    if samples is None:
        n = n or IMAGE_EVAL_N
        check_request(cfg.data, features, reference_split, n)
        if cfg.model.class_conditional:
            labels = torch.arange(n) % run.num_classes
            protocol.update(labels=f"sample i of class i mod {run.num_classes}",
                            guidance=1.0 if guidance is None else guidance)
        x = run.sample(n, seed=seed, **options, labels=labels, guidance=guidance, progress=progress).x
        samples = to_uint8(x).permute(0, 2, 3, 1).numpy()
        save_samples(x, run_dir / "eval_samples.npz", True, labels)
    else:
        protocol = {"samples_file": str(samples_file or "given as an array")}
    result = evaluate_images(samples, cfg.data, features=features, reference_split=reference_split, seed=seed,
                             check_memorization=check_memorization, protocol=protocol, device=device,
                             progress=progress, labels=None if labels is None else labels.numpy())
    result["step"] = run.step
    if "memorization" in result:
        from .eval.features import as_nchw_uint8
        from .eval.reference import load_split

        picture = run_dir / "pictures" / "memorization_pairs.png"
        pairs_picture(as_nchw_uint8(samples), load_split(cfg.data, "train").x, result["memorization"], picture)
        result["memorization"]["pairs_image"] = str(picture.relative_to(run_dir))
    write_json(result, out)
    return result


def check_writable(path: Path) -> None:
    """Refuse early when ``path``'s folder cannot be written (before any sampling)."""
    folder = Path(path).parent
    blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise RunError(f"{blocker} is a file, not a folder: choose another output path")
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise RunError(f"cannot write into {folder}: choose another output path")


def write_json(obj: dict, path: Path) -> None:
    """Write JSON via a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)
