"""The swiss roll with the from-scratch tutorial's settings, next to ddpm's swissroll preset.

Tutorial: "DiffusionScratch" (a DDPM on the 2-D swiss roll, written from scratch): T = 50 steps, betas
rising linearly from 1e-4 to 0.02, a small ReLU MLP (4 hidden layers), Adam, batch 128, sampling with
sigma_t^2 = beta_t. Here the same settings run through ddpm: the network is ddpm's MLP of width 128 with
two residual blocks (four hidden 128-wide layers; SiLU, and a sinusoidal embedding of t where the
tutorial's code fed the raw integer t), Adam at its default lr 1e-3, constant, no EMA, no gradient
clipping. The tutorial trained 30 epochs of 100,000 points (~23,000 steps); both runs here get 4,000.

Equations (Ho et al. 2020, "DDPM"): the forward process eq. 4, q(x_T | x_0) = N(sqrt(ab_T) x_0,
(1 - ab_T) I) with ab_T = prod_t (1 - beta_t); the loss L_simple (eq. 14); sampling (Algorithm 2)
starts from x_T ~ p(x_T) = N(0, I), which is only right when q(x_T) is close to N(0, I): the prior
term L_T = KL(q(x_T | x_0) || N(0, I)) of the bound (eq. 5) measures how far it is.

The lesson: with T = 50 and the betas of T = 1000 left unscaled, ab_T = exp(sum log(1 - beta_t)) ~
exp(-50 x 0.01) = 0.60: x_T keeps sqrt(0.60) = 0.78 of the signal (``make_betas`` warns), L_T is far
from 0, and sampling starts from N(0, I), which is not where the forward chain ended. The network never
saw such x_T and the samples come out off the roll. Started instead from true x_T ~ q(x_T) (which needs
the data, so it is a diagnosis, not a sampler) the same network comes 1.5 to 2.5 times closer to the data;
ddpm's preset (T = 200, betas scaled by 1000/T to 5e-4..0.1, as improved-diffusion does), whose chain ends
at ab_T ~ 3e-5 so that its sampler may start from N(0, I), does at least as well.
Metrics: ``ddpm.eval.toy_metrics.evaluate_points`` against fresh swiss-roll draws, each with its
data-versus-data floor (ratio = value / floor; ~1 is as good as data). Training losses of the two
schedules do not compare: with ab_t near 1 at most steps, the tutorial's eps is harder to predict.

Run:  python examples/swissroll_tutorial.py    (about 45 s on 2 CPU cores; writes examples/out/swissroll_tutorial/)
"""

import json
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ddpm import (MLP, DataConfig, GaussianDiffusion, Trainer, TrainConfig, build_model, load_dataset,  # noqa: E402
                  make_betas, make_config, sample)
from ddpm.data import sample_toy2d  # noqa: E402
from ddpm.eval.toy_metrics import evaluate_points  # noqa: E402

STEPS = 4000  # training steps of both runs
N = 2000  # samples per set


def tutorial_run(data, seed):
    """The tutorial's settings: T = 50, linear 1e-4..0.02 unscaled, sigma_t^2 = beta_t, MLP 128, Adam, batch 128."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        betas = make_betas("linear", T=50, beta_start=1e-4, beta_end=0.02)
    process = GaussianDiffusion(betas, variance="fixed_large")
    cfg = TrainConfig(steps=STEPS, batch_size=128, lr=1e-3, optimizer="adam", decay="constant", warmup=0,
                      grad_clip=None, progress=False)
    torch.manual_seed(seed)  # the network's initial weights (as ddpm.train seeds them)
    trainer = Trainer(process, MLP(dim=2, width=128, depth=2), data, cfg, seed=seed).run()
    return process, trainer, trainer.model.eval(), [str(w.message) for w in caught]  # no EMA in the tutorial


def preset_run(data, seed):
    """ddpm's swissroll preset (T = 200, betas scaled to 5e-4..0.1, MLP 128 x 3, AdamW, EMA), STEPS steps."""
    cfg = make_config("swissroll", overrides={"seed": seed, "train.steps": STEPS, "train.progress": False})
    process = GaussianDiffusion(make_betas(cfg.diffusion.schedule, cfg.diffusion.T))
    torch.manual_seed(seed)
    trainer = Trainer(process, build_model(cfg.model, data.shape), data, cfg.train, seed=seed).run()
    return process, trainer, trainer.ema, []


def end_of_chain(process, x0, gen):
    """x_T ~ q(x_T | x_0) (DDPM eq. 4): where the forward chain really ends."""
    t = torch.full((len(x0),), process.num_timesteps - 1)
    return process.q_sample(x0, t, torch.randn(x0.shape, generator=gen))


