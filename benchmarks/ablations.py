"""Ablations for small-budget training: what each lever of the recipe does at a fixed budget.

Trains a preset (``digits`` by default, ``mnist``) once as it is and once per changed lever, every
run for the same number of optimizer steps (``--steps``, default the preset's; a fixed step count
keeps the comparison independent of the machine's speed, the seconds are recorded beside it), then
measures 1,000 samples of each with one sampling protocol (``--sampler``, ``--steps-sampling``,
the preset's clipping and sampling precision, EMA weights, seeds 0..999): the data set's classifier
FID/KID and, for MNIST, Inception FID/KID, each with its data-versus-data floor at the same n.
Sampling-side levers (sampler and steps, clipping, dynamic thresholding, raw against EMA weights)
are measured on the baseline run without training again. Writes JSON and prints a Markdown table.

    python benchmarks/ablations.py                       # digits, ~40 minutes on 2 CPU cores
    python benchmarks/ablations.py --only baseline 'lr*2' --reuse    # some rows; trained runs reused
    python benchmarks/ablations.py --table                              # the table of the JSON
"""

import argparse
import json
import shutil
import time
from pathlib import Path

from machine import machine_info, now

from ddpm.config import make_config  # noqa: E402
from ddpm.data import to_uint8  # noqa: E402
from ddpm.eval.image_metrics import evaluate_images  # noqa: E402
from ddpm.runs import load_run, train  # noqa: E402

FEATURES = {"mnist": ("inception", "classifier"), "digits": ("classifier",)}

#: (name, what it changes, configuration overrides), most telling first; the steps of a row are the
#: budget's unless it says
TRAINING = [
    ("baseline", "the preset", {}),
    ("fp32", "train and sample in fp32 instead of bf16 autocast", {"train.precision": "fp32", "sample.precision": "fp32"}),
    ("target=v", "predict v (Salimans & Ho 2022)", {"diffusion.target": "v"}),
    ("min-snr=5", "Min-SNR-5 loss weighting (Hang et al. 2023)", {"diffusion.min_snr_gamma": 5.0}),
    ("edm-weighting", "EDM's log-normal noise levels and loss weighting (Karras et al. 2022)",
     {"train.timestep_sampling": "edm"}),
    ("edm-weighting+v", "EDM's noise levels and weighting, v target", {"train.timestep_sampling": "edm",
                                                                        "diffusion.target": "v"}),
    ("schedule=cosine", "cosine schedule (Nichol & Dhariwal 2021)", {"diffusion.schedule": "cosine"}),
    ("cosine+min-snr=5", "cosine schedule and Min-SNR-5 together", {"diffusion.schedule": "cosine",
                                                                     "diffusion.min_snr_gamma": 5.0}),
    ("ema=0.9995", "EMA decay 0.9995 (half-life 1,386 steps)", {"train.ema_decay": 0.9995}),
    ("ema-halflife=20kimg", "EDM's half-life form: 20k images", {"train.ema_halflife_kimg": 20.0}),
    ("ema-power=0.05", "EDM2's power-function EMA, sigma_rel 0.05", {"train.ema_std": 0.05}),
    ("ema-power=0.10", "EDM2's power-function EMA, sigma_rel 0.10", {"train.ema_std": 0.10}),
    ("lr*2", "twice the learning rate", {"train.lr": "double"}),
    ("decay=constant", "constant learning rate instead of cosine decay", {"train.decay": "constant"}),
    ("batch*2 steps/2", "batch doubled, steps halved (same images)", {"train.batch_size": "double", "steps": 0.5}),
    ("width*1.5", "1.5x the U-Net's base channels", {"model.base_channels": "1.5x"}),
    ("no-attention", "no self-attention but in the middle block", {"model.attention_resolutions": []}),
    ("dropout=0.1", "dropout 0.1 in the residual blocks", {"model.dropout": 0.1}),
    ("betas=0.9,0.99", "AdamW beta2 = 0.99", {"train.adam_betas": [0.9, 0.99]}),
    ("target=x0", "predict x_0", {"diffusion.target": "x0"}),
    ("ema=0.99", "EMA decay 0.99 (half-life 69 steps)", {"train.ema_decay": 0.99}),
    ("warmup=0", "no warm-up", {"train.warmup": 0}),
    ("lr/2", "half the learning rate", {"train.lr": "half"}),
    ("T=500", "T = 500 (betas scaled by 1000/T)", {"diffusion.T": 500}),
    ("width/2", "half the U-Net's base channels", {"model.base_channels": "half"}),
    ("blocks=2", "two residual blocks per level", {"model.num_res_blocks": 2}),
    ("batch/2 steps*2", "batch halved, steps doubled (same images)", {"train.batch_size": "half", "steps": 2.0}),
    ("steps*2.5", "2.5x the steps (the budget's time on a slower machine)", {"steps": 2.5}),
]

