"""Throughput of the whole training step and of sampling, for an image preset on a device.

Where ``unet_throughput.py`` times the bare network against diffusers on a CPU, this times what a
user gets from ``ddpm train``: the :class:`ddpm.Trainer` step (batch from the data set, uniform
t, L_simple, backward, gradient clipping, AdamW, EMA update) for the preset's U-Net and batch
size, at each requested precision (autocast fp32 / bf16 / fp16), optionally channels-last and
``torch.compile``; then network evaluations per second of DDIM sampling with the EMA model.
The data are random pixels of the preset's shape (speed does not depend on the pixels).
Warm-up steps (and compilation) are excluded; the device is synchronised before each clock.
Writes JSON (``--out``) and prints it.

    python benchmarks/train_throughput.py --preset cifar10 --precisions fp32 bf16 fp16 --compile bf16 \\
        --out benchmarks/results/train_throughput_cifar10_h100.json
"""

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from ddpm import Trainer, sample
from ddpm.config import TrainConfig, make_config
from ddpm.data.base import Dataset
from ddpm.nets import build_model
from ddpm.runs import build_process
from ddpm.train.distributed import resolve_device

SHAPES = {"cifar10": (3, 32, 32), "mnist": (1, 28, 28), "digits": (1, 8, 8)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(preset: str, device: torch.device, precision: str, channels_last: bool, compile_: bool,
            batch: int, warmup: int, steps: int, sample_steps: int) -> dict:
    cfg = make_config(preset)
    shape = SHAPES[preset]
    batch = batch or cfg.train.batch_size
    data = Dataset(x=torch.randint(0, 256, (max(4 * batch, 512), *shape), dtype=torch.uint8), name="random")
    torch.manual_seed(0)
    model = build_model(cfg.model, shape)
    process = build_process(cfg)
    train_cfg = TrainConfig(steps=warmup + steps, batch_size=batch, lr=cfg.train.lr, warmup=0, precision=precision,
                            channels_last=channels_last, compile=compile_, device=str(device), progress=False,
                            log_every=10**9)
    trainer = Trainer(process, model, data, train_cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    trainer.run(max_steps=warmup)
    synchronize(device)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    trainer.run(max_steps=steps)
    synchronize(device)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    sample(process, trainer.ema, shape, range(batch), sampler="ddim", steps=sample_steps, batch_size=batch)
    synchronize(device)
    sample_s = time.perf_counter() - start
    loss = trainer.history[-1]["loss"] if trainer.history else None
    return {
        "preset": preset, "precision": precision, "channels_last": channels_last, "compile": compile_,
        "batch": batch, "parameters": sum(p.numel() for p in model.parameters()),
        "warmup_steps": warmup, "warmup_s": round(warmup_s, 2), "timed_steps": steps,
        "train_steps_per_s": round(steps / train_s, 2), "train_img_per_s": round(steps * batch / train_s, 1),
        "sample_evals_per_s": round(batch * sample_steps / sample_s, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "last_loss": loss, "loss_finite": loss is not None and loss == loss,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cifar10", choices=sorted(SHAPES))
    p.add_argument("--device", default="auto")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true", help="also measure channels-last")
    p.add_argument("--compile", nargs="*", default=[], metavar="PRECISION",
                   help="also measure torch.compile at these precisions")
    p.add_argument("--batch", type=int, default=0, help="per step (default: the preset's)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    device = resolve_device(args.device)
    cases = [(prec, False, False) for prec in args.precisions]
    if args.channels_last:
        cases += [(prec, True, False) for prec in args.precisions]
    cases += [(prec, False, True) for prec in args.compile]
    results = [measure(args.preset, device, prec, cl, comp, args.batch, args.warmup, args.steps, args.sample_steps)
               for prec, cl, comp in cases]
    report = {
        "machine": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
