"""The reverse-process variance: sigma_t^2 = beta_t or beta-tilde_t, and DDIM, on one trained model.

Tutorial: the blog post on the DDPM objective (ddpm-theory-blog in the reading list). Its
lesson: Ho et al. keep the reverse variances fixed, Sigma_theta(x_t, t) = sigma_t^2 I, with

    sigma_t^2 = beta_t             ("fixed_large": optimal for x_0 ~ N(0, I))
    sigma_t^2 = beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) beta_t
                                   ("fixed_small": optimal for x_0 one point; the posterior's, eq. 7)

and "both had similar results" (Ho et al. 2020 sec. 3.2). The network only predicts eps, so
the variance is a choice made at sampling time: here ONE network (trained on the swiss roll
with L_simple, eq. 14) sits inside two ``GaussianDiffusion`` objects that differ only in it,
and each samples by ancestral sampling (Algorithm 2)

    x_{t-1} = (x_t - beta_t / sqrt(1 - alpha-bar_t) eps_theta(x_t, t)) / sqrt(alpha_t) + sigma_t z    (eq. 11)

over all T = 200 steps and over 20 of them (respaced: betas re-derived so that alpha-bar is kept
at the steps visited, Nichol & Dhariwal 2021 sec. 4; both variances follow the shorter chain).
Beside them DDIM with eta = 0 (Song et al. 2021 eq. 12), which adds no noise at all and so
uses neither variance, at 10, 20, 50 and 200 steps. Each sample set is measured by its sliced
Wasserstein distance and its RBF MMD to fresh swiss-roll points, each over its data-versus-data
floor (ratio 1 = as close as another draw of the data).

What it shows: over all 200 steps the two variances give samples of the same quality, as
the paper says. Over 20 steps both degrade, each its own way (see the picture): beta_t blurs
every point, beta-tilde_t leaves points between the arms; the sliced Wasserstein distance
prefers beta_t (as Nichol & Dhariwal 2021, sec. 4, report for L_simple models sampled with
fewer steps), the RBF MMD sees them about equal. DDIM improves with its steps and is the same
under both variances. Where they differ most is the likelihood: the variational bound (eq. 5,
L_T + sum_{t>1} L_{t-1} + L_0, a Gaussian decoder for continuous 2-D data) of 1,000 fresh points,
in nats per dimension. Each term L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) is
(per dimension; DDPM eq. 8 writes the first part as its constant C)

    1/2 [beta-tilde_t / sigma_t^2 - 1 - log(beta-tilde_t / sigma_t^2)] + |mu-tilde_t - mu_theta|^2 / (2 sigma_t^2):

sigma_t^2 = beta-tilde_t pays nothing for the variance but divides every error of the mean by
beta-tilde_t, tiny at small t; sigma_t^2 = beta_t pays a fixed mismatch and divides by more.
For this briefly trained network the errors win and beta_t gives the tighter bound, by about
half (improved DDPM learns sigma_t^2 between the two to have both, sec. 3.1).

Run from the repository root: ``python examples/variances.py``. Writes ``variances.png`` (one
panel per setting) and ``variances.json`` into ``examples/out/variances``. About 35 s on 2 CPU cores.
"""

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ddpm import GaussianDiffusion, Trainer, load_dataset, make_betas, make_config, sample  # noqa: E402
from ddpm.data import sample_toy2d  # noqa: E402
from ddpm.eval.toy_metrics import evaluate_points  # noqa: E402
from ddpm.runs import build_network  # noqa: E402

VARIANCES = {"fixed_small": "beta-tilde", "fixed_large": "beta"}
N, N_BOUND = 2000, 1000
TRAIN_STEPS = 4000
ANCESTRAL_STEPS = (200, 20)
DDIM_STEPS = (10, 20, 50, 200)


