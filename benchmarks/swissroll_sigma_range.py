"""DPM-Solver++ at 10 network evaluations on the swiss roll: where the grid's noise levels lie.

Trains the `swissroll` preset (or takes --run), then samples it with DPM-Solver++(2M) at --nfe
evaluations on the `karras` and `logsnr` grids over the chain's whole noise range and over narrower
ranges (EDM's sigma_min and sigma_max), beside its ODE limit (200 steps on `logsnr`) and ancestral
sampling over every step. Each configuration draws --blocks disjoint blocks of 2,000 seeds, because
a sliced-Wasserstein ratio of 2,000 points moves by about 0.15 with its seeds; the JSON records
every block and their mean.

    python benchmarks/swissroll_sigma_range.py --out benchmarks/results/swissroll_sigma_range.json
"""

import argparse
import json
from pathlib import Path

import numpy as np

from machine import machine_info, now

from ddpm.config import make_config
from ddpm.eval.toy_metrics import evaluate_points
from ddpm.runs import load_run, train

N = 2000
#: (sigma_min, sigma_max) of the narrowed grids; None: the chain's own end
RANGES = [(None, None), (0.05, None), (None, 20.0), (0.05, 20.0), (0.05, 10.0), (0.1, 10.0)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained swiss-roll run (default: train the preset into --work)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/swissroll_sigma_range"))
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/swissroll_sigma_range.json"))
    args = parser.parse_args()
    run_dir = args.run or args.work
    if args.run is None and not (run_dir / "model.safetensors").is_file():
        train(make_config(data="swissroll"), run_dir, progress=False)
    run = load_run(run_dir)
    configs = [("ancestral", None, None, None, None), ("dpm++2m", 200, "logsnr", None, None)]
    configs += [("dpm++2m", args.nfe, spacing, lo, hi) for spacing in ("karras", "logsnr") for lo, hi in RANGES]
    points = []
    for sampler, steps, spacing, lo, hi in configs:
        ratios = []
        for b in range(args.blocks):
            x = run.sample(N, seed=b * N, sampler=sampler, steps=steps, spacing=spacing, sigma_min=lo, sigma_max=hi,
                           batch_size=N).x
            sw = evaluate_points(x.numpy(), "swissroll", metrics=["sliced_wasserstein"])["sliced_wasserstein"]
            ratios.append(sw["ratio"])
        point = {"sampler": sampler, "steps": steps, "spacing": spacing, "sigma_min": lo, "sigma_max": hi,
                 "ratio_mean": float(np.mean(ratios)), "ratios": ratios}
        points.append(point)
        print(json.dumps(point), flush=True)
    lo, hi = run.process.sigma_range
    report = {"benchmark": "swissroll_sigma_range", "date": now(), "machine": machine_info(), "run": str(run_dir),
              "step": run.step, "chain_sigmas": [lo, hi], "n": N, "weights": "ema",
              "seeds": f"blocks of {N}: 0..{args.blocks * N - 1}",
              "metric": "sliced Wasserstein (512 projections) to 3 fresh draws of 2,000, over the data-vs-data floor",
              "points": points}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
