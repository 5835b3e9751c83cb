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
    if getattr(args, "conditional", False):
        out["model.class_conditional"] = True
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
    from .runs import check_resume, finished_at, train

    if args.resume is not None:
        run_dir = args.resume
        if not (run_dir / "config.toml").is_file():
            raise RunError(f"{run_dir} is not a run directory (no config.toml): pass the --out of a `ddpm train`")
        saved = load_config(run_dir / "config.toml")
        cfg = load_config(run_dir / "config.toml")
        apply_overrides(cfg, _overrides(args))
        check_resume(saved, cfg)
        step = finished_at(run_dir, cfg)
        if step is not None:
            print(f"{run_dir} already finished at step {step} (train.steps={cfg.train.steps}, "
                  f"train.minutes={cfg.train.minutes}); to train longer pass a larger --steps or --minutes")
            return 0
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


def cmd_sample(args) -> int:
    import torch

    from . import viz
    from .runs import load_run, save_samples

    from .train.distributed import resolve_device

    from .runs import check_writable

    run = load_run(args.run, device=resolve_device(args.device), weights="raw" if args.raw else "ema",
                   checkpoint=args.checkpoint)
    s = run.cfg.sample
    _check_sampling(args, run.cfg, run.process, run.device, n=args.n,
                    batch_size=s.batch_size if args.batch_size is None else args.batch_size,
                    dynamic_threshold=args.dynamic_threshold)
    for path in (args.out, args.grid, args.gif):
        if path is not None:
            check_writable(path)
    if args.png_dir is not None:
        check_writable(args.png_dir / "x.png")
    labels = None
    conditional = bool(run.num_classes and run.cfg.model.class_conditional)
    if args.label is not None:
        if not conditional:
            raise RunError("--class needs a class-conditional run (train with --conditional)")
        if args.label == "all":  # --n of each class, class by class
            labels = torch.arange(run.num_classes).repeat_interleave(args.n)
        elif not 0 <= args.label < run.num_classes:
            raise RunError(f"--class must lie in 0..{run.num_classes - 1}, or be all")
        else:
            labels = torch.full((args.n,), args.label, dtype=torch.long)
    n = args.n if labels is None else len(labels)
    if args.guidance is not None and labels is None:
        raise RunError("--guidance needs --class: the class to guide the samples towards")
    if not 0 <= args.guidance_rescale <= 1:
        raise RunError(f"--guidance-rescale must lie in [0, 1], got {args.guidance_rescale}")
    if conditional and labels is None:
        print("class-conditional run sampled without --class: drawing from the unconditional model (no label)")
    want_traj = args.gif is not None
    out = run.sample(n, seed=args.seed, sampler=args.sampler, steps=args.steps, spacing=args.spacing,
                     sigma_min=args.sigma_min, sigma_max=args.sigma_max, eta=args.eta, churn=args.churn,
                     clip=args.dynamic_threshold or args.clip, labels=labels,
                     guidance=args.guidance, guidance_rescale=args.guidance_rescale, batch_size=args.batch_size,
                     return_trajectory=want_traj, progress=not args.quiet, precision=args.precision,
                     compile=args.compile)
    x = out.x
    save_samples(x, args.out, run.is_image, labels)
    print(f"{n} samples -> {args.out}")
    if args.grid is not None:
        if run.is_image and args.label == "all":  # one row per class, at most 16 of each
            per = min(args.n, 16)
            keep = (torch.arange(len(x)) % args.n) < per
            viz.save_image_grid(x[keep], args.grid, nrow=per)
        elif run.is_image:
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
    if want_traj:
        viz.reverse_gif(out.trajectory[:, :64], out.timesteps, args.gif, run.process)
        print(f"reverse process -> {args.gif}")
    return 0


def _read_samples(path: Path):
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            return f["arr_0"]
    except (OSError, KeyError, ValueError) as e:
        raise RunError(f"cannot read samples from {path} ({e}): pass an .npz with arr_0") from None


def _features(text):
    return tuple(f.strip() for f in text.split(",") if f.strip()) if text else None