def plot(runs, samples, data, gen, out):
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for name, (process, *_) in runs.items():
        T = process.num_timesteps
        axes[0].plot(np.arange(1, T + 1) / T, process.alphas_cumprod, label=f"{name} (T = {T})")
    axes[0].axhline(0.6, c="0.6", ls=":", lw=1)
    axes[0].set_xlabel("t / T")
    axes[0].set_title("alpha-bar_t", fontsize=10)
    axes[0].legend(fontsize=8)
    normal = torch.randn(N, 2, generator=gen)
    for ax, (name, (process, *_)) in zip(axes[1:], runs.items()):
        xT = end_of_chain(process, data[:N], gen)
        ax.scatter(normal[:, 0], normal[:, 1], s=1, c="C1", alpha=0.4, label="N(0, I): where sampling starts")
        ax.scatter(xT[:, 0], xT[:, 1], s=1, c="C0", alpha=0.4, label="q(x_T): where the chain ends")
        ax.set_title(f"{name}: alpha-bar_T = {process.alphas_cumprod[-1]:.2g}", fontsize=10)
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, markerscale=5, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "start_vs_end.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(samples), figsize=(4 * len(samples), 4))
    for ax, (name, x) in zip(axes, samples.items()):
        ax.scatter(data[:, 0], data[:, 1], s=1, c="0.75")
        ax.scatter(x[:, 0], x[:, 1], s=1, c="C0", alpha=0.5)
        ax.set_xlim(-1.6, 1.8)
        ax.set_ylim(-1.6, 1.8)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
    fig.suptitle("samples (blue) over the data (grey)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "samples.png", dpi=110)
    plt.close(fig)


def main(out_dir="examples/out/swissroll_tutorial", seed=0) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    data = load_dataset(DataConfig(name="swissroll"), seed=seed)
    runs = {"tutorial": tutorial_run(data, seed), "preset": preset_run(data, seed)}

    tutorial, preset = runs["tutorial"], runs["preset"]
    held_out = torch.from_numpy(sample_toy2d("swissroll", N, seed + 1))
    samples = {
        "tutorial, from N(0, I)": sample(tutorial[0], tutorial[2], (2,), seeds=range(N), batch_size=N).x,
        "tutorial, from q(x_T)": sample(tutorial[0], tutorial[2], (2,), seeds=range(N), batch_size=N,
                                        x_T=end_of_chain(tutorial[0], held_out, gen)).x,
        "preset, from N(0, I)": sample(preset[0], preset[2], (2,), seeds=range(N), batch_size=N).x,
    }
    plot(runs, samples, data.x[:N], gen, out)

    numbers = {"train_steps": STEPS, "n": N, "settings": {}, "samples": {}}
    for name, (process, trainer, _, caught) in runs.items():
        numbers["settings"][name] = {
            "T": process.num_timesteps, "beta_1": float(process.betas[0]), "beta_T": float(process.betas[-1]),
            "alpha_bar_T": float(process.alphas_cumprod[-1]), "signal_kept": float(np.sqrt(process.alphas_cumprod[-1])),
            "prior_kl_bits_per_dim": float(process.prior_bpd(data.x.double()).mean()),  # L_T of DDPM eq. 5
            "batch_size": trainer.cfg.batch_size, "final_loss": trainer.history[-1]["loss"], "warnings": caught,
        }
    for name, x in samples.items():
        numbers["samples"][name] = {k: v for k, v in evaluate_points(x.numpy(), "swissroll").items() if k != "n"}
    (out / "swissroll_tutorial.json").write_text(json.dumps(numbers, indent=2))
    return numbers


def report(n: dict) -> None:
    print(f"swiss roll, {n['train_steps']} training steps each, {n['n']} samples per set\n")
    for name, s in n["settings"].items():
        print(f"{name:9s} T = {s['T']:3d}, betas {s['beta_1']:.0e}..{s['beta_T']:.2g}: alpha-bar_T = {s['alpha_bar_T']:.3g} "
              f"(x_T keeps {s['signal_kept']:.2f} of x_0), L_T = {s['prior_kl_bits_per_dim']:.3g} bits/dim, "
              f"final loss {s['final_loss']:.3f}")
        for w in s["warnings"]:
            print(f"          ddpm warned: {w}")
    print(f"\n{'ratio to the data-vs-data floor':32s} {'sliced W2':>10s} {'MMD':>8s} {'exact W2':>9s}")
    for name, m in n["samples"].items():
        print(f"{name:32s} {m['sliced_wasserstein']['ratio']:10.2f} {m['mmd_rbf']['ratio']:8.2f} "
              f"{m['wasserstein2']['ratio']:9.2f}")


if __name__ == "__main__":
    report(main(*sys.argv[1:2]))
