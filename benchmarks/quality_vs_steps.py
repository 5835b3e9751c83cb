"""Quality against network evaluations, for every sampler, on one trained model.

Swiss roll (CPU, a few minutes): trains the preset (fixed variance) and the same with a learned
variance (L_hybrid), then samples 2,000 points with each sampler at each number of network
evaluations (NFE) and records the sliced Wasserstein distance to fresh data over its
data-versus-data floor.

MNIST, in two steps so the sampling can run where it is fast and the features where the weights are:

    python benchmarks/quality_vs_steps.py sample --run benchmarks/out/mnist \
        --learned-run benchmarks/out/mnist_learned --device cuda --out benchmarks/out/qvs
    python benchmarks/quality_vs_steps.py measure --samples benchmarks/out/qvs
    python benchmarks/quality_vs_steps.py toy

``sample`` draws --n images (seeds 0..n-1, so every configuration starts from the same x_T) with
each configuration of :func:`configurations` and writes them, uint8, one compressed .npz per
model, with the seconds each took; ``measure`` computes the classifier FID of every
configuration and the Inception FID of those in INCEPTION_NFE, each beside its floor, writes
JSON and a plot.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from machine import machine_info, now  # noqa: E402

from ddpm.data import to_uint8  # noqa: E402
from ddpm.runs import load_run  # noqa: E402
from ddpm.samplers import sample  # noqa: E402

NFES = (5, 10, 20, 50, 100, 250, 1000)
#: (model, sampler, steps) whose Inception FID is measured (every one gets the classifier FID)
INCEPTION = {("fixed", "ancestral", 1000), ("fixed", "ancestral", 100), ("fixed", "ddim", 50),
             ("fixed", "ddim", 100), ("fixed", "dpm++2m", 10), ("fixed", "dpm++2m", 20), ("fixed", "heun", 10),
             ("fixed", "euler", 20), ("fixed", "ddim", 10), ("fixed", "heun", 5), ("learned", "ancestral", 50),
             ("learned", "ancestral", 1000), ("fixed_large", "ancestral", 1000), ("fixed", "ddim", 20),
             ("fixed", "ddim", 1000), ("fixed", "dpm++2m", 100), ("fixed", "dpm++2m-linspace", 10),
             ("fixed", "dpm++2m-linspace", 20), ("fixed", "dpm++2m-trailing", 10), ("fixed", "dpm++2m-trailing", 20)}

#: the subset the MNIST targets need (--inception targets): ancestral sampling with all steps and
#: with 100, DDIM with 50, DPM-Solver++ with 10 and 20 evaluations (Karras and trailing spacings)
INCEPTION_TARGETS = {("fixed", "ancestral", 1000), ("fixed", "ancestral", 100), ("fixed", "ddim", 50),
                     ("fixed", "dpm++2m", 10), ("fixed", "dpm++2m", 20), ("fixed", "dpm++2m-trailing", 10),
                     ("fixed", "dpm++2m-trailing", 20)}


def configurations(T: int, learned: bool, max_nfe: int = max(NFES)) -> list[tuple[str, str, int, str | None, float]]:
    """(model, sampler, steps, spacing, eta): every sampler at every NFE up to T with its default
    spacing (None; Heun: the steps whose 2 n - 1 evaluations are nearest) and eta 0; DPM-Solver++(2M)
    also with the linspace, trailing and logsnr spacings at 10 and 20, and as the SDE solver (eta 1) at
    every NFE; ancestral also with beta_t (fixed_large); the learned-variance model by ancestral
    sampling, DDIM and DPM-Solver++."""
    nfes = sorted({n for n in NFES if n <= min(T, max_nfe)} | ({T} if T <= max_nfe else set()))
    T = min(T, max_nfe)
    out = []
    for sampler in ("dpm++2m", "dpm++3m", "ddim", "euler", "heun", "ancestral"):
        for nfe in nfes:
            steps = (nfe + 1) // 2 if sampler == "heun" else nfe
            if nfe <= T and steps >= 1:
                out.append(("fixed", sampler, steps, None, 0.0))
    out += [("fixed", "dpm++2m", n, s, 0.0) for s in ("linspace", "trailing", "logsnr") for n in (10, 20) if n <= T]
    out += [("fixed", "dpm++2m", n, None, 1.0) for n in nfes]
    out += [("fixed_large", "ancestral", n, None, 0.0) for n in nfes if n >= min(50, T)]
    if learned:
        out += [("learned", "ancestral", n, None, 0.0) for n in nfes if n >= min(10, T)]
        out += [("learned", s, n, None, 0.0) for s, n in (("ddim", 50), ("dpm++2m", 10), ("dpm++2m", 20)) if n <= T]
    return out


def label(sampler: str, spacing: str | None, eta: float = 0.0) -> str:
    """The sampler's name (``-sde`` for DPM-Solver++ with eta 1), with the spacing when it is not the
    sampler's default."""
    name = f"{sampler}-sde" if eta > 0 else sampler
    return name if spacing is None else f"{name}-{spacing}"


def key(model: str, name: str, steps: int) -> str:
    return f"{model}/{name}/{steps}"