def _check_sampling(args, cfg, process, device, **sample) -> None:
    """The run's sampler settings with the command line's overrides (and ``sample``'s fields),
    checked as a configuration against the run's chain before any work."""
    from .config import SampleConfig
    from .runs import sampling_options
    from .validate import check_sample

    options = sampling_options(cfg, args.sampler, args.steps, args.spacing, args.eta, args.churn, args.precision,
                               device, args.compile, args.sigma_min, args.sigma_max)
    check_sample(SampleConfig(**options, **sample), process.num_timesteps, process.sigma_range)


def cmd_evaluate(args) -> int:
    from .runs import evaluate
    from .train.distributed import resolve_device

    if args.run is None:
        return _evaluate_file(args)
    if args.data is not None or args.set:
        raise RunError("--data and --set are for --samples without a run; a run evaluates against its own data")
    if args.nll:
        return _evaluate_nll(args)
    if not args.metrics and not args.bpd:
        raise RunError("--bpd-only goes with --bpd: add --bpd, or leave out --bpd-only for the sample metrics")
    if args.bpd:
        _check_bpd_request(args)
    if args.metrics and args.samples is None and (args.run / "config.toml").is_file():  # drawn now: checked first
        from .runs import build_process

        cfg = load_config(args.run / "config.toml")
        _check_sampling(args, cfg, build_process(cfg), resolve_device(args.device))
    bpd = None
    if args.bpd:
        from .eval.likelihood import evaluate_bpd
        from .runs import load_run

        run = load_run(args.run, device=resolve_device(args.device), weights="raw" if args.raw else "ema",
                       checkpoint=args.checkpoint)
        bpd = evaluate_bpd(run, args.run, n=args.bpd_n, steps=args.bpd_steps, batch_size=args.bpd_batch_size,
                           progress=not args.quiet)
    if args.bpd and not args.metrics:
        result = {}
    else:
        samples = _read_samples(args.samples) if args.samples is not None else None
        result = evaluate(args.run, samples, n=args.n, seed=args.seed, sampler=args.sampler, steps=args.steps,
                          eta=args.eta, spacing=args.spacing, churn=args.churn, sigma_min=args.sigma_min,
                          sigma_max=args.sigma_max, weights="raw" if args.raw else "ema", checkpoint=args.checkpoint,
                          features=_features(args.features), reference_split=args.ref_split,
                          check_memorization=not args.no_memorization, out=args.json, samples_file=args.samples,
                          device=resolve_device(args.device), progress=not args.quiet, guidance=args.guidance,
                          precision=args.precision, compile=args.compile)
        where = args.json or args.run / "eval.json"
        print(f"{args.run}: {_n(result)} samples of {result['data']} (step {result['step']}) -> {where}")
        _print_eval(result)
    if bpd is not None:
        _print_bpd(bpd)
    return 0


def _evaluate_nll(args) -> int:
    """The probability-flow ODE's likelihood and the variational bound of a 2-D run, side by side."""
    from .eval.likelihood import evaluate_bpd
    from .eval.ode_likelihood import evaluate_nll
    from .runs import load_run
    from .train.distributed import resolve_device

    if args.bpd or args.samples is not None:
        raise RunError("--nll reports the bound beside the likelihood itself: leave out --bpd and --samples")
    if args.nll_n < 1 or args.nll_steps < 1:
        raise RunError(f"--nll-n and --nll-steps must be positive, got {args.nll_n} and {args.nll_steps}")
    run = load_run(args.run, device=resolve_device(args.device), weights="raw" if args.raw else "ema",
                   checkpoint=args.checkpoint)
    if run.is_image:
        raise RunError("--nll is the exact likelihood of 2-D runs: use --bpd for images (bits/dim)")
    nll = evaluate_nll(run, args.run, n=args.nll_n, steps=args.nll_steps)["nll"]
    bpd = evaluate_bpd(run, args.run, n=args.nll_n, batch_size=args.bpd_batch_size, progress=not args.quiet)
    print(f"{args.run}: {nll['n']} fresh {nll['data']} points (step {nll['checkpoint_step']}) -> "
          f"{args.run / 'nll.json'}, {args.run / 'bpd.json'}")
    print(f"  negative log-likelihood (probability-flow ODE, {nll['steps']} RK4 steps): "
          f"{nll['value']:.4f} ± {nll['std_error']:.4f} nats/dim")
    _print_bpd(bpd)
    return 0


