"""Classifier-free guidance against its scale: how often samples are of the requested class.

Trains the `digits` preset class-conditionally (`ddpm train --data digits --conditional`, 10% of
labels dropped; fixed at the preset's step count, without its time budget, so the run does not
depend on the machine's speed; the JSON of 2026-11-27 is of the preset then: linear schedule, 1,700
steps), then for each guidance scale draws --n samples per class (seeds 0.., the same for every
scale) and measures them with the digits classifier (held-out accuracy in the JSON): accuracy
against the requested class, per class and overall, and the classifier FID@n of all the samples
beside its floor. Writes JSON and a plot.

    python benchmarks/guidance_sweep.py                  # ~5 minutes on 2 CPU cores
"""

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from machine import machine_info, now  # noqa: E402

from ddpm.config import make_config  # noqa: E402
from ddpm.data import to_uint8  # noqa: E402
from ddpm.eval.classifier import load_classifier  # noqa: E402
from ddpm.eval.image_metrics import evaluate_images  # noqa: E402
from ddpm.runs import load_run, train  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0])
    parser.add_argument("--n", type=int, default=100, help="samples per class")
    parser.add_argument("--sampler", default="dpm++2m")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/digits_conditional"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/guidance_sweep_digits.json"))
    args = parser.parse_args()
    cfg = make_config(data="digits", overrides={"model.class_conditional": True, "train.minutes": None})
    seconds = None
    if not (args.work / "model.safetensors").is_file():
        start = time.perf_counter()
        train(cfg, args.work, progress=False)
        seconds = time.perf_counter() - start
    run = load_run(args.work)
    clf = load_classifier(run.cfg.data)
    k = run.num_classes
    labels = torch.arange(k).repeat_interleave(args.n)
    points = []
    for w in args.scales:
        out = run.sample(len(labels), sampler=args.sampler, steps=args.steps, labels=labels, guidance=w)
        images = to_uint8(out.x)
        predicted = clf.probabilities(images).argmax(1)
        hits = predicted == labels.numpy()
        fid = evaluate_images(images.permute(0, 2, 3, 1).numpy(), run.cfg.data, features=("classifier",),
                              check_memorization=False)["classifier"]["fid"]
        point = {"scale": w, "accuracy": float(hits.mean()),
                 "accuracy_per_class": [float(hits[labels.numpy() == c].mean()) for c in range(k)],
                 "classifier_fid": {"value": fid["value"], "floor": fid["floor"]}}
        points.append(point)
        print(json.dumps({x: point[x] for x in ("scale", "accuracy", "classifier_fid")}), flush=True)
    report = {"benchmark": "guidance_sweep", "data": "digits", "date": now(), "machine": machine_info(),
              "run": {"steps": run.step, "train_seconds": seconds and round(seconds, 1), "label_dropout": 0.1},
              "protocol": {"samples_per_class": args.n, "sampler": args.sampler, "steps": args.steps,
                           "weights": "ema", "seeds": f"0..{len(labels) - 1}", "clip_denoised": True,
                           "classifier": clf.description, "classifier_accuracy_heldout": clf.accuracy},
              "points": points}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    scales = [p["scale"] for p in points]
    a.plot(scales, [p["accuracy"] for p in points], "o-")
    a.set_xlabel("guidance scale w")
    a.set_ylabel("samples of the requested class")
    a.set_ylim(0, 1.02)
    a.grid(alpha=0.3)
    b.plot(scales, [p["classifier_fid"]["value"] for p in points], "o-", label=f"classifier FID@{len(labels)}")
    b.axhline(points[0]["classifier_fid"]["floor"], c="k", ls="--", lw=1, label="data floor")
    b.set_xlabel("guidance scale w")
    b.set_yscale("log")
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    fig.suptitle(f"digits, class-conditional: {args.sampler} {args.steps} steps, {args.n} per class", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)



if __name__ == "__main__":
    main()
