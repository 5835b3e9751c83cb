"""Langevin Markov chain Monte Carlo: sampling a density from its score, exact or learned by a diffusion model.

Tutorial: "Diffusion models from a physics view" (its Langevin aside: if V(x) = -log q(x), the Langevin
equation has q as its stationary distribution, so a chain that knows only the score grad log q samples q,
no normalising constant needed). Its 1-D demonstration is here in 2-D, on ddpm's '8gaussians' (eight
Gaussians of std 0.05 on the unit circle), where the truth is known exactly.

Equations:
  unadjusted Langevin (Welling & Teh 2011; Song & Ermon 2019, eq. 2), step size e:
        x <- x + (e/2) grad_x log p(x) + sqrt(e) z,      z ~ N(0, I)
  the score of the noised data q_t (DDPM eq. 4 and sec. 3.2; Tweedie's formula):
        grad_x log q_t(x) = -E[eps | x_t = x] / sqrt(1 - alpha-bar_t)  ~  -eps_theta(x, t) / sqrt(1 - alpha-bar_t)
  for a mixture sum_k w_k N(mu_k, s^2 I) it is exact: q_t = sum_k w_k N(sqrt(ab) mu_k, (ab s^2 + 1 - ab) I);
  annealed Langevin (Song & Ermon 2019, Algorithm 1): run the chain on q_t for t from large to small,
        with step e_t = e (1 - alpha-bar_t) / (1 - alpha-bar_1), so that early levels, where the
        modes overlap, carry mass between them.

The same chain runs on two scores: the exact one (``EightGaussiansDenoiser``, written as a noise
predictor so that it plugs into ``process.model_predictions`` like a network), and eps_theta of a small
MLP trained for about 20 s by ddpm's Trainer with the '8gaussians' preset. Every sample
set is compared with fresh exact draws of the data (``ddpm.eval.toy_metrics.evaluate_points``: each
metric with its data-versus-data floor; ratio = value / floor, ~1 is as good as data), and by the
share of points at each of the eight modes (1/8 each in the data).

What it shows:
  * exact score, plain Langevin at t = 1 from N(0, I): at the floor (the start is symmetric, so each
    mode gets its share);
  * exact score, plain Langevin from uniform points on [-2, 2]^2: every point stays at the mode whose
    basin it starts in, so the modes on the diagonals, whose basins hold more of the square, get
    ~0.146 of the points and the others ~0.104: Langevin cannot move mass between separated modes
    (Song & Ermon 2019, sec. 3.2.2); MMD sees it, the sliced Wasserstein distance hardly;
  * exact score, annealed Langevin from the same square: the shares are right again;
  * the learned score, plain: close to the exact one (its errors are largest at small t, where
    eps_theta is divided by sqrt(1 - alpha-bar_1) = 0.02); annealed: usually somewhat further from the
    data than the plain chain (a chain that equilibrates at every level can turn small errors of the
    learned score at the levels where the modes separate into shifts of mass between modes); ddpm's own ancestral
    sampler (DDPM Algorithm 2), which only passes through the levels, with the same network for reference.

Run:  python examples/langevin.py    (about 50 s on 2 CPU cores; writes examples/out/langevin/)
"""

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ddpm import GaussianDiffusion, Trainer, build_model, load_dataset, make_betas, make_config, sample  # noqa: E402
from ddpm.data import sample_toy2d  # noqa: E402
from ddpm.eval.toy_metrics import evaluate_points  # noqa: E402

N = 2000  # points per sample set
STEP = 2e-4  # Langevin step e at t = 1: (e/2) / (variance of a mode of q_1 = 0.003) = 3 % per step
PLAIN_STEPS = 300
LEVELS, STEPS_PER_LEVEL = 10, 50
METRICS = ["sliced_wasserstein", "mmd_rbf"]

ANGLES = torch.arange(8, dtype=torch.float64) * math.pi / 4
MODES = torch.stack([ANGLES.cos(), ANGLES.sin()], dim=1)  # ddpm's '8gaussians': radius 1 ...
MODE_STD = 0.05  # ... std 0.05, equal weights


class EightGaussiansDenoiser:
    """The exact eps*(x_t, t) = -sqrt(1 - ab_t) grad log q_t(x_t) of the '8gaussians' data, called like a network."""

    dtype = torch.float64

    def __init__(self, process):
        self.alpha_bar = torch.from_numpy(np.array(process.alphas_cumprod))

    def __call__(self, x, t):
        ab = self.alpha_bar[t.long()][:, None, None]
        var = ab * MODE_STD**2 + 1 - ab  # variance of each mode of q_t
        diff = ab.sqrt() * MODES[None] - x[:, None, :]  # (B, 8, 2): towards each mode's centre
        resp = torch.softmax(-(diff**2).sum(-1, keepdim=True) / (2 * var), dim=1)  # which mode x_t came from
        score = (resp * diff / var).sum(1)
        return -(1 - ab[:, 0]).sqrt() * score