def _check_bpd_request(args) -> None:
    """The bound's options, checked before any work (the bound may take hours)."""
    cfg = load_config(args.run / "config.toml") if (args.run / "config.toml").is_file() else None
    if cfg is None:
        raise RunError(f"{args.run} is not a run directory (no config.toml): pass the --out of a `ddpm train`")
    T = cfg.diffusion.T
    if args.bpd_steps is not None and not 1 <= args.bpd_steps <= T:
        raise RunError(f"--bpd-steps {args.bpd_steps} is invalid: the chain has T={T} steps; pass 1..{T}")
    if args.bpd_n is not None and args.bpd_n < 1:
        raise RunError(f"--bpd-n {args.bpd_n} is invalid: pass a positive number of test examples")
    if args.bpd_batch_size < 1:
        raise RunError(f"--bpd-batch-size {args.bpd_batch_size} is invalid: pass a positive batch size, e.g. 64")
    if not args.metrics and args.json is not None:
        raise RunError(f"--json names the sample metrics' file, which --bpd-only skips; the bound goes to "
                       f"{args.run / 'bpd.json'}: leave out --json")


def _evaluate_file(args) -> int:
    from .config import Config
    from .eval.image_metrics import default_features, evaluate_images
    from .runs import check_writable, write_json

    if args.samples is None or args.data is None:
        raise RunError("pass a run directory, or --samples FILE.npz with --data NAME")
    if args.bpd:
        raise RunError("--bpd needs a run directory (the model), not a sample file")
    overrides = dict(parse_override(s) for s in args.set or [])
    for key in overrides:
        if not key.startswith("data."):
            raise RunError(f"--set {key}: only data.* options apply to --samples evaluation")
    cfg = Config()
    cfg.data.name = args.data
    apply_overrides(cfg, overrides)
    data = cfg.data
    samples = _read_samples(args.samples)
    out = args.json or args.samples.with_suffix(".eval.json")
    check_writable(out)
    result = evaluate_images(samples, data, features=_features(args.features) or default_features(data),
                             reference_split=args.ref_split, seed=args.seed, check_memorization=not args.no_memorization,
                             protocol={"samples_file": str(args.samples)}, progress=not args.quiet)
    write_json(result, out)
    print(f"{args.samples}: {_n(result)} samples against {args.data} -> {out}")
    _print_eval(result)
    return 0


def _n(result: dict) -> int:
    return result.get("protocol", result).get("n")


def _print_eval(result: dict) -> None:
    """The metrics as tables: Inception (or 2-D) metrics, then the classifier's, apart."""
    proto = result.get("protocol")
    if proto:
        print("  protocol: " + ", ".join(f"{k}={v}" for k, v in proto.items()))
    _print_table(result, "metric")
    clf = result.get("classifier")
    if clf:
        print(f"  {clf['label']}")
        _print_table(clf, "classifier metric")
        hist = " ".join(str(c) for c in clf["class_histogram"])
        print(f"  class histogram of the samples: {hist}   (floor: {' '.join(map(str, clf['floor_class_histogram']))})")
        if "accuracy" in clf:
            per_class = " ".join("-" if a is None else f"{a:.2f}" for a in clf["accuracy"]["per_class"])
            print(f"  samples of the requested class, per class: {per_class}")
    for space in (result, clf or {}):
        per_class = space.get("fid_per_class")
        if per_class:
            values = " ".join(f"{c}:{m['value']:.1f}/{m['floor']:.1f}" for c, m in per_class.items())
            print(f"  FID per class (value/floor, {next(iter(per_class.values()))['features']}): {values}")
    if "color" in result:
        _print_color(result["color"])
    mem = result.get("memorization")
    if mem and "near_copy_share" in mem:
        share = mem["near_copy_share"]
        print(f"  near copies of training images: {share['value']:.1%} of samples (held-out real images: "
              f"{share['floor']:.0%} by construction); median nearest distance {mem['median_nn_distance']['value']:.4f}"
              f" (held-out {mem['median_nn_distance']['floor']:.4f})")


