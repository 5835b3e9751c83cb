"""Throughput of the whole training step and of sampling, for an image preset on a device.

Where ``unet_throughput.py`` times the bare network against diffusers on a CPU, this times what a
user gets from ``ddpm train``: the :class:`ddpm.Trainer` step (batch from the data set, uniform
t, L_simple, backward, gradient clipping, AdamW, EMA update) for the preset's U-Net and batch
size, at each requested precision (autocast fp32 / bf16 / fp16), optionally channels-last, and
with each requested ``torch.compile`` mode (``reduce-overhead`` replays CUDA graphs:
:mod:`ddpm.compilation`); then network evaluations per second of DDIM sampling with the EMA model,
compiled the same way. Model FLOP utilisation (MFU): the model's FLOPs per step
(``benchmarks/flops.py``) times steps per second, over the measured matrix-product ceiling of
the device in the case's precision (fp32 cases: TF32 as PyTorch's convolutions use it by default
on CUDA, measured with TF32 matrix products allowed). The data are random pixels of the preset's
shape (speed does not depend on the pixels). Warm-up steps (and compilation) are excluded and
reported; the device is synchronised before each clock. Writes JSON (``--out``) and prints it.

    python benchmarks/train_throughput.py --preset mnist --precisions fp32 bf16 \\
        --compile none reduce-overhead --out benchmarks/results/train_throughput_mnist_h200.json
"""

import argparse
import json
import time
from pathlib import Path

import torch

from flops import gemm_ceiling, model_flops  # noqa: E402
from machine import machine_info, now  # noqa: E402

from ddpm import Trainer, sample  # noqa: E402
from ddpm.compilation import COMPILE_MODES  # noqa: E402
from ddpm.config import TrainConfig, make_config  # noqa: E402
from ddpm.data.base import Dataset  # noqa: E402
from ddpm.nets import build_model  # noqa: E402
from ddpm.precision import PRECISIONS  # noqa: E402
from ddpm.runs import build_process  # noqa: E402
from ddpm.train.distributed import resolve_device  # noqa: E402

SHAPES = {"cifar10": (3, 32, 32), "mnist": (1, 28, 28), "digits": (1, 8, 8)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def ceiling(precision: str, device: torch.device, cache: dict) -> float:
    """The device's matrix-product FLOP/s in the precision's type (fp32: TF32 allowed on CUDA)."""
    if precision not in cache:
        dtype = PRECISIONS[precision] or torch.float32
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        cache[precision] = gemm_ceiling(dtype, 8192 if device.type == "cuda" else 2048, device)
        torch.backends.cuda.matmul.allow_tf32 = before
    return cache[precision]


def measure(preset: str, device: torch.device, precision: str, channels_last: bool, compile_: str,
            batch: int, warmup: int, steps: int, sample_steps: int, peaks: dict) -> dict:
    cfg = make_config(preset)
    shape = SHAPES[preset]
    batch = batch or cfg.train.batch_size
    data = Dataset(x=torch.randint(0, 256, (max(4 * batch, 512), *shape), dtype=torch.uint8), name="random")
    torch.manual_seed(0)
    model = build_model(cfg.model, shape)
    process = build_process(cfg)
    train_cfg = TrainConfig(steps=10**6, batch_size=batch, lr=cfg.train.lr, warmup=0, precision=precision,
                            channels_last=channels_last, compile=compile_, device=str(device), progress=False,
                            log_every=10**9)
    trainer = Trainer(process, model, data, train_cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warmup_s = timed(device, lambda: trainer.run(max_steps=warmup))
    train_s = timed(device, lambda: trainer.run(max_steps=steps))
    options = dict(sampler="ddim", steps=sample_steps, batch_size=batch, precision=precision, compile=compile_)
    sample_warmup_s = timed(device, lambda: sample(process, trainer.ema, shape, range(batch), **options))
    sample_s = timed(device, lambda: sample(process, trainer.ema, shape, range(batch), **options))
    loss = trainer.history[-1]["loss"] if trainer.history else None
    flops = model_flops(trainer.model, shape, batch, backward=True, device=device)
    eval_flops = model_flops(trainer.ema, shape, batch, backward=False, device=device)
    peak = ceiling(precision, device, peaks)
    return {
        "preset": preset, "precision": precision, "channels_last": channels_last, "compile": compile_,
        "batch": batch, "parameters": sum(p.numel() for p in model.parameters()),
        "warmup_steps": warmup, "warmup_s": round(warmup_s, 2), "timed_steps": steps,
        "train_steps_per_s": round(steps / train_s, 2), "train_img_per_s": round(steps * batch / train_s, 1),
        "model_flops_per_step": flops, "train_tflop_per_s": round(flops * steps / train_s / 1e12, 2),
        "train_mfu": round(flops * steps / train_s / peak, 4),
        "sample_warmup_s": round(sample_warmup_s, 2),
        "sample_evals_per_s": round(batch * sample_steps / sample_s, 1),
        "sample_mfu": round(eval_flops * sample_steps / sample_s / peak, 4),
        "gemm_ceiling_tflop_per_s": round(peak / 1e12, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "last_loss": loss, "loss_finite": loss is not None and loss == loss,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cifar10", choices=sorted(SHAPES))
    p.add_argument("--device", default="auto")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"], choices=("fp32", "bf16", "fp16"))
    p.add_argument("--channels-last", action="store_true", help="also measure channels-last, with each compile mode")
    p.add_argument("--compile", nargs="+", default=["none"], choices=COMPILE_MODES,
                   help="torch.compile modes, each measured at every precision")
    p.add_argument("--batch", type=int, default=0, help="per step (default: the preset's)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    device = resolve_device(args.device)
    cases = [(prec, False, mode) for mode in args.compile for prec in args.precisions]
    if args.channels_last:
        cases += [(prec, True, mode) for mode in args.compile for prec in args.precisions]
    peaks: dict = {}
    results = []
    for prec, cl, mode in cases:
        results.append(measure(args.preset, device, prec, cl, mode, args.batch, args.warmup, args.steps,
                               args.sample_steps, peaks))
        print(json.dumps(results[-1]), flush=True)
    report = {"benchmark": "train_throughput", "date": now(), "machine": machine_info(device), "results": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
