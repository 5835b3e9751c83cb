"""One trainer for every network and data set: DDPM Algorithm 1 with the practice around it.

Uniform timesteps, L_simple (or any loss of the process), Adam/AdamW with warm-up and
decay, gradient clipping and accumulation, EMA of the parameters, autocast mixed
precision, optional ``torch.compile`` and channels-last, a step budget and a wall-clock
budget, JSON-lines metrics with the loss per timestep quartile, atomic checkpoints that
resume exactly, and ``torchrun`` data parallelism (each rank its own shard and seeds,
rank 0 writes).
"""

import contextlib
import copy
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
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..data.base import Dataset
from ..errors import ConfigError
from . import checkpoint as ckpt
from .distributed import all_reduce_max, all_reduce_sum, init_distributed, resolve_device

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def stream_seed(seed: int, rank: int, stream: int) -> int:
    """An independent 63-bit seed for each (run seed, rank, stream)."""
    return int(np.random.SeedSequence([seed, rank, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


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
                 weights_metadata: dict | None = None):
        self.cfg = cfg = cfg or TrainConfig()
        self._validate(cfg)
        self.process, self.data, self.seed = process, data, seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.on_snapshot, self.weights_metadata = on_snapshot, weights_metadata or {}
        self.on_evaluate = on_evaluate
        self.class_conditional = class_conditional
        if class_conditional and data.y is None:
            raise ConfigError("class-conditional training needs a data set with labels")
        self.device = resolve_device(cfg.device, _local_rank())
        self.dist = init_distributed(self.device)
        if self.dist.enabled and cfg.device == "auto" and self.device.type == "mps":
            self.device = torch.device("cpu")
        self.amp_dtype = PRECISIONS[cfg.precision]
        if self.amp_dtype is not None and self.device.type == "cpu":
            warnings.warn(f"{cfg.precision} autocast on a CPU without native support is much slower than fp32", stacklevel=2)
        self.model = model.to(self.device)
        if cfg.channels_last and data.is_image:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        net = self.model
        if self.dist.enabled:
            net = DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.ema.load_state_dict(self.model.state_dict())  # rank 0's weights, as DDP broadcast them
        self.net = torch.compile(net) if cfg.compile else net
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.ema_params = [e for e, p in zip(self.ema.parameters(), self.model.parameters()) if p.requires_grad]
        self.buffer_pairs = list(zip(self.ema.buffers(), self.model.buffers()))
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 fused=self.device.type in ("cpu", "cuda"))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        rank = self.dist.rank
        torch.manual_seed(stream_seed(seed, rank, 0))  # dropout and other global draws
        self.data_gen = torch.Generator().manual_seed(stream_seed(seed, rank, 1))
        self.noise_gen = torch.Generator(self.device).manual_seed(stream_seed(seed, rank, 2))
        self.shard = torch.arange(rank, len(data), self.dist.world_size)
        if len(self.shard) == 0:
            raise ConfigError(f"{len(data)} examples cannot be shared among {self.dist.world_size} processes")
        self.order, self.pos = torch.empty(0, dtype=torch.long), 0
        self.step, self.elapsed = 0, 0.0
        self.clock = 0.0  # seconds of training all ranks agree on: drives the time budget
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

    @staticmethod
    def _validate(cfg: TrainConfig) -> None:
        checks = [
            (cfg.optimizer in ("adam", "adamw"), f"train.optimizer must be adam or adamw, got {cfg.optimizer!r}"),
            (cfg.decay in ("constant", "cosine", "linear"), f"train.decay must be constant, cosine or linear, got {cfg.decay!r}"),
            (cfg.precision in PRECISIONS, f"train.precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}"),
            (cfg.steps >= 1, f"train.steps must be >= 1, got {cfg.steps}"),
            (cfg.batch_size >= 1, f"train.batch_size must be >= 1, got {cfg.batch_size}"),
            (cfg.grad_accum >= 1, f"train.grad_accum must be >= 1, got {cfg.grad_accum}"),
            (cfg.lr > 0, f"train.lr must be positive, got {cfg.lr}"),
            (0 <= cfg.ema_decay < 1, f"train.ema_decay must lie in [0, 1), got {cfg.ema_decay}"),
            (cfg.minutes is None or cfg.minutes > 0, f"train.minutes must be positive, got {cfg.minutes}"),
            (cfg.log_every >= 1, f"train.log_every must be >= 1, got {cfg.log_every}"),
            (cfg.eval_every >= 0, f"train.eval_every must be >= 0 (0: never), got {cfg.eval_every}"),
            (cfg.eval_n >= 2, f"train.eval_n must be >= 2, got {cfg.eval_n}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    # ------------------------------------------------------------------ pieces
    def lr_at(self, step: int, elapsed: float = 0.0) -> float:
        """Linear warm-up to ``lr``, then constant, cosine or linear decay to ``min_lr``. The decay
        runs over whichever budget is nearer its end: ``steps``, or, with ``minutes`` set, the wall
        clock (``elapsed`` seconds of training), so that a run stopped by its time budget still ends
        with its learning rate annealed."""
        cfg = self.cfg
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        if cfg.decay == "constant":
            return cfg.lr
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        if cfg.minutes is not None:
            progress = max(progress, elapsed / (60.0 * cfg.minutes))
        progress = min(1.0, progress)
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
        kwargs = {"y": y.to(self.device)} if self.class_conditional else {}
        return x, kwargs

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- d ema + (1 - d) theta over parameters; buffers are copied, never averaged."""
        d = self.cfg.ema_decay
        if self.cfg.ema_warmup:
            d = min(d, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_(self.ema_params, [p.detach() for p in self.params], 1 - d)
        for b_ema, b in self.buffer_pairs:
            b_ema.copy_(b)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, stats: torch.Tensor) -> float:
        """One optimizer step over ``grad_accum`` micro-batches; adds loss sums to ``stats``."""
        cfg = self.cfg
        lr = self.lr_at(self.step, self.clock)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        T = self.process.num_timesteps
        for micro in range(cfg.grad_accum):
            x, kwargs = self.next_batch()
            t = self.process.sample_timesteps(x.shape[0], self.device, self.data_gen)
            noise = torch.randn(x.shape, generator=self.noise_gen, device=self.device, dtype=x.dtype)
            sync = micro == cfg.grad_accum - 1 or not self.dist.enabled
            with (contextlib.nullcontext() if sync else self.net.no_sync()), self._autocast():
                losses = self.process.training_losses(self.net, x, t, noise, kwargs)["loss"]
                loss = losses.mean() / cfg.grad_accum
            self.scaler.scale(loss).backward()
            with torch.no_grad():
                quartile = (t * 4 // T).clamp(max=3)
                stats[0] += losses.sum().detach().float()
                stats[1] += len(losses)
                stats[2:6].index_add_(0, quartile, losses.detach().float())
                stats[6:10].index_add_(0, quartile, torch.ones_like(losses, dtype=torch.float32))
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip or float("inf"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.update_ema()
        self.step += 1
        stats[10] += grad_norm.detach().float()
        stats[11] += 1
        return lr

    # --------------------------------------------------------------- the loop
    def run(self, max_steps: int | None = None) -> "Trainer":
        """Train until ``cfg.steps`` or ``cfg.minutes``; ``max_steps`` stops this call earlier
        (with a checkpoint, as an interruption would), to be continued by another ``run``."""
        cfg = self.cfg
        stop_at = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        main = self.dist.is_main
        # redirected to a file, the bar writes every 30 s instead of ten times a second
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and main), unit="step",
                   dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 30)
        stats = torch.zeros(12, device=self.device)
        window_start, window_step = time.perf_counter(), self.step
        run_start, elapsed_before = time.perf_counter(), self.elapsed
        self.clock = self.elapsed
        self.model.train()
        previous = self._install_signal_handlers()
        try:
            while self.step < stop_at:
                lr = self.train_step(stats)
                bar.update(1)
                self.elapsed = elapsed_before + time.perf_counter() - run_start
                if self.step % cfg.log_every == 0 or self.step == stop_at:
                    now = time.perf_counter()
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
        if stats[1] > 0:
            self._log_record(stats, self.lr_at(max(self.step - 1, 0), self.clock), float("nan"))
        self.save_checkpoint()
        if self.step >= cfg.steps or self._time_up():
            self.save_weights()
        self._snapshot()
        return self

    def _should_stop(self) -> bool:
        """Stop on a signal or the time budget. Under DDP all ranks agree every 10 steps, on that
        and on the clock (the slowest rank's), so that a time-annealed learning rate is the same
        on every rank."""
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

    def _log_record(self, stats: torch.Tensor, lr: float, steps_per_sec: float) -> dict:
        s = all_reduce_sum(stats.clone(), self.dist).tolist()
        record = {"step": self.step, "loss": s[0] / max(s[1], 1)}
        for q in range(4):
            record[f"loss_q{q}"] = s[2 + q] / s[6 + q] if s[6 + q] else None
        record.update(
            lr=lr,
            grad_norm=s[10] / max(s[11], 1),
            steps_per_sec=steps_per_sec,
            examples_per_sec=steps_per_sec * self.cfg.batch_size * self.cfg.grad_accum * self.dist.world_size,
            elapsed=self.elapsed,
        )
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self.history.append(record)
        if self.run_dir is not None and self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and value is not None:
                    self.writer.add_scalar(f"train/{key}", value, self.step)
            self.writer.flush()
        return record

    def _snapshot(self) -> None:
        if self.on_snapshot is not None and self.dist.is_main:
            self.on_snapshot(self, self.step)

    def _evaluate(self) -> None:
        """Evaluation records go to metrics.jsonl beside the losses, headline values to TensorBoard."""
        if self.on_evaluate is None or not self.dist.is_main:
            return
        record = {"step": self.step, "eval": self.on_evaluate(self, self.step)}
        self.history.append(record)
        if self.run_dir is not None:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
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
        meta = {
            "step": self.step,
            "elapsed": self.elapsed,
            "world_size": self.dist.world_size,
            "pos": [e["pos"] for _, e in gathered],
            "optimizer": opt_meta,
            "scaler": self.scaler.state_dict(),
        }
        ckpt.save_checkpoint(self.run_dir, self.step, weights, tensors, meta, self.cfg.keep_checkpoints)

    def save_weights(self) -> None:
        """Write the EMA weights to ``model.safetensors`` (rank 0)."""
        if self.run_dir is None or not self.dist.is_main:
            return
        meta = {**self.weights_metadata, "step": self.step}
        ckpt.atomic_save(self.ema.state_dict(), self.run_dir / "model.safetensors", meta)

    def resume(self, checkpoint_dir=None) -> "Trainer":
        """Continue from a checkpoint (default: the newest in ``run_dir``) exactly where it stopped."""
        path = Path(checkpoint_dir) if checkpoint_dir else ckpt.latest_checkpoint(self.run_dir)
        self.model.load_state_dict(ckpt.load_weights(path / ckpt.WEIGHTS, "model"))
        self.ema.load_state_dict(ckpt.load_weights(path / ckpt.WEIGHTS, "ema"))
        tensors, meta = ckpt.load_state(path)
        self.optimizer.load_state_dict(ckpt.unflatten_optimizer(tensors, meta["optimizer"]))
        for p in self.params:  # give moments the parameter's memory format (channels-last is saved contiguous)
            state = self.optimizer.state[p]
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape:
                    state[key] = torch.empty_like(p).copy_(value)
        self.scaler.load_state_dict(meta["scaler"])
        self.step, self.elapsed = int(meta["step"]), float(meta["elapsed"])
        r = self.dist.rank
        if meta["world_size"] == self.dist.world_size:
            torch.set_rng_state(tensors[f"rank{r}.rng.torch"])
            self.data_gen.set_state(tensors[f"rank{r}.rng.data"])
            self.noise_gen.set_state(tensors[f"rank{r}.rng.noise"])
            if self.device.type == "cuda" and f"rank{r}.rng.cuda" in tensors:
                torch.cuda.set_rng_state(tensors[f"rank{r}.rng.cuda"], self.device)
            self.order, self.pos = tensors[f"rank{r}.data.order"], int(meta["pos"][r])
        else:
            warnings.warn(
                f"checkpoint written by {meta['world_size']} processes, resuming with {self.dist.world_size}: "
                "weights and optimizer continue, random streams restart", stacklevel=2)
        return self


def headline_metrics(result: dict) -> dict[str, float]:
    """``{name: value}`` of every metric object in an evaluation result, the classifier's prefixed."""
    out = {k: m["value"] for k, m in result.items() if isinstance(m, dict) and "value" in m}
    out.update({f"classifier_{k}": m["value"] for k, m in result.get("classifier", {}).items()
                if isinstance(m, dict) and "value" in m})
    return out


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))
