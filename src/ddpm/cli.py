"""The ``ddpm`` command line: parses options, builds a configuration, calls the library."""

import argparse
import json
import sys
import warnings
from pathlib import Path

from . import __version__
from .config import PRESETS, apply_overrides, load_config, make_config, parse_override
from .errors import DDPMError, RunError


def _overrides(args) -> dict:
    """--set pairs plus the short forms, in that order (short forms win)."""
    out = dict(parse_override(s) for s in args.set or [])
    for key, name in (("seed", "seed"), ("train.minutes", "minutes"), ("train.steps", "steps")):
        value = getattr(args, name, None)
        if value is not None:
            out[key] = value
    return out


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="2-D set (swissroll, spiral, moons, 8gaussians, checkerboard, circles, gaussian), "
                                  "image set (digits, mnist) or a path (image folder, .npz/.npy, IDX, CIFAR-10 binary)")
    p.add_argument("--preset", help=f"named configuration: {', '.join(PRESETS)} (default: the data set's own)")
    p.add_argument("--config", type=Path, help="a config.toml to start from (e.g. a run's)")
    p.add_argument("--seed", type=int, help="random seed (data, initialisation, training noise)")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                   help="override any field, e.g. --set train.lr=2e-4 --set model.width=256 (repeatable)")


def _config(args):
    overrides = _overrides(args)
    if args.config is not None:
        cfg = load_config(args.config)
        if args.data:
            cfg.data.name = args.data
        apply_overrides(cfg, overrides)
        return cfg
    return make_config(args.preset, args.data, overrides)


def cmd_train(args) -> int:
    from .runs import train

    if args.resume is not None:
        run_dir = args.resume
        cfg = load_config(run_dir / "config.toml") if (run_dir / "config.toml").is_file() else None
        if cfg is None:
            raise RunError(f"{run_dir} is not a run directory (no config.toml): pass the --out of a `ddpm train`")
        apply_overrides(cfg, _overrides(args))
    else:
        cfg = _config(args)
        run_dir = args.out or Path("runs") / Path(cfg.data.name).name
    trainer = train(cfg, run_dir, resume=args.resume is not None, progress=not args.quiet)
    if not trainer.dist.is_main:
        return 0
    if trainer.interrupted:
        print(f"interrupted at step {trainer.step}; checkpoint saved. Continue with: ddpm train --resume {run_dir}",
              file=sys.stderr)
        return 130
    print(f"trained {trainer.step} steps in {trainer.elapsed:.1f} s -> {run_dir}")
    report = run_dir / "eval.json"
    if report.is_file():
        _print_eval(json.loads(report.read_text()))
    return 0


def _print_eval(result: dict) -> None:
    for name, m in result.items():
        if isinstance(m, dict):
            print(f"  {name:<20} {m['value']:.5f}   data floor {m['floor']:.5f}   ratio {m['ratio']:.2f}")


def cmd_sample(args) -> int:
    import torch

    from . import viz
    from .runs import load_run, save_samples

    from .train.distributed import resolve_device

    run = load_run(args.run, device=resolve_device(args.device))
    labels = None
    if args.label is not None:
        if not run.num_classes or not run.cfg.model.class_conditional:
            raise RunError("--label needs a class-conditional run (train with --set model.class_conditional=true)")
        if not 0 <= args.label < run.num_classes:
            raise RunError(f"--label must lie in 0..{run.num_classes - 1}")
        labels = torch.full((args.n,), args.label, dtype=torch.long)
    want_traj = args.gif is not None
    out = run.sample(args.n, seed=args.seed, sampler=args.sampler, steps=args.steps, eta=args.eta, clip=args.clip,
                     labels=labels, batch_size=args.batch_size, return_trajectory=want_traj, progress=not args.quiet)
    x, traj = out if want_traj else (out, None)
    save_samples(x, args.out, run.is_image, labels)
    print(f"{args.n} samples -> {args.out}")
    if args.grid is not None:
        if run.is_image:
            viz.save_image_grid(x[:256], args.grid)
        else:
            from .data import load_dataset

            viz.samples_over_data(x, load_dataset(run.cfg.data, run.cfg.seed).x[:2000], args.grid)
        print(f"picture -> {args.grid}")
    if args.png_dir is not None:
        if not run.is_image:
            raise RunError("--png-dir writes one PNG per image; this run's samples are vectors")
        from PIL import Image

        from .data import to_uint8

        args.png_dir.mkdir(parents=True, exist_ok=True)
        pixels = to_uint8(x).permute(0, 2, 3, 1).numpy()
        for i, img in enumerate(pixels):
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(args.png_dir / f"{args.seed + i:06d}.png")
        print(f"{len(pixels)} PNG files -> {args.png_dir}")
    if traj is not None:
        viz.reverse_gif(traj[:, :64], args.gif, run.process)
        print(f"reverse process -> {args.gif}")
    return 0


