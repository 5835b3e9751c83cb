"""Time to quality on images: FID and classifier FID of 1,000 samples against training minutes.

Trains an image preset from scratch exactly as ``ddpm train --data NAME`` does (its step and
time budgets), keeping every checkpoint (``train.checkpoint_every`` steps apart), then
evaluates the EMA weights of each checkpoint as ``ddpm evaluate RUN --checkpoint STEP`` does:
``--n`` samples with the preset's sampler, Inception FID/KID/precision/recall (MNIST) and the
classifier FID/KID (both), each beside its data-versus-data floor at the same n. Records the
training minutes of each checkpoint (from metrics.jsonl) and the seconds each evaluation took
(sampling and metrics). Writes JSON and a plot.

    python benchmarks/image_time_to_quality.py --data mnist digits
    python benchmarks/image_time_to_quality.py --data mnist --reuse --every 2   # evaluate a finished run
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from machine import machine_info, now  # noqa: E402

from ddpm.config import make_config  # noqa: E402
from ddpm.runs import evaluate, train  # noqa: E402
from ddpm.train.checkpoint import list_checkpoints  # noqa: E402

FEATURES = {"mnist": ("inception", "classifier"), "digits": ("classifier",)}


def training_minutes(run_dir: Path) -> dict[int, float]:
    """Elapsed training minutes at each logged step."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["elapsed"] / 60 for r in rows if "elapsed" in r}


def run(name: str, n: int, work: Path, every: int = 1, reuse: bool = False) -> dict:
    cfg = make_config(data=name, overrides={"train.keep_checkpoints": 1000})
    run_dir = work / name
    wall = None
    if not reuse:
        shutil.rmtree(run_dir, ignore_errors=True)
        start = time.perf_counter()
        train(cfg, run_dir, progress=False)
        wall = time.perf_counter() - start
    minutes = training_minutes(run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = [r for r in rows if "elapsed" in r][-1]
    calibration = next((r["calibration"] for r in rows if "calibration" in r), None)
    checkpoints = list_checkpoints(run_dir)
    chosen = [c for i, c in enumerate(checkpoints) if (i + 1) % every == 0 or c == checkpoints[-1]]
    curve = []
    for ckpt in chosen:
        step = int(ckpt.name[5:])
        t0 = time.perf_counter()
        result = evaluate(run_dir, n=n, checkpoint=step, features=FEATURES[name], check_memorization=False,
                          out=run_dir / f"eval_{step:08d}.json")
        seconds = time.perf_counter() - t0
        point = {"step": step, "train_minutes": round(minutes[step], 2),
                 "eval_seconds": round(seconds, 1)}
        for key in ("fid", "kid", "precision", "recall"):
            if key in result:
                point[key] = {k: result[key][k] for k in ("value", "floor")}
        c = result["classifier"]
        point["classifier_fid"] = {k: c["fid"][k] for k in ("value", "floor")}
        point["classifier_kid"] = {k: c["kid"][k] for k in ("value", "floor")}
        point["mean_confidence"] = c["mean_confidence"]
        point["class_histogram"] = c["class_histogram"]
        curve.append(point)
        print(json.dumps({"data": name, **point}), flush=True)
    final = result
    return {"data": name, "preset": cfg.preset, "steps_trained": last["step"], "train_seconds": round(last["elapsed"], 1),
            "calibration": calibration, "wall_seconds_with_pictures": wall and round(wall, 1),
            "protocol": final["protocol"],
            "inception_features": final.get("fid", {}).get("features"), "classifier": final["classifier"]["label"],
            "classifier_accuracy_heldout": final["classifier"]["accuracy_heldout"], "curve": curve}


def plot(results: list[dict], path: Path) -> None:
    """FID against training minutes; Inception and classifier FID on separate axes (not comparable)."""
    panels = [(r, key, label) for r in results
              for key, label in (("fid", "Inception FID"), ("classifier_fid", "classifier FID")) if key in r["curve"][-1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (r, key, label) in zip(axes[0], panels):
        x = [p["train_minutes"] for p in r["curve"]]
        ax.plot(x, [p[key]["value"] for p in r["curve"]], "o-", c="C0", label=f"{label}@{r['protocol']['n']}")
        ax.axhline(r["curve"][-1][key]["floor"], c="C0", ls="--", lw=1, label="data floor (same n)")
        ax.set_yscale("log")
        ax.set_xlabel("training minutes (2 CPU cores)")
        ax.set_title(f"{r['data']}: {label}, {r['protocol']['sampler']} {r['protocol'].get('steps') or 'all'} steps",
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["mnist", "digits"], choices=sorted(FEATURES))
    parser.add_argument("--n", type=int, default=1000, help="samples per evaluation")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out"), help="run directories")
    parser.add_argument("--every", type=int, default=1, help="evaluate every N-th checkpoint (and the last)")
    parser.add_argument("--reuse", action="store_true", help="evaluate the run already in --work, do not train")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/image_time_to_quality.json"))
    args = parser.parse_args()
    results = [run(name, args.n, args.work, args.every, args.reuse) for name in args.data]
    report = {
        "benchmark": "image_time_to_quality",
        "date": now(),
        "machine": machine_info(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    plot(results, args.out.with_suffix(".png"))
    for r in results:
        last = r["curve"][-1]
        fid = f"FID {last['fid']['value']:.1f} (floor {last['fid']['floor']:.1f}), " if "fid" in last else ""
        print(f"{r['data']}: {r['steps_trained']} steps in {r['train_seconds'] / 60:.1f} min; {fid}classifier FID "
              f"{last['classifier_fid']['value']:.2f} (floor {last['classifier_fid']['floor']:.2f})")


if __name__ == "__main__":
    main()