def langevin(process, model, x, t, step, n_steps, gen):
    """Unadjusted Langevin on q_t (t: step index 0..T-1) with score -eps(x, t) / sqrt(1 - ab_t)."""
    steps = torch.full((len(x),), t)
    sigma = float(process.sqrt_one_minus_alphas_cumprod[t])
    for _ in range(n_steps):
        eps, _ = process.model_predictions(model, x, steps)
        x = x + step / 2 * (-eps / sigma) + math.sqrt(step) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x


def annealed_langevin(process, model, x, gen):
    """Langevin on q_t at LEVELS steps spaced geometrically from T down to 1, step e_t = e (1 - ab_t) / (1 - ab_1)."""
    levels = np.unique(np.geomspace(1, process.num_timesteps, LEVELS).round().astype(int))[::-1] - 1
    for t in levels:
        step = STEP * (1 - process.alphas_cumprod[t]) / (1 - process.alphas_cumprod[0])
        x = langevin(process, model, x, int(t), float(step), STEPS_PER_LEVEL, gen)
    return x


def mode_shares(x):
    """Share of the points nearest to each of the eight modes; and mean share of the diagonal minus the axis modes."""
    nearest = torch.cdist(x.double(), MODES).argmin(1)
    shares = torch.bincount(nearest, minlength=8).double() / len(x)
    return shares.tolist(), float(shares[1::2].mean() - shares[0::2].mean())


def plot(sets, data, path):
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.8))
    for ax, (name, x) in zip(axes.flat, sets.items()):
        ax.scatter(data[:, 0], data[:, 1], s=1, c="0.75")
        ax.scatter(x[:, 0], x[:, 1], s=1, c="C0", alpha=0.5)
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-1.6, 1.6)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Langevin samples (blue) over the data (grey)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(out_dir="examples/out/langevin", seed=0) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)

    cfg = make_config("8gaussians", overrides={"seed": seed, "train.progress": False})  # 6,000 steps, ~20 s
    process = GaussianDiffusion(make_betas(cfg.diffusion.schedule, cfg.diffusion.T))  # T = 200, reaches noise
    data = load_dataset(cfg.data, seed=seed)
    torch.manual_seed(seed)  # the network's initial weights (as ddpm.train seeds them)
    trainer = Trainer(process, build_model(cfg.model, data.shape), data, cfg.train, seed=seed).run()
    learned, exact = trainer.ema.eval(), EightGaussiansDenoiser(process)

    normal = torch.randn(N, 2, generator=gen, dtype=torch.float64)  # where DDPM's sampler starts too
    square = torch.rand(N, 2, generator=gen, dtype=torch.float64) * 4 - 2  # uniform on [-2, 2]^2
    sets = {
        "exact score, plain, from N(0, I)": langevin(process, exact, normal, 0, STEP, PLAIN_STEPS, gen),
        "exact score, plain, from the square": langevin(process, exact, square, 0, STEP, PLAIN_STEPS, gen),
        "exact score, annealed, from the square": annealed_langevin(process, exact, square, gen),
        "learned score, plain, from N(0, I)": langevin(process, learned, normal, 0, STEP, PLAIN_STEPS, gen),
        "learned score, annealed, from the square": annealed_langevin(process, learned, square, gen),
        "learned eps, DDPM ancestral sampler": sample(process, learned, (2,), seeds=range(N), batch_size=N).x.double(),
    }
    plot(sets, sample_toy2d("8gaussians", N, seed + 1), out / "samples.png")

    rows = {}
    for name, x in sets.items():
        metrics = evaluate_points(x.numpy(), "8gaussians", metrics=METRICS)
        shares, diagonal_excess = mode_shares(x)
        rows[name] = {m: metrics[m] for m in METRICS} | {"mode_shares": shares, "diagonal_minus_axis": diagonal_excess}
    numbers = {"n": N, "T": process.num_timesteps, "train_steps": trainer.step, "step_size": STEP,
               "plain_steps": PLAIN_STEPS, "levels": LEVELS, "steps_per_level": STEPS_PER_LEVEL,
               "final_loss": trainer.history[-1]["loss"], "sets": rows}
    (out / "langevin.json").write_text(json.dumps(numbers, indent=2))
    return numbers


def report(n: dict) -> None:
    print(f"8gaussians, {n['n']} points per set; MLP trained {n['train_steps']} steps (final loss {n['final_loss']:.3f})")
    print(f"{'':42s} {'sliced W2 (ratio)':>18s} {'MMD (ratio)':>18s}   diagonal - axis mode share")
    for name, r in n["sets"].items():
        sw, mmd = r["sliced_wasserstein"], r["mmd_rbf"]
        print(f"{name:42s} {sw['value']:9.4f} ({sw['ratio']:4.2f}) {mmd['value']:10.5f} ({mmd['ratio']:5.2f})   "
              f"{r['diagonal_minus_axis']:+.3f}")
    floor = next(iter(n["sets"].values()))
    print(f"floors (data vs data): sliced W2 {floor['sliced_wasserstein']['floor']:.4f}, "
          f"MMD {floor['mmd_rbf']['floor']:.5f}; a uniform start's basins predict a share difference of +0.042")


if __name__ == "__main__":
    report(main(*sys.argv[1:2]))
