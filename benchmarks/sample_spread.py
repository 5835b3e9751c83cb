"""How much an FID@1k moves between draws of one model's samples, and between draws of its floor.

One trained run, ``--blocks`` disjoint blocks of ``--n`` seeds (block b: seeds b*n .. (b+1)*n - 1),
each drawn with the run's own sampler settings from the EMA weights and measured against the
training split as ``ddpm evaluate RUN --seed b*n`` does: the value moves with the samples, the floor
with the real images drawn for it (the metric seed). Records each block's value and floor, their
means and standard deviations, and the ratio value / floor both to the block's own floor and to the
first block's. Writes JSON.

    python benchmarks/sample_spread.py benchmarks/out/speedrun/mnist --blocks 4 \\
        --out benchmarks/results/sample_spread_mnist.json
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import machine_info, now  # noqa: E402

from ddpm.data import to_uint8  # noqa: E402
from ddpm.eval.image_metrics import evaluate_images  # noqa: E402
from ddpm.runs import load_run, sampling_options  # noqa: E402


def stats(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "min": float(np.min(values)), "max": float(np.max(values))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--features", default="classifier", help="comma-separated: classifier, inception")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    features = tuple(args.features.split(","))
    run = load_run(args.run)
    options = sampling_options(run.cfg, device=run.device)
    blocks = []
    for b in range(args.blocks):
        seed = b * args.n
        start = time.perf_counter()
        x = run.sample(args.n, seed=seed).x
        seconds = time.perf_counter() - start
        result = evaluate_images(to_uint8(x).permute(0, 2, 3, 1).numpy(), run.cfg.data, features=features,
                                 seed=seed, check_memorization=False)
        row = {"seeds": f"{seed}..{seed + args.n - 1}", "sample_seconds": round(seconds, 1)}
        for name in features:
            fid = result["classifier"]["fid"] if name == "classifier" else result["fid"]
            row[name] = {"fid": fid["value"], "floor": fid["floor"]}
        blocks.append(row)
        print(json.dumps(row), flush=True)
    summary = {}
    for name in features:
        values = [r[name]["fid"] for r in blocks]
        floors = [r[name]["floor"] for r in blocks]
        summary[name] = {"fid": stats(values), "floor": stats(floors),
                         "fid / own floor": stats([v / f for v, f in zip(values, floors)]),
                         "fid / first floor": stats([v / floors[0] for v in values])}
    report = {"benchmark": "sample_spread", "run": str(args.run), "step": run.step, "date": now(),
              "machine": machine_info(), "n": args.n, "weights": "ema", "sampling": options,
              "reference_split": "train", "blocks": blocks, "summary": summary}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