#: (name, what it changes, sampling options) measured on the baseline run
SAMPLING = [
    ("seeds 1000..1999", "the baseline with other seeds: how much the measurement itself varies", {"seed": 1000}),
    ("raw weights", "the raw weights instead of the EMA", {"weights": "raw"}),
    ("ancestral-50", "ancestral sampling, 50 steps", {"sampler": "ancestral", "steps": 50}),
    ("ancestral-250", "ancestral sampling, 250 steps", {"sampler": "ancestral", "steps": 250}),
    ("ancestral-1000", "ancestral sampling, every step", {"sampler": "ancestral", "steps": None}),
    ("ddim-50", "DDIM, 50 steps", {"sampler": "ddim", "steps": 50}),
    ("ddim-100", "DDIM, 100 steps", {"sampler": "ddim", "steps": 100}),
    ("dpm++-10", "DPM-Solver++(2M), Karras sigmas, 10 steps", {"sampler": "dpm++2m", "steps": 10}),
    ("dpm++-20", "DPM-Solver++(2M), Karras sigmas, 20 steps", {"sampler": "dpm++2m", "steps": 20}),
    ("no clipping", "x_0 not clipped to [-1, 1]", {"clip": False}),
    ("dynamic threshold", "Imagen's dynamic thresholding, p = 0.995", {"clip": 0.995}),
    ("sample fp32", "the baseline's network sampled in fp32", {"precision": "fp32"}),
]


def resolve(base, overrides: dict) -> dict:
    """Relative overrides ("half", "double", "1.5x") made absolute against the baseline config."""
    factors = {"half": 0.5, "double": 2.0, "1.5x": 1.5}
    out = {}
    for key, value in overrides.items():
        if key == "steps":
            continue
        if isinstance(value, str) and value in factors:
            section, name = key.split(".")
            current = getattr(getattr(base, section), name)
            if current is None and key == "model.base_channels":
                from ddpm.nets.unet import UNET_PRESETS

                current = UNET_PRESETS[base.model.unet]["base_channels"]
            value = type(current)(current * factors[value])
        out[key] = value
    return out


