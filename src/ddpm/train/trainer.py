"""One trainer for every network and data set: DDPM Algorithm 1 with the practice around it.

Uniform timesteps, L_simple (or any loss of the process), Adam/AdamW with warm-up and
decay, gradient clipping and accumulation, EMA of the parameters, autocast mixed
precision, optional ``torch.compile`` (CUDA graphs included: :mod:`ddpm.compilation`) and
channels-last, a step budget and a wall-clock budget, JSON-lines metrics with the loss per timestep quartile, atomic checkpoints that
resume exactly, and ``torchrun`` data parallelism (each rank its own shard and seeds,
rank 0 writes).
"""

import contextlib
import copy
import functools
import gc
import json
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from tqdm.auto import tqdm

from ..compilation import compile_network, resolve_compile, uses_cuda_graphs
from ..config import TrainConfig
from ..data.base import Dataset
from ..errors import ConfigError, RunError
from ..nets.diffusers_unet import DiffusersUNet
from ..precision import autocast, native, resolve_precision
from ..validate import check_train
from . import checkpoint as ckpt
from .distributed import all_reduce_max, all_reduce_sum, init_distributed, leave_distributed, resolve_device
from .timesteps import make_timestep_sampler

#: share of a time budget's remaining seconds given to training steps (the rest: pictures, checkpoints)
BUDGET_SHARE = 0.95


