"""Throughput of the ddpm U-Net against diffusers' ``UNet2DModel`` of the same shape.

For the ``small`` (1x28x28, MNIST) and ``digits`` (1x8x8) presets, measures on this machine

* training: images/s of forward + eps-MSE backward + Adam step, batch 64, fp32;
* sampling: network evaluations (images) per second of a ``no_grad`` forward, batch 64;

for our :class:`ddpm.nets.unet.UNet` and :class:`ddpm.nets.diffusers_unet.DiffusersUNet` built
from the same preset (same layers, hence the same parameter count, which is recorded),
in the default and the channels-last memory formats. Warm-up iterations are excluded;
``--repeats`` rounds alternate the two networks, each round timing whole iterations by
wall clock for at least ``--seconds``. The headline figure is the best round (the least
disturbed by other processes, as ``timeit`` advises); the median and every round are kept,
and the load average before and after shows whether the machine was shared. Threads are
torch's default. Writes JSON (``--out``) and prints it.

    python benchmarks/unet_throughput.py --out benchmarks/results/unet_throughput.json
"""

import argparse
import datetime
import functools
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


def images_per_second(step, batch: int, warmup: int, seconds: float) -> float:
    """Run ``step`` ``warmup`` times untimed, then for at least ``seconds``; images per second."""
    for _ in range(warmup):
        step()
    iters, start = 0, time.perf_counter()
    while iters < 3 or time.perf_counter() - start < seconds:
        step()
        iters += 1
    return iters * batch / (time.perf_counter() - start)


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


def measure(networks: dict, x, t, noise, memory_format, timed, repeats: int) -> dict:
    """Images/s of every network, training and sampling, for ``repeats`` alternating rounds."""
    x = x.contiguous(memory_format=memory_format)
    runs = {name: {"train": [], "sample": []} for name in networks}
    for _ in range(repeats):
        for name, net in networks.items():
            net.to(memory_format=memory_format)
            steps = {"train": train_step(net, x, t, noise), "sample": sample_step(net, x, t)}
            for mode, step in steps.items():
                net.train(mode == "train")
                runs[name][mode].append(timed(step))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/unet_throughput.json"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per round")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    timed = functools.partial(images_per_second, batch=args.batch, warmup=args.warmup, seconds=args.seconds)

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
            "min_seconds_per_round": args.seconds, "repeats": args.repeats,
            "statistic": "best round (median also given)",
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
            runs = measure(networks, x, t, noise, memory_format, timed, args.repeats)
            channels_last = memory_format == torch.channels_last
            entries = {}
            for name, net in networks.items():
                entries[name] = {
                    "preset": preset, "network": name, "parameters": net.num_parameters(),
                    "input": list(shape), "channels_last": channels_last,
                }
                for mode, rounds in runs[name].items():
                    entries[name][f"{mode}_img_per_s"] = round(max(rounds), 1)
                    entries[name][f"{mode}_img_per_s_median"] = round(statistics.median(rounds), 1)
                    entries[name][f"{mode}_rounds"] = [round(v, 1) for v in rounds]
            report["results"].extend(entries.values())
            if version:
                ours, theirs = entries["ddpm"], entries["diffusers"]
                report["ddpm_over_diffusers"].append({
                    "preset": preset, "channels_last": channels_last,
                    **{mode: round(ours[f"{mode}_img_per_s"] / theirs[f"{mode}_img_per_s"], 3)
                       for mode in ("train", "sample")},
                })
    report["machine"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
