"""Speedrun: a preset from scratch to 1,000 measured samples, as a new user runs it.

Trains ``ddpm train --data NAME`` exactly as the preset stands, or as ``--set`` changes it (its
time budget, measured into a step budget on this machine, and its precision), keeping a
checkpoint every ``train.checkpoint_every`` steps, then draws 1,000 samples (seeds 0..999) with
the preset's own sampler, steps, clipping and precision from the EMA weights (kept in
``RUN/speedrun_samples.npz``), and measures them: Inception FID/KID (MNIST) and the data set's
classifier FID/KID, each beside its data-versus-data floor at n = 1,000, against the training
split. Records the training and sampling seconds, and whether each of the preset's targets was
met (classifier FID against the mean of the floor's draws, see ``ddpm.eval.reference``):
training is what ``train.minutes`` limits, from the command's start to its last step; the
closing pictures (64 samples, the reverse strip and GIF) are timed beside it. Writes JSON.

    python benchmarks/speedrun.py --data mnist      # 30 + ~5 minutes on 2 CPU cores
    python benchmarks/speedrun.py --data digits     # 5 + ~1 minutes
    python benchmarks/speedrun.py --data mnist --set train.compile=none --set sample.compile=none \\
        --out benchmarks/results/speedrun_mnist_eager.json   # the preset before compile=auto
    python benchmarks/speedrun.py --data mnist --set train.compile=default --set sample.compile=default \\
        --set diffusion.min_snr_gamma=5 --work benchmarks/out/speedrun_minsnr \\
        --out benchmarks/results/speedrun_mnist_compiled_minsnr5.json   # a lever, as the preset runs
    python benchmarks/image_time_to_quality.py --data mnist --reuse --work benchmarks/out/speedrun \\
        --out benchmarks/results/image_time_to_quality.json   # the curve of its checkpoints
"""

import argparse
import json
import shutil
import time
from pathlib import Path

from machine import machine_info, now  # noqa: E402

from ddpm.config import make_config, parse_override  # noqa: E402
from ddpm.data import to_uint8  # noqa: E402
from ddpm.eval.image_metrics import evaluate_images  # noqa: E402
from ddpm.runs import load_run, read_run_json, sampling_options, save_samples, train  # noqa: E402

FEATURES = {"mnist": ("inception", "classifier"), "digits": ("classifier",)}

#: the targets each preset is held to on 2 CPU cores
TARGETS = {
    "mnist": {"train_minutes": 30.0, "sample_minutes": 3.0, "fid": 12.0, "classifier_fid_over_floor": 2.0},
    "digits": {"train_minutes": 5.0, "classifier_fid_over_floor": 2.0},
}


def verdict(target: dict, train_s: float, sample_s: float, metrics: dict) -> dict:
    """Each target with what was measured and whether it was met."""
    out = {"train_minutes": {"target": target["train_minutes"], "measured": round(train_s / 60, 2)}}
    if "sample_minutes" in target:
        out["sample_minutes"] = {"target": target["sample_minutes"], "measured": round(sample_s / 60, 2)}
    if "fid" in target:
        out["fid"] = {"target": target["fid"], "measured": round(metrics["fid"]["value"], 2)}
    c = metrics["classifier_fid"]  # against the floor's mean over its draws; one draw moves by a third
    out["classifier_fid_over_floor"] = {"target": target["classifier_fid_over_floor"],
                                        "measured": round(c["value"] / c["floor_mean"], 2),
                                        "over_first_floor_draw": round(c["value"] / c["floor"], 2)}
    for entry in out.values():
        entry["met"] = entry["measured"] <= entry["target"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", choices=sorted(FEATURES))
    parser.add_argument("--n", type=int, default=1000, help="samples measured")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/speedrun"), help="run directories")
    parser.add_argument("--reuse", action="store_true", help="measure the run already in --work, do not train")
    parser.add_argument("--out", type=Path, help="JSON (default: benchmarks/results/speedrun_DATA.json)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="change the preset (as ddpm train --set), e.g. train.compile=default")
    args = parser.parse_args()
    out_path = args.out or Path(f"benchmarks/results/speedrun_{args.data}.json")
    changes = dict(parse_override(text) for text in args.set)
    cfg = make_config(data=args.data, overrides={"train.keep_checkpoints": 1000, **changes})
    run_dir = args.work / args.data
    train_s = None
    if not args.reuse:
        shutil.rmtree(run_dir, ignore_errors=True)
        start = time.perf_counter()
        train(cfg, run_dir, progress=False)
        train_s = time.perf_counter() - start
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logged = [r for r in rows if "elapsed" in r][-1]
    calibration = next((r["calibration"] for r in rows if "calibration" in r), None)
    run = load_run(run_dir)
    options = sampling_options(run.cfg, device=run.device)
    start = time.perf_counter()
    x = run.sample(args.n).x
    sample_s = time.perf_counter() - start
    save_samples(x, run_dir / "speedrun_samples.npz", True)  # for later measures (benchmarks/held_out_floor.py)
    result = evaluate_images(to_uint8(x).permute(0, 2, 3, 1).numpy(), run.cfg.data, features=FEATURES[args.data],
                             check_memorization=False)
    c = result["classifier"]
    metrics = {"classifier_fid": c["fid"], "classifier_kid": c["kid"], "mean_confidence": c["mean_confidence"],
               "class_histogram": c["class_histogram"]}
    if "fid" in result:
        metrics.update(fid=result["fid"], kid=result["kid"], precision=result["precision"], recall=result["recall"])
    train_seconds = logged["elapsed"]
    report = {
        "benchmark": "speedrun", "data": args.data, "preset": cfg.preset, "changes": changes, "date": now(), "machine": machine_info(),
        "training": {"steps": run.step, "seconds": round(train_seconds, 1),
                     "seconds_with_pictures": None if train_s is None else round(train_s, 1), "calibration": calibration,
                     "precision": read_run_json(run_dir).get("precision"), "compile": read_run_json(run_dir).get("compile"),
                     "batch_size": run.cfg.train.batch_size},
        "sampling": {"n": args.n, "seconds": round(sample_s, 1), "seeds": f"0..{args.n - 1}", "weights": "ema",
                     "clip_denoised": True, **options},
        "protocol": {k: v for k, v in result["protocol"].items() if k in ("n", "data", "reference_split",
                                                                        "n_reference", "floor_source")},
        "features": {"inception": result["fid"]["features"] if "fid" in result else None, "classifier": c["label"]},
        "metrics": metrics,
        "targets": verdict(TARGETS[args.data], train_seconds, sample_s, metrics),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("training", "sampling", "targets")}, indent=2))


if __name__ == "__main__":
    main()