def stream_seed(seed: int, rank: int, stream: int) -> int:
    """An independent 63-bit seed for each (run seed, rank, stream)."""
    return int(np.random.SeedSequence([seed, rank, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@functools.cache
def power_function_exponent(std: float) -> float:
    """EDM2's exponent gamma of the power-function EMA whose averaging profile has relative standard
    deviation ``std`` (sigma_rel; Karras et al. 2024, appendix eq. 123): sigma_rel^2 = (gamma + 1) /
    ((gamma + 2)^2 (gamma + 3)), the largest real root of gamma^3 + 7 gamma^2 + (16 - s) gamma +
    (12 - s) = 0 with s = sigma_rel^-2 (defined for 0 < sigma_rel < 0.3)."""
    s = std ** -2
    roots = np.roots([1.0, 7.0, 16.0 - s, 12.0 - s])
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9))


class Trainer:
    """Trains ``model`` as the noise predictor of ``process`` on ``data``.

    ``trainer.model`` holds the raw weights, ``trainer.ema`` their exponential moving
    average (the weights to sample from). With a ``run_dir``, rank 0 writes
    ``metrics.jsonl``, checkpoints and ``model.safetensors`` (the EMA weights) there,
    ``on_snapshot(trainer, step)`` is called every ``sample_every`` steps and at the end, and
    ``on_evaluate(trainer, step)`` every ``eval_every`` steps; what it returns is logged as
    ``{"step": step, "eval": ...}``.
    """

    def __init__(self, process, model, data: Dataset, cfg: TrainConfig | None = None, *, run_dir=None, seed: int = 0,
                 class_conditional: bool = False, on_snapshot=None, on_evaluate=None,
                 weights_metadata: dict | None = None, clock=time.perf_counter, started: float | None = None):
        self.cfg = cfg = cfg or TrainConfig()
        check_train(cfg)
        self.process, self.data, self.seed = process, data, seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.on_snapshot, self.weights_metadata = on_snapshot, weights_metadata or {}
        self.on_evaluate, self.now = on_evaluate, clock
        #: the clock's reading when the command began: its setup (data, network, compilation trial)
        #: counts against ``cfg.minutes`` too, in the first :meth:`run`
        self.started = started
        self.class_conditional = class_conditional
        #: the share of examples trained with the "no label" class (Ho & Salimans 2022, Algorithm 1)
        self.label_dropout = (0.1 if cfg.label_dropout is None else cfg.label_dropout) if class_conditional else 0.0
        if class_conditional and data.y is None:
            raise ConfigError("class-conditional training needs a data set with labels")
        self.device = resolve_device(cfg.device, _local_rank())
        self.dist = init_distributed(self.device)
        if self.dist.enabled and cfg.device == "auto" and self.device.type == "mps":
            self.device = torch.device("cpu")
        #: the precision trained in: train.precision with "auto" resolved for this device
        self.precision = resolve_precision(cfg.precision, self.device)
        if self.precision in ("bf16", "fp16") and not native(self.precision, self.device):
            warnings.warn(f"{self.precision} autocast on a {self.device.type} without native {self.precision} is much "
                          "slower than fp32: use train.precision=auto", stacklevel=2)
        #: the compile mode trained in: train.compile with "auto" resolved for this run
        self.compile_mode = resolve_compile(cfg.compile, self.device, model, self.dist.enabled)
        if self.compile_mode != "none" and self.device.type == "cpu" and isinstance(model, DiffusersUNet):
            raise ConfigError("train.compile on the CPU trains diffusers' U-Net with wrong gradients (Inductor in "
                              "PyTorch 2.13 loses the gradient of its nearest up-sampling): use train.compile=none, "
                              "or model.kind=unet, whose up-sampling compiles correctly")
        self.model = model.to(self.device)
        if cfg.channels_last and data.is_image:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        net = self.model
        if self.dist.enabled:
            net = DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.ema.load_state_dict(self.model.state_dict())  # rank 0's weights, as DDP broadcast them
        self.net = compile_network(net, self.compile_mode)
        self.cuda_graphs = uses_cuda_graphs(self.compile_mode, self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.ema_params = [e for e, p in zip(self.ema.parameters(), self.model.parameters()) if p.requires_grad]
        self.buffer_pairs = list(zip(self.ema.buffers(), self.model.buffers()))
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.params, lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay,
                                 fused=self.device.type in ("cpu", "cuda"))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        rank = self.dist.rank
        torch.manual_seed(stream_seed(seed, rank, 0))  # dropout and other global draws
        self.data_gen = torch.Generator().manual_seed(stream_seed(seed, rank, 1))
        self.noise_gen = torch.Generator(self.device).manual_seed(stream_seed(seed, rank, 2))
        self.shard = torch.arange(rank, len(data), self.dist.world_size)
        if len(self.shard) == 0:
            raise ConfigError(f"{len(data)} examples cannot be shared among {self.dist.world_size} processes")
        self.order, self.pos = torch.empty(0, dtype=torch.long), 0
        self.step, self.elapsed = 0, 0.0
        self.clock = 0.0  # seconds of training all ranks agree on: decides when a time budget is spent
        # the number of steps the learning-rate schedule spans: train.steps, or with train.minutes the
        # steps that fit the time, measured once (:meth:`calibrate`) and kept in every checkpoint
        self.step_budget = None if cfg.minutes is not None else cfg.steps
        self.budget_minutes, self.seconds_per_step = None, None
        self.nonfinite_in_a_row = 0
        self.timesteps = make_timestep_sampler(cfg.timestep_sampling, process)
        self.history: list[dict] = []
        self._stop_requested = False
        self.writer = self._tensorboard() if cfg.tensorboard and self.run_dir and self.dist.is_main else None

    def _tensorboard(self):
        """A TensorBoard writer into ``run_dir/tensorboard`` (scalars and sample grids)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tensorboard needs TensorBoard: pip install 'ddpm[tensorboard]'") from None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    # ------------------------------------------------------------------ pieces
    def lr_at(self, step: int) -> float:
        """Linear warm-up to ``lr``, then constant, cosine or linear decay to ``min_lr`` over the step
        budget (``steps``, or the steps a time budget holds: see :meth:`calibrate`). A function of the
        step alone: the wall clock never reaches the maths, so a run is reproducible."""
        cfg = self.cfg
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        if cfg.decay == "constant":
            return cfg.lr
        total = self.step_budget or cfg.steps
        progress = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.decay == "cosine" else 1 - progress
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * shape

    def next_batch(self):
        """The next batch of this rank's shard, in a fresh random order each epoch."""
        n = self.cfg.batch_size
        while len(self.order) - self.pos < n:
            perm = self.shard[torch.randperm(len(self.shard), generator=self.data_gen)]
            self.order = torch.cat([self.order[self.pos :], perm])
            self.pos = 0
        idx = self.order[self.pos : self.pos + n]
        self.pos += n
        x, y = self.data.batch(idx, self.data_gen)
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.class_conditional:
            return x, {}
        if self.label_dropout > 0:  # classifier-free guidance: sometimes train the unconditional model
            drop = torch.rand(len(y), generator=self.data_gen) < self.label_dropout
            y = torch.where(drop, torch.full_like(y, self.data.num_classes), y)
        return x, {"y": y.to(self.device)}

    @property
    def ema_decay(self) -> float:
        """The EMA decay of the coming optimizer step: ``train.ema_decay``; with
        ``train.ema_halflife_kimg`` the decay whose weights halve every that many thousand training
        images (EDM, Karras et al. 2022, sec. 5 and appendix F.3): 0.5 ** (images per step /
        (1000 * halflife)); with ``train.ema_std`` EDM2's power function (Karras et al. 2024,
        sec. 3.1), (1 - 1/t) ** (gamma + 1) at the t-th step, so that the average weighs step tau by
        tau ** (gamma + 1) - (tau - 1) ** (gamma + 1): a fixed share of the run at any length."""
        cfg = self.cfg
        if cfg.ema_std is not None:
            return (1 - 1 / (self.step + 1)) ** (power_function_exponent(cfg.ema_std) + 1)
        if cfg.ema_halflife_kimg is None:
            return cfg.ema_decay
        images = cfg.batch_size * cfg.grad_accum * self.dist.world_size
        return 0.5 ** (images / (1000 * cfg.ema_halflife_kimg))

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- d ema + (1 - d) theta over parameters; buffers are copied, never averaged. The
        warm-up (``train.ema_warmup``) caps d at (1 + step) / (10 + step); the power function
        needs none (its first step copies the weights)."""
        d = self.ema_decay
        if self.cfg.ema_warmup and self.cfg.ema_std is None:
            d = min(d, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_(self.ema_params, [p.detach() for p in self.params], 1 - d)
        for b_ema, b in self.buffer_pairs:
            b_ema.copy_(b)

    def train_step(self, stats: "StepStats") -> float:
        """One optimizer step over ``grad_accum`` micro-batches; adds its losses to ``stats``.

        A non-finite loss or gradient norm skips the step: optimizer, EMA and step counter stay as
        they were (the next batch is drawn), the skip is counted, and after ``train.max_nonfinite``
        in a row the run stops with :class:`RunError` (its checkpoints untouched)."""
        cfg = self.cfg
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        T = self.process.num_timesteps
        seen = []
        if self.cuda_graphs:  # a new iteration: the graph tree may reuse the last step's memory
            torch.compiler.cudagraph_mark_step_begin()
        for micro in range(cfg.grad_accum):
            with record_function("ddpm::data"):  # named parts for torch.profiler (benchmarks/cpu_profile.py)
                x, kwargs = self.next_batch()
                t, weights = self.timesteps.sample(x.shape[0], self.device, self.data_gen)
                noise = torch.randn(x.shape, generator=self.noise_gen, device=self.device, dtype=x.dtype)
            sync = micro == cfg.grad_accum - 1 or not self.dist.enabled
            with record_function("ddpm::forward_backward"):
                with (contextlib.nullcontext() if sync else self.net.no_sync()), autocast(self.precision, self.device):
                    losses = self.process.training_losses(self.net, x, t, noise, kwargs, self.data.is_image)["loss"]
                    loss = (losses if weights is None else losses * weights).mean() / cfg.grad_accum
                self.scaler.scale(loss).backward()
            seen.append((losses.detach(), t))
        with record_function("ddpm::optimizer"):
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip or float("inf"))
        if not torch.isfinite(grad_norm):  # also catches a non-finite loss (DDP: the same on every rank)
            self._skip_nonfinite(stats)
            return lr
        self.nonfinite_in_a_row = 0
        for losses, t in seen:  # only accepted steps reach the statistics and the timestep history
            stats.add_losses(losses, (t * 4 // T).clamp(max=3))
            self.timesteps.update(t, losses, self.dist)
        with record_function("ddpm::optimizer"):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        with record_function("ddpm::ema"):
            self.update_ema()
        self.step += 1
        stats.add_grad_norm(grad_norm.detach())
        return lr

    def _skip_nonfinite(self, stats: "StepStats") -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.update()  # fp16: lowers the loss scale, as GradScaler does on overflow
        stats.add_skipped()
        self.nonfinite_in_a_row += 1
        if self.nonfinite_in_a_row >= self.cfg.max_nonfinite:
            scale = f" (fp16 loss scale {self.scaler.get_scale():.3g})" if self.scaler.is_enabled() else ""
            raise RunError(f"non-finite loss or gradients in {self.nonfinite_in_a_row} steps in a row at step "
                           f"{self.step}{scale}: lower train.lr, keep train.grad_clip, or use fp32; the run's "
                           "checkpoints are untouched")

    # --------------------------------------------------------------- the loop
    def run(self, max_steps: int | None = None) -> "Trainer":
        """Train until the step budget (``cfg.steps``, or what ``cfg.minutes`` holds) or the time is
        spent; ``max_steps`` stops this call earlier (with a checkpoint, as an interruption would),
        to be continued by another ``run``."""
        cfg = self.cfg
        # setup (the first call's) and calibration time count against the budget
        run_start, elapsed_before = self.now() if self.started is None else self.started, self.elapsed
        self.started = None
        self.elapsed = elapsed_before + self.now() - run_start
        if self.step_budget is None or (cfg.minutes is not None and cfg.minutes != self.budget_minutes):
            self.calibrate()
        stop_at = self.step_budget if max_steps is None else min(self.step_budget, self.step + max_steps)
        main = self.dist.is_main
        # redirected to a file, the bar writes every 30 s instead of ten times a second
        bar = tqdm(total=self.step_budget, initial=self.step, disable=not (cfg.progress and main), unit="step",
                   dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 30)
        stats = StepStats(self.device)
        window_start, window_step = self.now(), self.step
        self.clock = self.elapsed
        self.model.train()
        previous = self._install_signal_handlers()
        try:
            while self.step < stop_at:
                before = self.step
                lr = self.train_step(stats)
                self.elapsed = elapsed_before + self.now() - run_start
                if self.step == before:  # a skipped step: no log, checkpoint or picture for it
                    continue
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == stop_at:
                    now = self.now()
                    record = self._log_record(stats, lr, (self.step - window_step) / max(now - window_start, 1e-9))
                    bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                    stats.zero_()
                    window_start, window_step = now, self.step
                if self._should_stop():
                    break
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < stop_at:
                    self.save_checkpoint()
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.step < stop_at:
                    self._snapshot()
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < stop_at:
                    self._evaluate()
        finally:
            bar.close()
            self._restore_signal_handlers(previous)
        if stats.count > 0:
            self._log_record(stats, self.lr_at(max(self.step - 1, 0)), float("nan"))
        self.save_checkpoint()
        if self.finished:
            self.save_weights()
        self._snapshot()
        return self

    def close(self) -> None:
        """End the trainer's part in ``torchrun``: drop the DDP wrapper, which holds the process group,
        then leave the group if this trainer joined it. A gloo process that exits still holding its
        group can abort in the interpreter's teardown (SIGABRT, "terminate called without an active
        exception"), and ``torchrun`` then fails the whole run. Without ``torchrun`` it does nothing."""
        if not self.dist.enabled:
            return
        self.net = self.model
        gc.collect()  # DDP's reducer sits in reference cycles: free it, and its hold on the group, now
        leave_distributed(self.dist)

    @property
    def finished(self) -> bool:
        """The step budget or the time budget is spent."""
        return self.step >= self.step_budget or self._time_up()

    # ----------------------------------------------------------- time budgets
    def calibrate(self, steps: int = 20) -> int:
        """Turn the time budget into a step budget: time ``steps`` real training steps after one
        untimed warm-up step, rewind model, EMA, optimizer, scaler and random streams to where they
        were, and keep the steps that fill :data:`BUDGET_SHARE` of the remaining time (at most
        ``cfg.steps``). Under DDP every rank takes the same steps and the slowest rank's speed
        counts. The budget is logged and kept in every checkpoint, so a resumed run anneals exactly
        as an uninterrupted one, and ``--steps N`` without ``--minutes`` reproduces the run."""
        cfg = self.cfg
        began = self.now()
        saved = self._memory_state()
        scratch = StepStats(self.device)
        self.model.train()
        self.train_step(scratch)  # first-step costs (allocation, compilation) are not the speed
        start = self.now()
        for _ in range(steps):
            self.train_step(scratch)
        # the slowest rank's speed and time spent, so that every rank gets the same budget
        measured = torch.tensor([(self.now() - start) / steps, self.elapsed + self.now() - began],
                                dtype=torch.float64, device=self.device)
        self.seconds_per_step, spent = all_reduce_max(measured, self.dist).tolist()
        self._load_memory_state(saved)
        remaining = 60.0 * cfg.minutes - spent
        fits = max(0, int(BUDGET_SHARE * remaining / max(self.seconds_per_step, 1e-9)))
        self.step_budget = min(cfg.steps, self.step + fits)
        self.budget_minutes = cfg.minutes
        record = {"step": self.step, "calibration": {"seconds_per_step": self.seconds_per_step, "minutes": cfg.minutes,
                                                     "step_budget": self.step_budget}}
        self.history.append(record)
        self._append_metrics(record)
        return self.step_budget

    def _memory_state(self) -> dict:
        return {"model": copy.deepcopy(self.model.state_dict()), "ema": copy.deepcopy(self.ema.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()), "scaler": self.scaler.state_dict(),
                "rng": {k: v.clone() for k, v in self._rng_state().items()}, "pos": self.pos, "step": self.step,
                "skips": self.nonfinite_in_a_row, "timesteps": copy.deepcopy(self.timesteps.state_dict())}

    def _load_memory_state(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.ema.load_state_dict(saved["ema"])
        self._load_optimizer(saved["optimizer"])
        self.scaler.load_state_dict(saved["scaler"])
        self._set_rng_state(saved["rng"], "")
        self.pos, self.step, self.nonfinite_in_a_row = saved["pos"], saved["step"], saved["skips"]
        self.timesteps.load_state_dict(saved["timesteps"])

    def _should_stop(self) -> bool:
        """Stop on a signal or when the time is spent. Under DDP all ranks agree every 10 steps, on
        that and on the clock (the slowest rank's), so that they stop at the same step."""
        if not self.dist.enabled:
            self.clock = self.elapsed
            return self._stop_requested or self._time_up()
        if self.step % 10:
            return False
        flags = torch.tensor([float(self._stop_requested), self.elapsed], dtype=torch.float64, device=self.device)
        stop, self.clock = all_reduce_max(flags, self.dist).tolist()
        return bool(stop) or self._time_up()

    def _time_up(self) -> bool:
        return self.cfg.minutes is not None and self.clock >= 60.0 * self.cfg.minutes

    @property
    def interrupted(self) -> bool:
        """True when the last :meth:`run` ended on SIGINT/SIGTERM (after saving a checkpoint)."""
        return self._stop_requested

    def _install_signal_handlers(self):
        try:
            return {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread
            return {}

    def _restore_signal_handlers(self, previous) -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    def _request_stop(self, signum, frame) -> None:
        self._stop_requested = True

    def _log_record(self, stats: "StepStats", lr: float, steps_per_sec: float) -> dict:
        s = stats.reduced(self.dist)
        record = {"step": self.step, "loss": s["loss_sum"] / max(s["count"], 1)}
        for q in range(4):
            record[f"loss_q{q}"] = s["quartile_loss"][q] / s["quartile_count"][q] if s["quartile_count"][q] else None
        record.update(
            lr=lr,
            grad_norm=s["grad_norm_sum"] / max(s["grad_norm_count"], 1),
            nonfinite_skipped=int(s["skipped"]),
            steps_per_sec=steps_per_sec,
            examples_per_sec=steps_per_sec * self.cfg.batch_size * self.cfg.grad_accum * self.dist.world_size,
            elapsed=self.elapsed,
        )
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self.history.append(record)
        self._append_metrics(record)
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and value is not None:
                    self.writer.add_scalar(f"train/{key}", value, self.step)
            self.writer.flush()
        return record

    def _append_metrics(self, record: dict) -> None:
        """One line of ``metrics.jsonl`` (rank 0); a failed write (a full disk) is one clear error."""
        if self.run_dir is None or not self.dist.is_main:
            return
        path = self.run_dir / "metrics.jsonl"
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise RunError(f"could not write {path} ({e.strerror or e}): free disk space and resume the run") from None

    def _snapshot(self) -> None:
        if self.on_snapshot is not None and self.dist.is_main:
            self.on_snapshot(self, self.step)

    def _evaluate(self) -> None:
        """Evaluation records go to metrics.jsonl beside the losses, headline values to TensorBoard."""
        if self.on_evaluate is None or not self.dist.is_main:
            return
        record = {"step": self.step, "eval": self.on_evaluate(self, self.step)}
        self.history.append(record)
        self._append_metrics(record)
        if self.writer is not None:
            for key, value in headline_metrics(record["eval"]).items():
                self.writer.add_scalar(f"eval/{key}", value, self.step)
            self.writer.flush()

    # ------------------------------------------------------------ persistence
    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {
            "rng.torch": torch.get_rng_state(),
            "rng.data": self.data_gen.get_state(),
            "rng.noise": self.noise_gen.get_state(),
            "data.order": self.order.clone(),
        }
        if self.device.type == "cuda":
            state["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_rng_state(self, tensors: dict, prefix: str) -> None:
        torch.set_rng_state(tensors[f"{prefix}rng.torch"])
        self.data_gen.set_state(tensors[f"{prefix}rng.data"])
        self.noise_gen.set_state(tensors[f"{prefix}rng.noise"])
        if self.device.type == "cuda" and f"{prefix}rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors[f"{prefix}rng.cuda"], self.device)
        self.order = tensors[f"{prefix}data.order"].clone()

    def _load_optimizer(self, state_dict: dict) -> None:
        self.optimizer.load_state_dict(state_dict)
        for p in self.params:  # give moments the parameter's memory format (channels-last is saved contiguous)
            state = self.optimizer.state[p]
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape:
                    state[key] = torch.empty_like(p).copy_(value)

    def save_checkpoint(self) -> None:
        """Checkpoint weights, EMA, optimizer, scaler, step, every rank's RNG and data order."""
        per_rank = self._rng_state()
        extra = {"pos": self.pos}
        if self.dist.enabled:
            gathered = [None] * self.dist.world_size
            dist.all_gather_object(gathered, ({k: v.cpu() for k, v in per_rank.items()}, extra))
        else:
            gathered = [(per_rank, extra)]
        if self.run_dir is None or not self.dist.is_main:
            return
        weights = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        weights.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        tensors, opt_meta = ckpt.flatten_optimizer(self.optimizer.state_dict())
        for r, (states, _) in enumerate(gathered):
            tensors.update({f"rank{r}.{k}": v for k, v in states.items()})
        tensors.update(self.timesteps.state_dict())  # the same on every rank
        meta = {
            "step": self.step,
            "elapsed": self.elapsed,
            "world_size": self.dist.world_size,
            "pos": [e["pos"] for _, e in gathered],
            "optimizer": opt_meta,
            "scaler": self.scaler.state_dict(),
            "step_budget": self.step_budget,
            "budget_minutes": self.budget_minutes,
            "seconds_per_step": self.seconds_per_step,
        }
        ckpt.save_checkpoint(self.run_dir, self.step, weights, tensors, meta, self.cfg.keep_checkpoints)

    def save_weights(self) -> None:
        """Write the EMA weights to ``model.safetensors`` (rank 0)."""
        if self.run_dir is None or not self.dist.is_main:
            return
        meta = {**self.weights_metadata, "step": self.step}
        ckpt.atomic_save(self.ema.state_dict(), self.run_dir / "model.safetensors", meta)

    def resume(self, checkpoint_dir=None) -> "Trainer":
        """Continue from a checkpoint exactly where it stopped: ``checkpoint_dir``, or the newest intact
        one in ``run_dir`` (damaged newer ones are passed over with a warning that names them)."""
        if checkpoint_dir is not None:
            path = Path(checkpoint_dir)
            weights, tensors, meta = ckpt.load_checkpoint(path)
        else:
            found = ckpt.newest_intact_checkpoint(self.run_dir)
            if found is None:
                raise RunError(f"no checkpoint in {self.run_dir / 'checkpoints'} to resume from")
            path, (weights, tensors, meta), skipped = found
            if skipped:
                warnings.warn(f"resuming from {path.name}, the newest intact checkpoint: {'; '.join(skipped)}",
                              stacklevel=2)
        try:
            self.model.load_state_dict(ckpt.strip_prefix(weights, "model"))
            self.ema.load_state_dict(ckpt.strip_prefix(weights, "ema"))
        except RuntimeError as e:
            raise RunError(f"{path} does not fit this network ({_first_line(e)}): resume with the run's own "
                           "configuration") from None
        self._load_optimizer(ckpt.unflatten_optimizer(tensors, meta["optimizer"]))
        self.scaler.load_state_dict(meta["scaler"])
        self.timesteps.load_state_dict(tensors)
        self.step, self.elapsed = int(meta["step"]), float(meta["elapsed"])
        if self.cfg.minutes is None:
            self.step_budget, self.budget_minutes = self.cfg.steps, None
        elif meta.get("step_budget") is not None and meta.get("budget_minutes") == self.cfg.minutes:
            self.step_budget = min(self.cfg.steps, int(meta["step_budget"]))  # the budget of the run so far
            self.budget_minutes, self.seconds_per_step = meta["budget_minutes"], meta["seconds_per_step"]
        r = self.dist.rank
        if meta["world_size"] == self.dist.world_size:
            self._set_rng_state(tensors, f"rank{r}.")
            self.pos = int(meta["pos"][r])
        else:
            warnings.warn(
                f"checkpoint written by {meta['world_size']} processes, resuming with {self.dist.world_size}: "
                "weights and optimizer continue, random streams restart", stacklevel=2)
        return self


class StepStats:
    """Sums over the steps since the last log record, in one tensor on the training device (one
    all-reduce under DDP, no host sync per step), addressed by name."""

    SLOTS = {"loss_sum": slice(0, 1), "count": slice(1, 2), "quartile_loss": slice(2, 6),
             "quartile_count": slice(6, 10), "grad_norm_sum": slice(10, 11), "grad_norm_count": slice(11, 12),
             "skipped": slice(12, 13)}

    def __init__(self, device):
        self.values = torch.zeros(13, device=device)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.values[self.SLOTS[name]]

    @torch.no_grad()
    def add_losses(self, losses: torch.Tensor, quartile: torch.Tensor) -> None:
        losses = losses.float()
        self["loss_sum"].add_(losses.sum())
        self["count"].add_(len(losses))
        self["quartile_loss"].index_add_(0, quartile, losses)
        self["quartile_count"].index_add_(0, quartile, torch.ones_like(losses))

    def add_grad_norm(self, norm: torch.Tensor) -> None:
        self["grad_norm_sum"].add_(norm.float())
        self["grad_norm_count"].add_(1)

    def add_skipped(self) -> None:
        self["skipped"].add_(1)

    @property
    def count(self) -> float:
        return float(self["count"])

    def zero_(self) -> None:
        self.values.zero_()

    def reduced(self, dist_info) -> dict:
        """The sums over every rank, as Python numbers (lists for the quartiles)."""
        total = all_reduce_sum(self.values.clone(), dist_info).tolist()
        return {k: total[s][0] if s.stop - s.start == 1 else total[s] for k, s in self.SLOTS.items()}


def headline_metrics(result: dict) -> dict[str, float]:
    """``{name: value}`` of every metric object in an evaluation result, the classifier's prefixed."""
    out = {k: m["value"] for k, m in result.items() if isinstance(m, dict) and "value" in m}
    out.update({f"classifier_{k}": m["value"] for k, m in result.get("classifier", {}).items()
                if isinstance(m, dict) and "value" in m})
    return out


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return " ".join(lines[:3])[:300]


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))
