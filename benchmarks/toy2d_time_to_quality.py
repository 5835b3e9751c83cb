"""Time to quality on 2-D data: sliced Wasserstein of 2,000 samples against wall seconds.

Trains each data set with its preset, stopping every ``--every`` steps to draw 2,000
samples (ancestral, every step of the chain) from the EMA model and measure them against
fresh data. Seconds counted: training plus the sampling of that evaluation (the metric
itself is not counted). The target: sliced Wasserstein within 1.5x the data-versus-data
floor. Writes JSON.

    python benchmarks/toy2d_time_to_quality.py --out benchmarks/results/toy2d.json
"""

import argparse
import json
import time
from pathlib import Path

import torch

from machine import machine_info, now

from ddpm.config import make_config
from ddpm.data import load_dataset
from ddpm.eval.toy_metrics import evaluate_points
from ddpm.nets import build_model
from ddpm.runs import build_process
from ddpm.samplers import sample
from ddpm.train.trainer import Trainer

TARGET_RATIO = 1.5


def run(name: str, every: int, seed: int) -> dict:
    cfg = make_config(data=name)
    cfg.train.progress = False
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.data, cfg.seed)
    process = build_process(cfg)
    trainer = Trainer(process, build_model(cfg.model, data.shape), data, cfg.train, seed=cfg.seed)
    curve, train_seconds, reached = [], 0.0, None
    while trainer.step < cfg.train.steps:
        start = time.perf_counter()
        trainer.run(max_steps=every)
        train_seconds += time.perf_counter() - start
        start = time.perf_counter()
        x = sample(process, trainer.ema, data.shape, range(seed, seed + 2000), batch_size=2000).x
        sample_seconds = time.perf_counter() - start
        sw = evaluate_points(x.numpy(), name, metrics=["sliced_wasserstein"])["sliced_wasserstein"]
        point = {"step": trainer.step, "train_seconds": round(train_seconds, 2), "sample_seconds": round(sample_seconds, 2),
                 "seconds": round(train_seconds + sample_seconds, 2), "sliced_wasserstein": sw["value"],
                 "floor": sw["floor"], "ratio": sw["ratio"]}
        curve.append(point)
        print(json.dumps({"data": name, **point}), flush=True)
        if reached is None and sw["ratio"] <= TARGET_RATIO:
            reached = point
    final = curve[-1]
    return {"data": name, "preset": cfg.preset, "steps": cfg.train.steps, "T": cfg.diffusion.T,
            "seconds_to_target": reached["seconds"] if reached else None, "reached_at_step": reached and reached["step"],
            "final_ratio": final["ratio"], "final_seconds": final["seconds"], "curve": curve}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["swissroll", "8gaussians", "checkerboard"])
    parser.add_argument("--every", type=int, default=500, help="steps between evaluations")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first evaluation sample")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/toy2d.json"))
    args = parser.parse_args()
    results = [run(name, args.every, args.seed) for name in args.data]
    report = {
        "benchmark": "toy2d_time_to_quality",
        "target": f"sliced Wasserstein of 2000 samples <= {TARGET_RATIO} x data floor",
        "date": now(),
        "machine": machine_info(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for r in results:
        print(f"{r['data']:<14} target reached in {r['seconds_to_target']} s (step {r['reached_at_step']}); "
              f"final ratio {r['final_ratio']:.2f} after {r['final_seconds']} s")


if __name__ == "__main__":
    main()