def _with_beta(run):
    """The same run sampled with the reverse variance beta_t (DDPM's fixed_large)."""
    p = run.process
    run.process = type(p)(p.betas, p.target, "fixed_large", p.loss, p.min_snr_gamma)
    return run


def _models(run: Path, learned_run: Path | None, device):
    fixed = load_run(run, device=device)
    models = {"fixed": fixed}
    models["fixed_large"] = _with_beta(load_run(run, device=device))
    if learned_run is not None:
        models["learned"] = load_run(learned_run, device=device)
    return models


def cmd_sample(args) -> None:
    device = torch.device(args.device)
    models = _models(args.run, args.learned_run, device)
    T = models["fixed"].process.num_timesteps
    args.out.mkdir(parents=True, exist_ok=True)
    timings, arrays = {}, {m: {} for m in models}
    runs = {m: {"path": str(r.path), "step": r.step, "variance": r.process.variance} for m, r in models.items()}
    meta = {"date": now(), "machine": machine_info(device), "n": args.n, "seeds": f"0..{args.n - 1}",
            "clip_denoised": True, "weights": "ema", "batch_size": args.batch_size, "runs": runs, "timings": timings}
    if args.resume and (args.out / "sampling.json").is_file():  # add the configurations not drawn yet
        meta = json.loads((args.out / "sampling.json").read_text())
        timings = meta["timings"]
        for m in models:
            if (args.out / f"samples_{m}.npz").is_file():
                with np.load(args.out / f"samples_{m}.npz") as z:
                    arrays[m] = {name: z[name] for name in z.files}
    where = machine_info(device).get("gpu", "cpu")

    def save(model):  # each model's samples as soon as they are all drawn
        np.savez_compressed(args.out / f"samples_{model}.npz", **arrays[model])
        (args.out / "sampling.json").write_text(json.dumps(meta, indent=2))

    previous = None
    for model, sampler, steps, spacing, eta in configurations(T, "learned" in models, args.max_nfe):
        name = label(sampler, spacing, eta)
        if key(model, name, steps) in timings:
            continue
        if previous not in (None, model):
            save(previous)
        previous = model
        run = models[model]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = sample(run.process, run.model, run.shape, range(args.n), sampler=sampler, steps=steps, eta=eta,
                     spacing=spacing, clip_denoised=True, batch_size=args.batch_size, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        arrays[model][f"{name}_{steps}"] = to_uint8(out.x).permute(0, 2, 3, 1).numpy()
        timings[key(model, name, steps)] = {"seconds": round(seconds, 2), "nfe": out.nfe,
                                            "spacing": spacing or _spacing(sampler), "device": where}
        print(key(model, name, steps), out.nfe, f"{seconds:.1f} s", flush=True)
    if previous is not None:
        save(previous)


def _spacing(sampler: str) -> str:
    from ddpm.samplers import SAMPLERS, resolve_sampler

    return SAMPLERS[resolve_sampler(sampler)][1]


def cmd_measure(args) -> None:
    from ddpm.eval.image_metrics import evaluate_images

    from ddpm.config import load_config

    meta = json.loads((args.samples / "sampling.json").read_text())
    inception = INCEPTION_TARGETS if args.inception == "targets" else INCEPTION
    data_cfg = load_config(args.run / "config.toml").data
    out_path = args.out
    done = json.loads(out_path.read_text())["points"] if out_path.is_file() and args.resume else {}
    for model in meta["runs"]:
        with np.load(args.samples / f"samples_{model}.npz") as z:
            for name in z.files:
                tag, steps = name.rsplit("_", 1)
                sampler = tag.partition("-")[0]
                k = key(model, tag, int(steps))
                want_inception = (model, tag, int(steps)) in inception
                if k in done and ("fid" in done[k] or not want_inception):
                    continue
                features = ("classifier", "inception") if want_inception else ("classifier",)
                result = evaluate_images(z[name], data_cfg, features=features, check_memorization=False,
                                         protocol={"sampler": sampler, "steps": int(steps)})
                point = {"model": model, "sampler": sampler, "label": tag, "steps": int(steps), **meta["timings"][k],
                         "classifier_fid": {x: result["classifier"]["fid"][x] for x in ("value", "floor")}}
                if "fid" in result:
                    point["fid"] = {x: result["fid"][x] for x in ("value", "floor")}
                done[k] = point
                print(k, json.dumps({x: point[x] for x in ("nfe", "classifier_fid")} | (
                    {"fid": point["fid"]} if "fid" in point else {})), flush=True)
                _write(out_path, meta, done, result["protocol"])
    plot_images(done, out_path.with_suffix(".png"))


def _write(path: Path, meta: dict, points: dict, protocol: dict) -> None:
    report = {"benchmark": "quality_vs_steps", "data": "mnist", "measured": now(), "sampling": meta,
              "protocol": {k: v for k, v in protocol.items() if k not in ("sampler", "steps")},
              "points": points}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)


