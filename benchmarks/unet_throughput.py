"""Throughput of the ddpm U-Net against diffusers' ``UNet2DModel`` of the same shape.

For the ``small`` (1x28x28, MNIST) and ``digits`` (1x8x8) presets, measures on this machine

* training: images/s of forward + eps-MSE backward + Adam step, batch 64, fp32;
* sampling: network evaluations (images) per second of a ``no_grad`` forward, batch 64;

for our :class:`ddpm.nets.unet.UNet` and :class:`ddpm.nets.diffusers_unet.DiffusersUNet` built
from the same preset (same layers, hence the same parameter count, which is recorded),
in the default and the channels-last memory formats. Warm-up iterations are excluded.
The two networks then alternate one timed iteration each (wall clock) for at least
``--seconds`` per mode, so both see the same machine. The headline figure is
batch / the fastest iteration: on a machine shared with other processes it is the least
disturbed estimate (as ``timeit`` advises); the median iteration and the mean over the
whole window are kept too, with the load average before and after. Threads are torch's
default. Writes JSON (``--out``) and prints it.

    python benchmarks/unet_throughput.py --out benchmarks/results/unet_throughput.json
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ddpm.nets.diffusers_unet import DiffusersUNet
from ddpm.nets.unet import UNET_PRESETS, build_unet

CASES = {"small": (1, 28, 28), "digits": (1, 8, 8)}


def train_step(model, x, t, noise):
    """One training step closure: eps-prediction MSE (DDPM eq. 14), backward, Adam."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.mse_loss(model(x, t), noise).backward()
        optimizer.step()

    return step


def sample_step(model, x, t):
    """One network evaluation as a sampler makes it."""

    @torch.no_grad()
    def step():
        model(x, t)

    return step


def diffusers_version() -> str | None:
    try:
        import diffusers
    except ImportError:
        return None
    return diffusers.__version__


def measure(steps: dict, batch: int, warmup: int, seconds: float) -> dict:
    """Alternate one timed call of each step until ``seconds`` have passed; images/s figures."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    start = time.perf_counter()
    while min(len(v) for v in times.values()) < 5 or time.perf_counter() - start < seconds:
        for name, step in steps.items():
            tic = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - tic)
    return {
        name: {
            "img_per_s": round(batch / min(v), 1),
            "img_per_s_median": round(batch / statistics.median(v), 1),
            "img_per_s_mean": round(batch * len(v) / sum(v), 1),
            "iterations": len(v),
        }
        for name, v in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/unet_throughput.json"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per mode and case")
    args = parser.parse_args()

    version = diffusers_version()
    report = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "diffusers": version or "not installed",
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_average_before": [round(v, 2) for v in os.getloadavg()],
        },
        "settings": {
            "batch": args.batch, "dtype": "float32", "warmup_iters": args.warmup,
            "seconds_per_mode": args.seconds, "statistic": "batch / fastest iteration",
        },
        "results": [],
        "ddpm_over_diffusers": [] if version else "diffusers not installed",
    }
    for preset, shape in CASES.items():
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch, *shape, generator=generator)
        noise = torch.randn(args.batch, *shape, generator=generator)
        t = torch.randint(0, 1000, (args.batch,), generator=generator).float()
        for memory_format in (torch.contiguous_format, torch.channels_last):
            torch.manual_seed(0)
            networks = {"ddpm": build_unet(preset, shape[0])}
            if version:
                networks["diffusers"] = DiffusersUNet(in_channels=shape[0], **UNET_PRESETS[preset])
            xm = x.contiguous(memory_format=memory_format)
            channels_last = memory_format == torch.channels_last
            entries = {
                name: {
                    "preset": preset, "network": name, "parameters": net.num_parameters(),
                    "input": list(shape), "channels_last": channels_last,
                }
                for name, net in networks.items()
            }
            for mode in ("train", "sample"):
                steps = {}
                for name, net in networks.items():
                    net.to(memory_format=memory_format).train(mode == "train")
                    if mode == "train":
                        steps[name] = train_step(net, xm, t, noise)
                    else:
                        steps[name] = sample_step(net, xm, t)
                for name, figures in measure(steps, args.batch, args.warmup, args.seconds).items():
                    entries[name].update({f"{mode}_{key}": value for key, value in figures.items()})
            report["results"].extend(entries.values())
            if version:
                ours, theirs = entries["ddpm"], entries["diffusers"]
                ratios = {"preset": preset, "channels_last": channels_last}
                for mode in ("train", "sample"):
                    for figure in ("img_per_s", "img_per_s_median"):
                        name = mode + figure.removeprefix("img_per_s")
                        ratios[name] = round(ours[f"{mode}_{figure}"] / theirs[f"{mode}_{figure}"], 3)
                report["ddpm_over_diffusers"].append(ratios)
    report["machine"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
