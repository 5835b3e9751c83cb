"""A generative normal distribution model: fit a 2-D Gaussian by minimising the negative log-likelihood.

Tutorial: the course lab "From Gaussians to MNIST", sec. 4-5 and Task 2 ("generative normal distribution
model"): draw samples x_1..x_N of an unknown q(x), pick a family p(x; w) and minimise the empirical risk

    lab eq. 21   w* = argmin_w  -(1/N) sum_n log p(x_n; w)     (the KL divergence to q, up to a constant)

with SGD in torch, then draw new samples from p(x; w*). Two families:

  * white:  p(x; mu) = N(x; mu, I)  (lab eq. 22): the loss is (1/2N) sum_n |x_n - mu|^2 + const
    (lab eq. 23, whose "argmin of minus" is a slip: the sign belongs to the log-likelihood);
  * full:   p(x; mu, C) = N(x; mu, C) with C = L L^T, L lower-triangular with a positive diagonal:
    -log p = (1/2) (x - mu)^T C^-1 (x - mu) + (1/2) log det C + log 2 pi
    (the lab's eq. 3 prints C where C^-1 belongs).

Both have a closed-form minimiser, the maximum-likelihood estimate: mu* = the sample mean, and
C* = (1/N) sum_n (x_n - mu*)(x_n - mu*)^T. SGD finds them to machine precision. The data here are
N(mu = [1, 2], C) with a correlated C, so the white model also shows what a family that is too small
does: it still gets the mean right, but its samples miss the shape of the data.

Run:  python examples/normal_model.py    (a few seconds; writes examples/out/normal_model/)
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
from torch.distributions import MultivariateNormal  # noqa: E402

from ddpm import DataConfig, load_dataset  # noqa: E402

MU_TRUE = [1.0, 2.0]  # the lab's mean
COV_TRUE = [[1.0, 0.8], [0.8, 1.0]]
N = 1000  # the lab's m = 10^3 samples
LR, STEPS = 0.1, 1500  # plain SGD on the whole set each step, as in the lab


def cholesky_factor(a):
    """L from an unconstrained 2x2 matrix: its lower triangle, with exp() on the diagonal so C = L L^T > 0."""
    return torch.tril(a, -1) + torch.diag_embed(a.diagonal().exp())


def fit(x, learn_cov: bool, gen):
    """Minimise the mean negative log-likelihood over mu (and L) with SGD; returns (mu, C, losses)."""
    mu = torch.randn(2, generator=gen, dtype=x.dtype).requires_grad_()  # a random start, as in the lab
    a = torch.zeros(2, 2, dtype=x.dtype, requires_grad=learn_cov)  # L = I at the start (and for ever if white)
    opt = torch.optim.SGD([mu, a] if learn_cov else [mu], lr=LR)
    losses = []
    for _ in range(STEPS):
        loss = -MultivariateNormal(mu, scale_tril=cholesky_factor(a)).log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    scale_tril = cholesky_factor(a.detach())
    return mu.detach(), scale_tril @ scale_tril.T, losses


def mean_nll(x, mu, cov) -> float:
    return float(-MultivariateNormal(mu, cov).log_prob(x).mean())


def plot(x, models, path_samples, path_loss, gen):
    grid = np.mgrid[-2.5:4.5:0.05, -1.5:5.5:0.05]
    pos = torch.as_tensor(np.dstack(grid))
    pdf = MultivariateNormal(torch.tensor(MU_TRUE, dtype=torch.float64), torch.tensor(COV_TRUE)).log_prob(pos).exp()
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4))
    for ax, (name, m) in zip(axes, models.items()):
        # x = mu + L z with z ~ N(0, I): a draw of N(mu, L L^T)
        samples = m["mu"] + torch.randn(N, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(m["cov"]).T
        ax.contour(grid[0], grid[1], pdf.numpy(), levels=5, cmap="Oranges")
        ax.scatter(x[:, 0], x[:, 1], s=3, c="0.7", label="data")
        ax.scatter(samples[:, 0], samples[:, 1], s=3, c="C0", alpha=0.5, label="samples of the model")
        ax.scatter(*MU_TRUE, marker="x", c="k", s=60, label="true mean")
        ax.scatter(*m["mu"].numpy(), marker="+", c="r", s=80, label="learned mean")
        ax.set_aspect("equal")
        ax.set_title(f"{name}: N(mu, {'I' if name == 'white' else 'C'}) learned by SGD", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path_samples, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for i, (name, m) in enumerate(models.items()):
        ax.plot(np.arange(1, len(m["losses"]) + 1), m["losses"], c=f"C{i}", label=f"{name}: mean -log p(x_n)")
        ax.axhline(m["nll_mle"], c=f"C{i}", ls="--", lw=0.8, label=f"{name}: at the closed-form MLE")
    ax.set_xscale("log")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("negative log-likelihood")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path_loss, dpi=110)
    plt.close(fig)


def main(out_dir="examples/out/normal_model", seed=0) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    data = load_dataset(DataConfig(name="gaussian", n=N, mean=MU_TRUE, cov=COV_TRUE), seed=seed)
    x = data.x.double()

    sample_mean = x.mean(0)
    sample_cov = (x - sample_mean).T @ (x - sample_mean) / N  # the MLE divides by N, not N - 1
    mle = {"white": (sample_mean, torch.eye(2, dtype=torch.float64)), "full": (sample_mean, sample_cov)}
    models, numbers = {}, {"N": N, "mu_true": MU_TRUE, "cov_true": COV_TRUE, "sample_mean": sample_mean.tolist(),
                           "sample_cov": sample_cov.tolist(), "lr": LR, "steps": STEPS,
                           # the sample mean misses the true one by about this much (per coordinate)
                           "standard_error_of_mean": np.sqrt(np.diag(COV_TRUE) / N).tolist(),
                           "sample_mean_error": (sample_mean - torch.tensor(MU_TRUE)).abs().max().item()}
    for name in ("white", "full"):
        mu, cov, losses = fit(x, name == "full", gen)
        models[name] = {"mu": mu, "cov": cov, "losses": losses, "nll_mle": mean_nll(x, *mle[name])}
        numbers[name] = {
            "learned_mean": mu.tolist(), "learned_cov": cov.tolist(),
            "mean_minus_sample_mean": (mu - sample_mean).abs().max().item(),
            "mean_minus_true_mean": (mu - torch.tensor(MU_TRUE, dtype=torch.float64)).abs().max().item(),
            "cov_minus_sample_cov": (cov - mle[name][1]).abs().max().item(),
            "loss_first": losses[0], "loss_last": losses[-1], "loss_at_mle": models[name]["nll_mle"],
        }
    plot(x.numpy(), models, out / "samples.png", out / "loss.png", gen)
    (out / "normal_model.json").write_text(json.dumps(numbers, indent=2))
    return numbers


def report(n: dict) -> None:
    print(f"data: N = {n['N']} draws of N(mu = {n['mu_true']}, C = {n['cov_true']})")
    print(f"sample mean {np.round(n['sample_mean'], 4).tolist()}: off the true mean by {n['sample_mean_error']:.4f} "
          f"(standard error {n['standard_error_of_mean'][0]:.4f})")
    for name in ("white", "full"):
        m = n[name]
        print(f"\n{name} model, {n['steps']} SGD steps of lr {n['lr']}:")
        print(f"  learned mean {np.round(m['learned_mean'], 4).tolist()}   |learned - sample mean| = "
              f"{m['mean_minus_sample_mean']:.1e}   |learned - true mean| = {m['mean_minus_true_mean']:.4f}")
        print(f"  learned cov  {np.round(m['learned_cov'], 4).tolist()}   |learned - MLE cov| = "
              f"{m['cov_minus_sample_cov']:.1e}")
        print(f"  loss {m['loss_first']:.4f} -> {m['loss_last']:.6f}   (at the closed-form MLE: {m['loss_at_mle']:.6f}; "
              f"log 2 pi = {math.log(2 * math.pi):.4f})")


if __name__ == "__main__":
    report(main(*sys.argv[1:2]))