def main(out_dir="examples/out/variances", seed=0) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = make_config("swissroll", overrides={"train.steps": TRAIN_STEPS, "train.progress": False, "seed": seed})
    betas = make_betas("linear", cfg.diffusion.T)  # T = 200: 5e-4 .. 0.1
    processes = {v: GaussianDiffusion(betas, variance=v) for v in VARIANCES}
    data = load_dataset(cfg.data, seed)
    torch.manual_seed(seed)
    trainer = Trainer(processes["fixed_small"], build_network(cfg, data.shape), data, cfg.train, seed=seed).run()
    model = trainer.ema  # the one network both processes use

    settings, samples = {}, {}
    for steps in ANCESTRAL_STEPS:
        for v, name in VARIANCES.items():
            key = f"ancestral {steps}, sigma^2 = {name}"
            samples[key] = sample(processes[v], model, data.shape, range(N), steps=steps, batch_size=N).x
            settings[key] = {"sampler": "ancestral", "steps": steps, "variance": v}
    for steps in DDIM_STEPS:
        key = f"DDIM {steps}, eta = 0"
        samples[key] = sample(processes["fixed_small"], model, data.shape, range(N), sampler="ddim", steps=steps,
                              batch_size=N).x
        settings[key] = {"sampler": "ddim", "steps": steps, "eta": 0.0}
    same = sample(processes["fixed_large"], model, data.shape, range(N), sampler="ddim", steps=DDIM_STEPS[0],
                  batch_size=N).x  # DDIM with eta = 0 never draws noise: the variance cannot matter
    for key, x in samples.items():
        m = evaluate_points(x.numpy(), "swissroll", metrics=["sliced_wasserstein", "mmd_rbf"])
        settings[key].update(sliced_wasserstein=m["sliced_wasserstein"], mmd_rbf=m["mmd_rbf"])

    x_test = torch.as_tensor(sample_toy2d("swissroll", N_BOUND, seed + 1_000_000), dtype=torch.float32)
    bound = {}
    for v in VARIANCES:  # the same noise for both (generator seeded alike): only the variance differs
        gen = torch.Generator().manual_seed(seed)
        b = processes[v].calc_bpd_loop(model, x_test, discrete=False, generator=gen)
        nats = b["total_bpd"] * math.log(2)  # calc_bpd_loop reports bits per dimension
        per_step = b["vb"].mean(0) * math.log(2)
        bound[v] = {"nats_per_dim": float(nats.mean()), "stderr": float(nats.std() / math.sqrt(N_BOUND)),
                    "L_0": float(per_step[0]), "L_1_to_L_9": float(per_step[1:10].sum()),
                    "L_10_to_L_T-1": float(per_step[10:].sum()), "L_T": float(b["prior_bpd"].mean() * math.log(2))}

    result = {"data": "swissroll", "T": len(betas), "train_steps": TRAIN_STEPS, "n": N, "settings": settings,
              "ddim_same_for_both_variances": bool(torch.equal(same, samples[f"DDIM {DDIM_STEPS[0]}, eta = 0"])),
              "bound": {"n": N_BOUND, "decoder": "gaussian", "units": "nats/dim", **bound}}
    picture(samples, settings, data.x[:N].numpy(), out / "variances.png")
    (out / "variances.json").write_text(json.dumps(result, indent=2))
    return result


def picture(samples, settings, data, path):
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.8))
    for ax, (key, x) in zip(axes.flat, samples.items()):
        ax.scatter(data[:, 0], data[:, 1], s=1, c="0.8")
        ax.scatter(x[:, 0], x[:, 1], s=1, c="C0", alpha=0.6)
        sw, mmd = settings[key]["sliced_wasserstein"]["ratio"], settings[key]["mmd_rbf"]["ratio"]
        ax.set_title(f"{key}\nsliced W2 {sw:.2f} x floor, MMD {mmd:.1f} x floor", fontsize=9)
        ax.set_xlim(-2.2, 2.2)
        ax.set_ylim(-2.2, 2.2)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("one network, swiss roll: ancestral sampling with either variance, and DDIM", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    r = main(*sys.argv[1:2])
    print(f"swiss roll, one network ({r['train_steps']} steps), {r['n']} samples each; "
          "metric / data floor at the same n:")
    for key, s in r["settings"].items():
        m, k = s["sliced_wasserstein"], s["mmd_rbf"]
        print(f"  {key:<36} sliced W2 {m['value']:.4f} (floor {m['floor']:.4f}, ratio {m['ratio']:.2f})  "
              f"MMD ratio {k['ratio']:.1f}")
    print(f"DDIM (eta = 0) identical under both variances: {r['ddim_same_for_both_variances']}")
    print(f"variational bound of {r['bound']['n']} fresh points, nats/dim (Gaussian decoder):")
    for v, name in VARIANCES.items():
        b = r["bound"][v]
        print(f"  sigma^2 = {name:<10} {b['nats_per_dim']:.3f} +- {b['stderr']:.3f}  (L_0 {b['L_0']:.3f}, "
              f"L_1..L_9 {b['L_1_to_L_9']:.3f}, L_10..L_T-1 {b['L_10_to_L_T-1']:.3f}, L_T {b['L_T']:.4f})")
