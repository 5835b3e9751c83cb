"""The forward process q(x_t | x_0): one jump in closed form equals t small steps, and four schedules.

Tutorials: the course lab "From Gaussians to MNIST" (sec. 6.1, its eq. 25-28: the forward process
on MNIST) and The Annotated Diffusion Model ("forward diffusion process" and its four beta schedules).

Equations (Ho et al. 2020, "DDPM"; alpha_t = 1 - beta_t, alpha-bar_t = alpha_1 ... alpha_t):

    eq. 2   q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
            the chain, one step at a time:  x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps
    eq. 4   q(x_t | x_0) = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I)
            one jump (``process.q_sample``):  x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps

Schedules (``ddpm.make_betas``, T = 1000): linear 1e-4..0.02 (DDPM sec. 4), cosine (Nichol & Dhariwal
2021, eq. 17), quadratic (sqrt(beta) linear) and sigmoid (the Annotated Diffusion's), same end points.

What it shows. For one swiss-roll point set and one MNIST digit x_0, N draws of x_t made each way at
several t have the same mean and variance, and both equal sqrt(alpha-bar_t) x_0 and 1 - alpha-bar_t.
The tolerance comes from the sample size: the mean of N draws has standard error sqrt((1 - ab) / N)
and their variance (1 - ab) sqrt(2 / (N - 1)). Every difference is reported in these units (a z-score);
they should look like standard normal draws (root mean square near 1), and none of the K comparisons may
pass z_tol, the level a standard normal passes with probability 0.001 / K (a Bonferroni bound).

Pictures: the swiss roll noised step by step (ddpm.viz.forward_strip), the measured signal coefficient and
noise variance against the theory, alpha-bar_t of the four schedules, and one digit noised by each schedule
at the same t with the same eps.

Run:  python examples/forward_process.py    (about 12 s on 2 CPU cores; writes examples/out/forward_process/)
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import norm  # noqa: E402

from ddpm import DataConfig, GaussianDiffusion, load_dataset, make_betas, viz  # noqa: E402

T = 1000
STEPS = (1, 10, 100, 500, 1000)  # the paper's t (1..T); the library indexes steps 0..T-1
DRAWS = {"swissroll": 20000, "mnist": 2000}  # N, draws of x_t per x_0
SCHEDULES = ("linear", "cosine", "quadratic", "sigmoid")
STRIP_STEPS = (0, 50, 100, 200, 300, 500, 700, 1000)


def draw_both_ways(process, x0, n, gen):
    """N draws of x_t for each t in STEPS: by eq. 4 (one jump) and by eq. 2 (t steps)."""
    xs = x0.expand(n, *x0.shape)
    closed = {}
    for t in STEPS:
        step = torch.full((n,), t - 1)
        closed[t] = process.q_sample(xs, step, torch.randn(xs.shape, generator=gen))
    chain, x = {}, xs.clone()
    for t in range(1, T + 1):
        beta = float(process.betas[t - 1])
        x = (1 - beta) ** 0.5 * x + beta**0.5 * torch.randn(x.shape, generator=gen)
        if t in STEPS:
            chain[t] = x.clone()
    return closed, chain


def compare(process, x0, n, gen):
    """Moments of both sets of draws against eq. 4 and each other, in z-scores; a row per t."""
    closed, chain = draw_both_ways(process, x0, n, gen)
    x0 = x0.double().flatten()
    rows, zs = [], []
    for t in STEPS:
        ab = float(process.alphas_cumprod[t - 1])
        se_mean, se_var = np.sqrt((1 - ab) / n), (1 - ab) * np.sqrt(2 / (n - 1))
        row = {"t": t, "alpha_bar": ab, "signal_theory": ab**0.5, "variance_theory": 1 - ab}
        moments = {}
        for name, draws in (("closed", closed[t]), ("chain", chain[t])):
            d = draws.double().reshape(n, -1)
            mean, var = d.mean(0), d.var(0)
            moments[name] = mean, var
            # the signal coefficient: mean = c x_0 fitted by least squares; c should be sqrt(alpha-bar)
            row[f"signal_{name}"] = float(mean @ x0 / (x0 @ x0))
            row[f"variance_{name}"] = float(var.mean())
            zs += [(mean - ab**0.5 * x0) / se_mean, (var - (1 - ab)) / se_var]
        zs += [(moments["chain"][0] - moments["closed"][0]) / (np.sqrt(2) * se_mean),
               (moments["chain"][1] - moments["closed"][1]) / (np.sqrt(2) * se_var)]
        row["max_abs_z"] = float(torch.cat(zs[-6:]).abs().max())
        rows.append(row)
    z = torch.cat(zs)
    return {"n_draws": n, "dims": int(x0.numel()), "comparisons": int(z.numel()),
            "z_tol": float(norm.isf(0.001 / (2 * z.numel()))), "max_abs_z": float(z.abs().max()),
            "rms_z": float(z.pow(2).mean().sqrt()), "steps": rows}


def plot_moments(results, path):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    ts = np.arange(1, T + 1)
    ab = np.asarray(results["swissroll"]["schedule_alpha_bar"])
    axes[0].plot(ts, np.sqrt(ab), c="k", lw=1, label="sqrt(alpha-bar_t)  (eq. 4)")
    axes[1].plot(ts, 1 - ab, c="k", lw=1, label="1 - alpha-bar_t  (eq. 4)")
    for (name, res), marker in zip(((k, results[k]) for k in DRAWS), ("o", "s")):
        for how, color in (("closed", "C0"), ("chain", "C1")):
            steps = res["steps"]
            label = f"{name}, {'one jump' if how == 'closed' else 'chain of t steps'}"
            axes[0].scatter([r["t"] for r in steps], [r[f"signal_{how}"] for r in steps], marker=marker,
                            facecolors="none", edgecolors=color, label=label)
            axes[1].scatter([r["t"] for r in steps], [r[f"variance_{how}"] for r in steps], marker=marker,
                            facecolors="none", edgecolors=color)
    axes[0].set_title("signal: c fitted to mean(x_t) = c x_0", fontsize=10)
    axes[1].set_title("noise: variance of x_t", fontsize=10)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_schedules(processes, digit, path_curves, path_strip, gen):
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, p in processes.items():
        ax.plot(np.arange(1, T + 1), p.alphas_cumprod, label=name)
    ax.set_xlabel("t")
    ax.set_ylabel("alpha-bar_t")
    ax.set_title(f"the four schedules, T = {T}", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path_curves, dpi=110)
    plt.close(fig)

    eps = torch.randn(digit.shape, generator=gen)  # the same noise for every schedule and t
    fig, axes = plt.subplots(len(processes), len(STRIP_STEPS), figsize=(1.2 * len(STRIP_STEPS), 1.35 * len(processes)))
    for row, (name, p) in zip(axes, processes.items()):
        for ax, t in zip(row, STRIP_STEPS):
            x = digit if t == 0 else p.q_sample(digit[None], torch.tensor([t - 1]), eps[None])[0]
            ax.imshow(x[0].clamp(-1, 1).numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if name == SCHEDULES[0]:
                ax.set_title(f"t = {t}", fontsize=8)
        row[0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path_strip, dpi=110)
    plt.close(fig)


def main(out_dir="examples/out/forward_process", seed=0) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    process = GaussianDiffusion(make_betas("linear", T=T))  # DDPM's 1e-4..0.02

    roll = load_dataset(DataConfig(name="swissroll", n=2000), seed=seed)
    mnist = load_dataset(DataConfig(name="mnist"))
    digit = mnist.batch(torch.tensor([int(torch.randint(len(mnist), (1,), generator=gen))]))[0][0]  # [-1, 1]
    starts = {"swissroll": roll.x[:4], "mnist": digit}  # four 2-D points, and 28x28 pixels
    results = {name: compare(process, x0, DRAWS[name], gen) for name, x0 in starts.items()}
    results["swissroll"]["schedule_alpha_bar"] = process.alphas_cumprod.tolist()  # for the picture only

    viz.forward_strip(process, roll.x, out / "forward_swissroll.png", seed=seed)
    plot_moments(results, out / "moments.png")
    del results["swissroll"]["schedule_alpha_bar"]

    processes = {name: GaussianDiffusion(make_betas(name, T=T)) for name in SCHEDULES}
    plot_schedules(processes, digit, out / "schedules_alpha_bar.png", out / "schedules_digit.png", gen)
    schedules = {name: {"alpha_bar_T": float(p.alphas_cumprod[-1]),
                        "alpha_bar_at": {str(t): float(p.alphas_cumprod[t - 1]) for t in STRIP_STEPS[1:]},
                        "half_signal_t": int(np.argmax(p.alphas_cumprod < 0.5)) + 1}
                 for name, p in processes.items()}

    numbers = {"T": T, "steps": list(STEPS), "moments": results, "schedules": schedules}
    (out / "forward_process.json").write_text(json.dumps(numbers, indent=2))
    return numbers


def report(numbers: dict) -> None:
    for name, res in numbers["moments"].items():
        print(f"\n{name}: {res['dims']} coordinates, N = {res['n_draws']} draws of x_t per t")
        print("    t  alpha-bar | signal: theory  one jump   chain | variance: theory  one jump   chain | max|z|")
        for r in res["steps"]:
            print(f"{r['t']:5d}  {r['alpha_bar']:9.5f} | {r['signal_theory']:14.5f} {r['signal_closed']:9.5f} "
                  f"{r['signal_chain']:7.5f} | {r['variance_theory']:16.5f} {r['variance_closed']:9.5f} "
                  f"{r['variance_chain']:7.5f} | {r['max_abs_z']:5.2f}")
        print(f"  {res['comparisons']} comparisons in standard errors: rms {res['rms_z']:.3f} (expect ~1), "
              f"max {res['max_abs_z']:.2f} < z_tol {res['z_tol']:.2f}")
    print("\nschedule   alpha-bar_T  t where alpha-bar < 0.5")
    for name, s in numbers["schedules"].items():
        print(f"{name:10s} {s['alpha_bar_T']:11.2e}  {s['half_signal_t']:5d}")


if __name__ == "__main__":
    report(main(*sys.argv[1:2]))