def _print_color(color: dict) -> None:
    """Per-channel mean and std of samples and data, their difference and the floor's (real images at this n)."""
    print(f"  {'colour (' + color['unit'] + ')':<34}" + "".join(f"{c:>10}" for c in color["channels"]))
    rows = (("samples", "samples", ""), ("data", "data", ""), ("samples - data", "difference", "+"),
            (f"{color['n']} real images - data (floor)", "floor_difference", "+"))
    for stat in ("mean", "std"):
        for i, (label, key, sign) in enumerate(rows):
            values = "".join(f"{v:>{sign}10.2f}" for v in color[key][stat])
            print(f"  {stat if i == 0 else '':<5} {label:<28}{values}")


def _print_table(section: dict, header: str) -> None:
    rows = [(k, m) for k, m in section.items() if isinstance(m, dict) and "value" in m and "floor" in m]
    if not rows:
        return
    print(f"  {header:<20} {'value':>12} {'data floor':>12} {'n':>6}")
    for name, m in rows:
        spread = f" ± {m['std']:.5f}" if "std" in m else ""
        print(f"  {name:<20} {m['value']:>12.5f} {m['floor']:>12.5f} {m.get('n', ''):>6}{spread}")


def _print_bpd(bpd: dict) -> None:
    b = bpd["bpd"]
    print(f"  negative log-likelihood bound: {b['value']:.4f} ± {b['std_error']:.4f} {b['unit']} "
          f"({b['n']} {b['split']} examples, {b['steps']} of T={b['T']} steps, {b['decoder']} decoder)")


def cmd_report(args) -> int:
    from .report import write_report

    path = write_report(args.run, args.out)
    print(f"report -> {path}")
    return 0


def cmd_export(args) -> int:
    from .convert.diffusers_pipeline import export_run

    path = export_run(args.run, args.out, raw=args.raw, checkpoint=args.checkpoint)
    weights = "raw" if args.raw else "EMA"
    print(f"{args.run} ({weights} weights) -> {path}: load it with diffusers.DDPMPipeline.from_pretrained({str(path)!r})")
    return 0


def cmd_import(args) -> int:
    from .convert.diffusers_pipeline import import_pipeline

    path = import_pipeline(args.folder, args.out, data=args.data)
    print(f"{args.folder} -> {path}: sample it with ddpm sample {path}")
    if args.data is None and not (args.folder / "ddpm_config.toml").is_file():
        print("no --data given: to evaluate the run, import again with --data NAME_OR_PATH (the model's "
              f"training data) or set data.name in {path / 'config.toml'}", file=sys.stderr)
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


def _class_arg(text: str):
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a class number or all") from None


