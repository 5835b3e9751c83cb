"""Where the time of a training step and of a sampling step goes, and how close it runs to the cores' peak.

For an image preset's U-Net and batch (default ``mnist``: the small U-Net, batch 64) on the CPU,
at each precision (fp32 and bf16 autocast by default):

* training: ``torch.profiler`` over ``--steps`` :class:`ddpm.Trainer` steps (after warm-up), the
  time split into the trainer's named parts (data, forward and backward, optimizer with gradient
  clipping, EMA) and, inside forward and backward, into operator families (convolution,
  GroupNorm, attention, elementwise and the rest);
* sampling: the same split of the network evaluations of DDIM steps with the EMA model;
* throughput: images per second of each, timed without the profiler;
* arithmetic: the model's FLOPs per step (``torch.utils.flop_counter``; a multiply-add counts 2),
  the achieved GFLOP/s, and the ceiling of these cores measured by a large matrix product in the
  same precision (``--gemm``), since the clock of a virtual CPU is not known.

Writes JSON (``--out``) and prints a summary. The data are random pixels of the preset's shape.

    python benchmarks/cpu_profile.py --out benchmarks/results/cpu_profile_mnist.json
"""

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from flops import gemm_ceiling, model_flops  # noqa: E402
from machine import machine_info, now  # noqa: E402

from ddpm import Trainer  # noqa: E402
from ddpm.config import TrainConfig, make_config  # noqa: E402
from ddpm.data.base import Dataset  # noqa: E402
from ddpm.nets import build_model  # noqa: E402
from ddpm.precision import PRECISIONS, Autocast, native  # noqa: E402
from ddpm.runs import build_process  # noqa: E402

SHAPES = {"cifar10": (3, 32, 32), "mnist": (1, 28, 28), "digits": (1, 8, 8)}
PARTS = ("ddpm::data", "ddpm::forward_backward", "ddpm::optimizer", "ddpm::ema")
FAMILIES = {  # operator name fragments -> family (self time)
    "convolution": ("convolution",),
    "group_norm": ("group_norm",),
    "attention": ("scaled_dot_product", "_softmax", "bmm"),
    "linear": ("addmm", "aten::mm"),
    "layout_and_casts": ("copy_", "clone", "contiguous", "_to_copy"),
}


def family(name: str) -> str:
    for fam, fragments in FAMILIES.items():
        if any(f in name for f in fragments):
            return fam
    return "elementwise_and_other"


def split(prof) -> tuple[dict, dict]:
    """Milliseconds per trainer part (CPU total) and per operator family (self time, all ops)."""
    parts, families = defaultdict(float), defaultdict(float)
    for e in prof.key_averages():
        if e.key in PARTS:
            parts[e.key.split("::")[1]] += e.cpu_time_total / 1e3
        elif e.key.startswith("aten::") or e.key.startswith("mkldnn"):
            families[family(e.key)] += e.self_cpu_time_total / 1e3
    return dict(parts), dict(families)


def shares(ms: dict) -> dict:
    total = sum(ms.values()) or 1.0
    return {k: {"ms": round(v, 1), "share": round(v / total, 3)} for k, v in sorted(ms.items(), key=lambda kv: -kv[1])}


def train_case(preset: str, precision: str, batch: int, warmup: int, steps: int) -> dict:
    cfg = make_config(preset)
    shape = SHAPES[preset]
    data = Dataset(x=torch.randint(0, 256, (max(4 * batch, 512), *shape), dtype=torch.uint8), name="random")
    torch.manual_seed(0)
    model = build_model(cfg.model, shape)
    trainer = Trainer(build_process(cfg), model, data,
                      TrainConfig(steps=10**6, batch_size=batch, lr=cfg.train.lr, precision=precision,
                                  progress=False, log_every=10**9, device="cpu"))
    trainer.run(max_steps=warmup)
    start = time.perf_counter()
    trainer.run(max_steps=steps)
    seconds = (time.perf_counter() - start) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.run(max_steps=steps)
    parts, families = split(prof)
    flops = model_flops(model, shape, batch, backward=True)
    return {"seconds_per_step": round(seconds, 4), "img_per_s": round(batch / seconds, 1),
            "flops_per_step": flops, "gflop_per_s": round(flops / seconds / 1e9, 1),
            "parts": shares(parts), "forward_backward_operators": shares(families), "trainer": trainer}


def sample_case(trainer: Trainer, precision: str, batch: int, evaluations: int) -> dict:
    model = trainer.ema if precision == "fp32" else Autocast(trainer.ema, precision)
    shape = trainer.data.shape
    x = torch.randn(batch, *shape)
    t = torch.full((batch,), 500.0)
    with torch.inference_mode():
        model(x, t)
        start = time.perf_counter()
        for _ in range(evaluations):
            model(x, t)
        seconds = (time.perf_counter() - start) / evaluations
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(evaluations):
                model(x, t)
    _, families = split(prof)
    flops = model_flops(trainer.ema, shape, batch, backward=False)
    return {"seconds_per_evaluation": round(seconds, 4), "img_evals_per_s": round(batch / seconds, 1),
            "flops_per_evaluation": flops, "gflop_per_s": round(flops / seconds / 1e9, 1),
            "operators": shares(families)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="mnist", choices=sorted(SHAPES))
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--batch", type=int, default=0, help="training batch (default: the preset's)")
    p.add_argument("--sample-batch", type=int, default=256)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--evaluations", type=int, default=10)
    p.add_argument("--gemm", type=int, default=2048, help="side of the matrices of the peak measurement")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    batch = args.batch or make_config(args.preset).train.batch_size
    cpu = torch.device("cpu")
    results = []
    for precision in args.precisions:
        train = train_case(args.preset, precision, batch, args.warmup, args.steps)
        trainer = train.pop("trainer")
        sampling = sample_case(trainer, precision, args.sample_batch, args.evaluations)
        ceiling = gemm_ceiling(PRECISIONS[precision] or torch.float32, args.gemm) / 1e9
        train["share_of_gemm_ceiling"] = round(train["gflop_per_s"] / ceiling, 3)
        sampling["share_of_gemm_ceiling"] = round(sampling["gflop_per_s"] / ceiling, 3)
        results.append({"precision": precision, "native": precision == "fp32" or native(precision, cpu),
                        "gemm_ceiling_gflop_per_s": round(ceiling, 1), "training": train, "sampling": sampling})
        print(f"{precision}: train {train['img_per_s']} img/s ({train['gflop_per_s']} GFLOP/s), sample "
              f"{sampling['img_evals_per_s']} img-evals/s ({sampling['gflop_per_s']} GFLOP/s); "
              f"GEMM ceiling {ceiling:.0f} GFLOP/s", flush=True)
    base = results[0]["training"]["img_per_s"]
    report = {"benchmark": "cpu_profile", "preset": args.preset, "date": now(), "machine": machine_info(),
              "cpu_flags": {"amx_tile": torch.cpu._is_amx_tile_supported(),
                            "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
                            "capability": torch.backends.cpu.get_cpu_capability()},
              "settings": {"batch": batch, "sample_batch": args.sample_batch, "warmup": args.warmup,
                           "steps": args.steps, "evaluations": args.evaluations, "gemm": args.gemm},
              "training_speedup_over_first": {r["precision"]: round(r["training"]["img_per_s"] / base, 2)
                                              for r in results},
              "results": results}
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps(report["training_speedup_over_first"]))


if __name__ == "__main__":
    main()