def cmd_evaluate(args) -> int:
    import numpy as np

    from .runs import evaluate

    samples = None
    if args.samples is not None:
        try:
            with np.load(args.samples) as f:
                samples = f["arr_0"]
        except (OSError, KeyError, ValueError) as e:
            raise RunError(f"cannot read samples from {args.samples} ({e}): pass an .npz with arr_0") from None
    result = evaluate(args.run, samples, n=args.n, seed=args.seed)
    print(f"{args.run}: {result['n']} samples of {result['data']} (step {result['step']}) -> {args.run / 'eval.json'}")
    _print_eval(result)
    return 0


def cmd_forward(args) -> int:
    from .data import load_dataset
    from .runs import build_process, forward_picture

    cfg = _config(args)
    data = load_dataset(cfg.data, cfg.seed)
    path = forward_picture(build_process(cfg), data, args.out, cfg.seed)
    print(f"forward process of {cfg.data.name} (T={cfg.diffusion.T}, {cfg.diffusion.schedule}) -> {path}")
    return 0


def cmd_presets(args) -> int:
    for name, tree in PRESETS.items():
        model = tree.get("model", {})
        net = model.get("kind", "mlp") + (f" ({model['unet']})" if "unet" in model else "")
        train = tree.get("train", {})
        print(f"{name:<14} data={tree['data']['name']:<13} model={net:<16} T={tree.get('diffusion', {}).get('T', 1000):<5}"
              f" steps={train.get('steps')} batch={train.get('batch_size')} lr={train.get('lr')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpm", description="Denoising diffusion probabilistic models (Ho et al. 2020).")
    parser.add_argument("--version", action="version", version=f"ddpm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model into a run directory",
                       description="Train a noise-prediction network; the run directory gets config.toml, "
                                   "metrics.jsonl, model.safetensors, checkpoints/ and pictures/.")
    _add_config_options(p)
    p.add_argument("--out", type=Path, help="run directory (default: runs/DATA)")
    p.add_argument("--steps", type=int, help="optimizer steps (train.steps)")
    p.add_argument("--minutes", type=float, help="wall-clock budget in minutes (train.minutes)")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its newest checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Draw samples; sample i uses seed SEED+i, whatever the batch.")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `ddpm train`")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", type=Path, default=Path("samples.npz"), help="output .npz, arr_0 in data coordinates")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample")
    p.add_argument("--sampler", choices=["ancestral", "ddim"], help="default: the run's")
    p.add_argument("--steps", type=int, help="network evaluations (default: every step of the chain)")
    p.add_argument("--eta", type=float, help="DDIM noise, 0 = deterministic")
    p.add_argument("--clip", action=argparse.BooleanOptionalAction, default=None,
                   help="clip predicted x0 to [-1, 1] (default: on for images)")
    p.add_argument("--label", type=int, help="class label, for class-conditional runs")
    p.add_argument("--batch-size", type=int, help="samples per network call")
    p.add_argument("--grid", type=Path, help="also write a picture (image grid or scatter over data)")
    p.add_argument("--png-dir", type=Path, help="also write one PNG per image into this folder")
    p.add_argument("--gif", type=Path, help="also write a GIF of the reverse process")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="measure a run's samples against the data",
                       description="Sliced Wasserstein, MMD and exact W2 against fresh data draws, each with its "
                                   "data-versus-data floor; writes RUN/eval.json.")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `ddpm train`")
    p.add_argument("--samples", type=Path, help=".npz of samples (default: draw --n now)")
    p.add_argument("--n", type=int, help="samples to draw (default: the run's sample.n)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample drawn")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("forward", help="draw the forward (noising) process of a data set",
                       description="Panels of x_t ~ q(x_t | x_0) from t = 0 to T.")
    _add_config_options(p)
    p.add_argument("--out", type=Path, default=Path("forward.png"), help="output PNG (default forward.png)")
    p.set_defaults(func=cmd_forward)

    p = sub.add_parser("presets", help="list the named configurations")
    p.set_defaults(func=cmd_presets)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"ddpm: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        return args.func(args)
    except DDPMError as e:
        print(f"ddpm: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