def _sampler_arguments(p: argparse.ArgumentParser) -> None:
    from typing import get_args

    from .compilation import COMPILE_MODES
    from .precision import PRECISIONS
    from .samplers import Sampler, Spacing

    p.add_argument("--sampler", choices=get_args(Sampler), help="default: the run's")
    p.add_argument("--steps", type=int, help="sampling steps (default: the run's; Heun evaluates the network "
                                             "2 steps - 1 times)")
    p.add_argument("--spacing", choices=get_args(Spacing),
                   help="where the steps lie (default: the run's; karras for dpm++2m/dpm++3m/euler/heun, else linspace)")
    p.add_argument("--sigma-min", type=float, help="karras/logsnr grids: the least noise level before the last step "
                                                   "to 0 (default: the run's, else the chain's first step's)")
    p.add_argument("--sigma-max", type=float, help="karras/logsnr grids: the noise level of the first step (default: the "
                                                   "run's, else the chain's last step's)")
    p.add_argument("--eta", type=float, help="noise of DDIM and DPM-Solver++: 0 = deterministic (ODE), 1 = as much as the "
                                         "reverse SDE (default: the run's)")
    p.add_argument("--churn", type=float, help="EDM's S_churn for euler/heun, 0 = deterministic (default: the run's)")
    p.add_argument("--precision", choices=tuple(PRECISIONS),
                   help="the network's: fp32, autocast bf16/fp16, or auto = bf16 where the device has it natively "
                        "(default: the run's sample.precision)")
    p.add_argument("--compile", choices=COMPILE_MODES,
                   help="torch.compile the network: reduce-overhead replays CUDA graphs, one launch per call; auto "
                        "= the fastest that works on the device (default: the run's sample.compile)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpm", description="Denoising diffusion probabilistic models (Ho et al. 2020).")
    parser.add_argument("--version", action="version", version=f"ddpm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model into a run directory",
                       description="Train a noise-prediction network; the run directory gets config.toml, "
                                   "metrics.jsonl, model.safetensors, checkpoints/ and pictures/.")
    _add_config_options(p)
    p.add_argument("--out", type=Path, help="run directory (default: runs/DATA)")
    p.add_argument("--steps", type=int, help="optimizer steps (train.steps)")
    p.add_argument("--minutes", type=float, help="wall-clock budget in minutes, from the start to the last step (train.minutes)")
    p.add_argument("--conditional", action="store_true",
                   help="condition on the data's class labels, dropping 10%% of them for classifier-free guidance "
                        "(model.class_conditional=true, train.label_dropout)")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its newest checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Draw samples; sample i uses seed SEED+i, whatever the batch.")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `ddpm train`")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", type=Path, default=Path("samples.npz"), help="output .npz, arr_0 in data coordinates")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample")
    _sampler_arguments(p)
    p.add_argument("--clip", action=argparse.BooleanOptionalAction, default=None,
                   help="clip predicted x0 to [-1, 1] (default: on for images)")
    p.add_argument("--dynamic-threshold", type=float, metavar="P",
                   help="instead of clipping, Imagen's dynamic thresholding at quantile P of |x0| (e.g. 0.995)")
    p.add_argument("--class", "--label", dest="label", type=_class_arg,
                   help="class to draw, for class-conditional runs, or all (--n of each; --grid: a row per class); "
                        "without it: the unconditional model")
    p.add_argument("--guidance", type=float, metavar="W",
                   help="classifier-free guidance scale with --class (0 unconditional, 1 conditional, e.g. 2)")
    p.add_argument("--guidance-rescale", type=float, default=0.0, metavar="PHI",
                   help="rescale the guided prediction towards the conditional one's spread (Lin et al.; e.g. 0.7)")
    p.add_argument("--raw", action="store_true", help="the raw weights of the newest checkpoint instead of the EMA")
    p.add_argument("--checkpoint", type=int, metavar="STEP", help="sample the checkpoint of this step")
    p.add_argument("--batch-size", type=int, help="samples per network call")
    p.add_argument("--grid", type=Path, help="also write a picture (image grid or scatter over data)")
    p.add_argument("--png-dir", type=Path, help="also write one PNG per image into this folder")
    p.add_argument("--gif", type=Path, help="also write a GIF of the reverse process")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="measure a run's samples against the data",
                       description="Image runs: Inception FID, KID, precision/recall, density/coverage, the "
                                   "classifier FID/KID of labelled grayscale data, per-channel colour statistics "
                                   "and a memorisation check, each with its data-versus-data floor and the "
                                   "protocol; 2-D runs: sliced W2, MMD, exact W2 against fresh data. Writes "
                                   "RUN/eval.json (or --json).")
    p.add_argument("run", type=Path, nargs="?", metavar="RUN", help="run directory written by `ddpm train`")
    p.add_argument("--samples", type=Path, help=".npz of samples, arr_0 uint8 NHWC or float (N, D) (default: draw --n now)")
    p.add_argument("--data", help="with --samples and no RUN: the data set to compare with (name or path)")
    p.add_argument("--set", action="append", metavar="data.FIELD=VALUE", help="with --data: data options, e.g. data.image_size=32 or data.image_size=32,48 (height,width)")
    p.add_argument("--n", type=int, help=f"samples to draw (default: {1000} for images, the run's sample.n for 2-D)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample drawn (and of metric subsets)")
    _sampler_arguments(p)
    p.add_argument("--guidance", type=float, metavar="W",
                   help="class-conditional runs: classifier-free guidance scale of the samples (default 1: conditional)")
    p.add_argument("--raw", action="store_true", help="the raw weights of the newest checkpoint instead of the EMA")
    p.add_argument("--checkpoint", type=int, metavar="STEP", help="evaluate the checkpoint of this step")
    p.add_argument("--features", help="feature spaces, comma-separated: inception, classifier "
                                      "(default: both for labelled grayscale data, else inception)")
    p.add_argument("--ref-split", default="train", choices=["train", "test", "all"],
                   help="reference images (default: train, the images the model learned)")
    p.add_argument("--no-memorization", action="store_true", help="skip the nearest-training-image check")
    p.add_argument("--bpd", action="store_true", help="also the negative log-likelihood bound (bits/dim) on the test split")
    p.add_argument("--bpd-only", dest="metrics", action="store_false", help="with --bpd: skip the sample metrics")
    p.add_argument("--bpd-steps", type=int, help="evaluate the bound on a respaced chain of this many steps (faster; "
                                                 "the bound of the shorter chain, usually looser)")
    p.add_argument("--bpd-n", type=int, help="test examples for the bound (default: all)")
    p.add_argument("--bpd-batch-size", type=int, default=64, help="examples per batch of the bound")
    p.add_argument("--nll", action="store_true", help="2-D runs: the exact negative log-likelihood of the "
                                                      "probability-flow ODE beside the bound, on fresh test points")
    p.add_argument("--nll-n", type=int, default=1000, help="test points for --nll (default 1000)")
    p.add_argument("--nll-steps", type=int, default=200, help="RK4 steps of the ODE for --nll (default 200)")
    p.add_argument("--json", type=Path, help="write the sample metrics here (default: RUN/eval.json; the bound "
                                                 "always goes to RUN/bpd.json)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps: where the network "
                                                   "and the feature networks run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="write one self-contained HTML page of a run",
                       description="Configuration, loss curves, samples over training, forward and reverse "
                                   "processes, metrics with protocol and floors, bits/dim, memorisation pairs.")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `ddpm train`")
    p.add_argument("--out", type=Path, help="output HTML (default RUN/report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write a run as a diffusers DDPMPipeline folder",
                       description="Write RUN as a folder that diffusers.DDPMPipeline.from_pretrained loads: unet/ "
                                   "(UNet2DModel), scheduler/ (DDPMScheduler with the run's schedule, prediction "
                                   "and variance types, clipping), model_index.json; needs pip install "
                                   "'ddpm[diffusers]'.")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `ddpm train`")
    p.add_argument("out", type=Path, metavar="OUT", help="new folder to write")
    p.add_argument("--format", choices=["diffusers"], default="diffusers", help="output format (default diffusers)")
    p.add_argument("--raw", action="store_true", help="the raw weights of the newest checkpoint instead of the EMA")
    p.add_argument("--checkpoint", type=int, metavar="STEP", help="export the checkpoint of this step")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="make a run from a diffusers DDPMPipeline folder",
                       description="Turn a downloaded diffusers DDPMPipeline folder (model_index.json, unet/, "
                                   "scheduler/) into a run directory for ddpm sample, evaluate and report; the "
                                   "UNet2DModel becomes the native U-Net, the scheduler the diffusion section.")
    p.add_argument("folder", type=Path, metavar="DIR", help="the pipeline folder")
    p.add_argument("--out", type=Path, required=True, help="new run directory")
    p.add_argument("--data", help="the data the model was trained on (name or path), for ddpm evaluate")
    p.set_defaults(func=cmd_import)

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
        if args.debug:
            raise
        print(f"ddpm: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except OSError as e:  # the file system refused: read-only, full, permissions
        if args.debug:
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"ddpm: error: {e.strerror or e}{where}: check the path, its permissions and the free space",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