def measure(run_dir: Path, data_name: str, n: int, sampling: dict, features) -> dict:
    """Metrics of n samples (seeds 0..n-1) of a run, with the sampling options given."""
    options = dict(sampling)
    weights = options.pop("weights", "ema")
    run = load_run(run_dir, weights=weights)
    start = time.perf_counter()
    out = run.sample(n, **options)
    seconds = time.perf_counter() - start
    images = to_uint8(out.x).permute(0, 2, 3, 1).numpy()
    result = evaluate_images(images, run.cfg.data, features=features, check_memorization=False)
    row = {"sample_seconds": round(seconds, 1), "nfe": out.nfe, "weights": weights}
    if "fid" in result:
        row["fid"] = {k: result["fid"][k] for k in ("value", "floor")}
        row["kid"] = {k: result["kid"][k] for k in ("value", "floor")}
    row["classifier_fid"] = {k: result["classifier"]["fid"][k] for k in ("value", "floor")}
    row["mean_confidence"] = {k: result["classifier"]["mean_confidence"][k] for k in ("value", "floor")}
    row["classifier_kid"] = {k: result["classifier"]["kid"][k] for k in ("value", "floor")}
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", choices=sorted(FEATURES))
    parser.add_argument("--steps", type=int, help="optimizer steps of the baseline (default: the preset's)")
    parser.add_argument("--n", type=int, default=1000, help="samples per measurement")
    parser.add_argument("--sampler", default="ancestral")
    parser.add_argument("--sampling-steps", type=int, default=100)
    parser.add_argument("--only", nargs="+", help="row names to run (default: all)")
    parser.add_argument("--reuse", action="store_true", help="measure runs already in --work, do not train them")
    parser.add_argument("--work", type=Path, help="run directories (default: benchmarks/out/ablations_DATA)")
    parser.add_argument("--out", type=Path, help="JSON (default: benchmarks/results/ablations_DATA.json)")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of --out and stop")
    args = parser.parse_args()
    work = args.work or Path(f"benchmarks/out/ablations_{args.data}")
    out_path = args.out or Path(f"benchmarks/results/ablations_{args.data}.json")
    if args.table:
        print(table(json.loads(out_path.read_text())))
        return
    base = make_config(data=args.data, overrides={"train.minutes": None})
    budget = args.steps or base.train.steps
    protocol_sampling = {"sampler": args.sampler, "steps": args.sampling_steps}
    features = FEATURES[args.data]
    report = json.loads(out_path.read_text()) if out_path.is_file() else {"rows": {}}
    report.update(benchmark="ablations", data=args.data, date=now(), machine=machine_info(),
                  budget={"steps": budget, "batch_size": base.train.batch_size, "unit": "optimizer steps"},
                  protocol={"n": args.n, "seeds": f"0..{args.n - 1}", **protocol_sampling,
                            "clip_denoised": True, "weights": "ema unless the row says",
                            "sample_precision": base.sample.precision, "reference_split": "train",
                            "features": list(features)})
    wanted = set(args.only) if args.only else None
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def record(name: str, row: dict) -> None:
        report["rows"][name] = row
        print(json.dumps({name: row}), flush=True)
        out_path.write_text(json.dumps(report, indent=2))

    def train_row(name: str, what: str, overrides: dict) -> dict:
        run_dir = work / name
        steps = int(round(budget * overrides.get("steps", 1.0)))
        cfg = make_config(data=args.data, overrides={"train.minutes": None, "train.steps": steps,
                                                     "train.sample_every": 0, "train.checkpoint_every": 0,
                                                     "train.progress": False, "sample.n": 8, **resolve(base, overrides)})
        if not (args.reuse and (run_dir / "model.safetensors").is_file()):
            shutil.rmtree(run_dir, ignore_errors=True)
            train(cfg, run_dir, progress=False)
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        seconds = round([r for r in rows if "elapsed" in r][-1]["elapsed"], 1)  # the training loop's own clock
        return {"kind": "training", "what": what, "overrides": resolve(base, overrides), "steps": steps,
                "train_seconds": seconds, **measure(run_dir, args.data, args.n, protocol_sampling, features)}

    # the baseline, then the sampling levers on it (cheap), then the training levers
    baseline, *others = TRAINING
    if not wanted or "baseline" in wanted:
        record("baseline", train_row(*baseline))
    for name, what, sampling in SAMPLING:
        if not wanted or name in wanted:
            record(name, {"kind": "sampling", "what": what, "sampling": sampling,
                          **measure(work / "baseline", args.data, args.n, {**protocol_sampling, **sampling}, features)})
    for name, what, overrides in others:
        if not wanted or name in wanted:
            record(name, train_row(name, what, overrides))
    print(table(report))


def table(report: dict) -> str:
    """The rows as Markdown in the order run, each metric with its ratio to the baseline's."""
    inception = report["data"] == "mnist"
    metrics = (["fid"] if inception else []) + ["classifier_fid"]
    titles = {"fid": "Inception FID", "classifier_fid": "classifier FID"}
    base = report["rows"]["baseline"]
    lines = ["| lever | change | steps | train s | sample s | "
             + " | ".join(f"{titles[m]} (x baseline)" for m in metrics) + " | mean confidence |",
             "|---|---|---|---|---|" + "---|" * len(metrics) + "---|"]
    for name, row in report["rows"].items():
        cells = [name, row["what"], str(row.get("steps", "")), str(row.get("train_seconds") or ""),
                 str(row["sample_seconds"])]
        cells += [f"{row[m]['value']:.2f} ({row[m]['value'] / base[m]['value']:.2f})" for m in metrics]
        cells.append(f"{row['mean_confidence']['value']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    floors = ", ".join(f"{titles[m]} {base[m]['floor']:.2f}" for m in metrics)
    floors += f", mean confidence {base['mean_confidence']['floor']:.3f}"
    return "\n".join(lines) + f"\n\nData-versus-data floors at n = {report['protocol']['n']}: {floors}."


if __name__ == "__main__":
    main()