def _curves(points: dict, metric: str):
    curves = {}
    for p in points.values():
        if metric in p:
            name = p.get("label", p["sampler"])
            label = name if p["model"] == "fixed" else f"{name} ({p['model'].replace('_', ' ')})"
            curves.setdefault(label, []).append((p["nfe"], p[metric]["value"], p[metric]["floor"]))
    return {k: sorted(v) for k, v in curves.items()}


def _plot_curves(ax, curves: dict) -> None:
    """One line per sampler, a colour each; dashed for the models other than the fixed-variance one."""
    colours = plt.get_cmap("tab20").colors
    for i, (name, curve) in enumerate(sorted(curves.items())):
        ax.plot([c[0] for c in curve], [c[1] for c in curve], "o" + ("--" if "(" in name else "-"), ms=3,
                c=colours[i % len(colours)], label=name)


def _finish_axes(ax, title: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations per sample")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_images(points: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (metric, label) in zip(axes, (("classifier_fid", "classifier FID@1k"), ("fid", "Inception FID@1k"))):
        curves = _curves(points, metric)
        _plot_curves(ax, curves)
        floor = next(iter(curves.values()))[0][2] if curves else None
        if floor is not None:
            ax.axhline(floor, c="k", ls="--", lw=1, label="data floor (same n)")
        _finish_axes(ax, f"MNIST: {label}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# -------------------------------------------------------------------- swiss roll
def cmd_toy(args) -> None:
    from ddpm.config import make_config
    from ddpm.eval.toy_metrics import evaluate_points
    from ddpm.runs import train

    runs = {}
    for model, overrides in (("fixed", {}), ("learned", {"diffusion.variance": "learned_range"})):
        run_dir = args.work / f"swissroll_{model}"
        if not (run_dir / "model.safetensors").is_file():
            train(make_config(data="swissroll", overrides=overrides), run_dir, progress=False)
        runs[model] = load_run(run_dir)
    runs["fixed_large"] = _with_beta(load_run(args.work / "swissroll_fixed"))
    T = runs["fixed"].process.num_timesteps
    points = {}
    for model, sampler, steps, spacing, eta in configurations(T, True):
        run = runs[model]
        start = time.perf_counter()
        out = sample(run.process, run.model, run.shape, range(args.seed, args.seed + args.n), sampler=sampler,
                     steps=steps, eta=eta, spacing=spacing, batch_size=args.n)
        seconds = time.perf_counter() - start
        sw = evaluate_points(out.x.numpy(), "swissroll", metrics=["sliced_wasserstein"])["sliced_wasserstein"]
        name = label(sampler, spacing, eta)
        points[key(model, name, steps)] = {"model": model, "sampler": sampler, "label": name, "steps": steps,
                                           "eta": eta, "nfe": out.nfe, "spacing": spacing or _spacing(sampler),
                                           "seconds": round(seconds, 2), "sliced_wasserstein": sw}
        print(key(model, name, steps), out.nfe, f"ratio {sw['ratio']:.2f}", flush=True)
    report = {"benchmark": "quality_vs_steps", "data": "swissroll", "date": now(), "machine": machine_info(),
              "n": args.n, "seeds": f"{args.seed}..{args.seed + args.n - 1}", "weights": "ema",
              "runs": {m: {"path": str(r.path), "step": r.step, "variance": r.process.variance} for m, r in runs.items()},
              "metric": "sliced Wasserstein (512 projections) to 3 fresh draws of 2,000, over the data-vs-data floor",
              "points": points}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    plot_toy(points, args.n, args.out.with_suffix(".png"))


def plot_toy(points: dict, n: int, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    _plot_curves(ax, _curves({k: {**p, "sw": {"value": p["sliced_wasserstein"]["ratio"], "floor": 1.0}}
                              for k, p in points.items()}, "sw"))
    ax.axhline(1.0, c="k", ls="--", lw=1, label="data floor")
    ax.set_ylabel("sliced W / floor")
    _finish_axes(ax, f"swiss roll, {n} samples")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample", help="draw the MNIST samples of every configuration")
    p.add_argument("--run", type=Path, default=Path("benchmarks/out/mnist"))
    p.add_argument("--learned-run", type=Path)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-nfe", type=int, default=max(NFES), help="skip configurations above this (a quick check)")
    p.add_argument("--resume", action="store_true", help="keep the samples in --out, draw only the missing ones")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/qvs"))
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("measure", help="FID of every configuration's samples")
    p.add_argument("--samples", type=Path, default=Path("benchmarks/out/qvs"))
    p.add_argument("--run", type=Path, default=Path("benchmarks/out/mnist"), help="the run whose data to compare with")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/quality_vs_steps_mnist.json"))
    p.add_argument("--resume", action="store_true", help="keep the points already in --out")
    p.add_argument("--inception", choices=("all", "targets"), default="all",
                   help="Inception FID for every point of INCEPTION, or only those the targets need (~2.5 "
                        "minutes each on 2 CPU cores)")
    p.set_defaults(func=cmd_measure)
    p = sub.add_parser("toy", help="the swiss roll, on this machine")
    p.add_argument("--work", type=Path, default=Path("benchmarks/out"))
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/quality_vs_steps_swissroll.json"))
    p.set_defaults(func=cmd_toy)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
