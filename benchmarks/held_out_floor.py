"""How optimistic the data-versus-data floor at n = 1,000 is: training images against held-out ones.

The floor beside an FID@1k of the built-in data is 1,000 real images drawn from the reference
itself (the training split), because their test splits are smaller. A model that does not copy
its training images cannot reach that floor: its samples are new images, and the classifier whose
features measure them was trained on the reference. This compares, at the size of the test split
(176 for digits, 500 for MNIST; at that size the floor ``ddpm`` reports is the test split itself),
in each feature space: that many training images (inside the reference), the whole test split
(real images neither the model nor the classifier saw), and disjoint subsets of a model's samples
of the same size. Same ``n``, same reference, same features: the numbers compare. FID and KID
both; KID is unbiased, and at these sizes FID's covariances are near-singular (176 points in the
classifier's 128 dimensions), so KID is the one to read. Then the overlap itself: classifier FID
of real images against a reference that holds them, as the FID@1k floor is drawn, and against an
equal reference apart from them, at the floor's share of the reference (all the data set's
images, several random draws). Writes JSON.

    ddpm sample runs/digits --n 1000 --out /tmp/digits.npz
    python benchmarks/held_out_floor.py --data digits --samples /tmp/digits.npz \\
        --out benchmarks/results/held_out_floor_digits.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from machine import machine_info, now  # noqa: E402

from ddpm.config import DataConfig  # noqa: E402
from ddpm.eval.image_metrics import evaluate_images  # noqa: E402
from ddpm.eval.reference import load_split  # noqa: E402

FEATURES = {"digits": ("classifier",), "mnist": ("classifier", "inception")}
#: (n, reference size) of the overlap measure: the share of the reference that the FID@1k floor's
#: images make up in the real protocol (1,000 of 1,621 digits: 62 %; 1,000 of 4,500 MNIST: 22 %),
#: with room for n more images apart from the reference among all the data set's images
OVERLAP_SIZES = {"digits": (700, 1097), "mnist": (1000, 4000)}


def fids(images: np.ndarray, data_cfg: DataConfig, features) -> dict:
    """FID against the training split in each feature space, with the floor at the same size."""
    result = evaluate_images(images, data_cfg, features=features, check_memorization=False)
    out = {}
    for name in features:
        space = result[name] if name == "classifier" else result
        out[name] = {metric: {key: space[metric][key] for key in ("value", "floor", "n_reference")}
                     for metric in ("fid", "kid")}
    return out


def overlap_floors(data_cfg: DataConfig, repeats: int) -> dict:
    """Classifier FID of n real images against a reference that holds them (as the FID@1k floor
    is drawn) and against one apart from them, over all the data set's images (train and test
    splits), for ``repeats`` random draws."""
    from ddpm.eval.classifier import load_classifier
    from ddpm.eval.feature_metrics import fid

    clf = load_classifier(data_cfg)
    features = clf(torch.cat([load_split(data_cfg, split).x for split in ("train", "test")]))
    n, m = OVERLAP_SIZES[data_cfg.name]
    inside, apart = [], []
    for seed in range(repeats):
        order = np.random.default_rng(seed).permutation(len(features))
        reference = features[order[:m]]
        inside.append(fid(reference[:n], reference))
        apart.append(fid(features[order[m:m + n]], reference))
    return {"n": n, "n_reference": m, "features": clf.description, "repeats": repeats,
            "inside the reference": {"mean": float(np.mean(inside)), "values": inside},
            "apart from the reference": {"mean": float(np.mean(apart)), "values": apart},
            "apart / inside": float(np.mean(apart) / np.mean(inside))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", choices=sorted(FEATURES))
    parser.add_argument("--samples", type=Path, help="a model's samples (.npz, uint8 NHWC, as ddpm sample writes)")
    parser.add_argument("--subsets", type=int, default=3, help="disjoint subsets of the samples measured")
    parser.add_argument("--repeats", type=int, default=5, help="random draws of the overlap measure")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data_cfg = DataConfig(name=args.data)
    features = FEATURES[args.data]
    test = load_split(data_cfg, "test")
    n = len(test)
    train = load_split(data_cfg, "train")
    picked = np.random.default_rng(0).permutation(len(train))[:n]
    rows = {"training": fids(train.x[picked].numpy(), data_cfg, features),
            "held_out": fids(test.x.numpy(), data_cfg, features)}
    report = {"benchmark": "held_out_floor", "data": args.data, "date": now(), "machine": machine_info(), "n": n,
              "reference": "the training split", "rows": rows}
    if args.samples is not None:
        samples = np.load(args.samples)["arr_0"]
        count = min(args.subsets, len(samples) // n)
        rows["model"] = [fids(samples[i * n:(i + 1) * n], data_cfg, features) for i in range(count)]
        report["samples"] = {"file": str(args.samples), "subsets": count, "of": len(samples)}
    summary = {}
    for name in features:
        for metric in ("fid", "kid"):
            entry = {"training images (in the reference)": rows["training"][name][metric]["value"],
                     "held-out images": rows["held_out"][name][metric]["value"]}
            if "model" in rows:
                values = [r[name][metric]["value"] for r in rows["model"]]
                entry["model samples"] = {"mean": float(np.mean(values)), "values": values}
            summary[f"{name} {metric}"] = entry
    report["summary"] = summary
    report["overlap"] = overlap_floors(data_cfg, args.repeats)
    summary["classifier fid, inside against apart from the reference"] = report["overlap"]
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
