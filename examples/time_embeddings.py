"""Discrete or continuous time: two time embeddings of the same 2-D DDPM on the spiral.

Tutorial: the essay deriving diffusion from statistical physics (diffusion-models-physics-view
in the reading list), which trains a DDPM on the 2-D spiral of Sohl-Dickstein et al. (2015) and
says that the network's dependence on t "can be either discrete (similar to token inputs in a
transformer) or continuous": transformer positional encodings for the one, Gaussian random
features for the other. Its lesson reproduced here: both embeddings, trained side by side with
the same budget, learn the spiral; the choice is about how t is represented, not whether the
model works.

The two embeddings of a step t (``ddpm.nets.embeddings``; d = 64 features, then a two-layer
MLP, as in the DDPM U-Net):

    sinusoidal  [sin(t f_i), cos(t f_i)],  f_i = 10000^(-i / (d/2)),  i = 0 .. d/2 - 1
                (Vaswani et al. 2017 sec. 3.5; DDPM appendix B)
    fourier     [sin(2 pi w_i t / 1000), cos(2 pi w_i t / 1000)],  w_i ~ N(0, 16^2) drawn once
                (Gaussian random Fourier features, Tancik et al. 2020; Song et al. 2021 app. H.1)

Both networks are trained with L_simple (Ho et al. 2020 eq. 14)

    E_{t, x_0, eps} || eps - eps_theta(sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps, t) ||^2

and sampled by ancestral sampling over all T steps (Algorithm 2, eq. 11), as the essay does,
and by DPM-Solver++(2M) in 20 steps on the Karras grid (Lu et al. 2022), whose steps fall
between the training steps: fractional t, where a continuous embedding is at home. Quality:
the sliced Wasserstein distance of 2,000 samples to fresh spiral points over the data-versus-data
floor at the same n (ratio 1 = as close as another draw of the data).

Run from the repository root: ``python examples/time_embeddings.py``. Writes
``time_embeddings.png`` (each embedding as a picture, and each model's samples over the data)
and ``time_embeddings.json`` into ``examples/out/time_embeddings``. About 45 s on 2 CPU cores.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ddpm import Trainer, load_dataset, make_config, sample  # noqa: E402
from ddpm.eval.toy_metrics import evaluate_points  # noqa: E402
from ddpm.runs import build_network, build_process  # noqa: E402

EMBEDDINGS = ("sinusoidal", "fourier")
STEPS = 4000  #: the same budget for both (the spiral preset trains 6,000)
N = 2000
SAMPLERS = {"ancestral": {"sampler": "ancestral"}, "dpm++ 20": {"sampler": "dpm++", "steps": 20}}


def main(out_dir="examples/out/time_embeddings", seed=0) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result, samples, features = {"data": "spiral", "train_steps": STEPS, "n": N}, {}, {}
    for kind in EMBEDDINGS:
        cfg = make_config("spiral", overrides={"model.time_embedding": kind, "train.steps": STEPS,
                                               "train.progress": False, "seed": seed})
        process = build_process(cfg)  # T = 200, linear betas 5e-4 .. 0.1
        data = load_dataset(cfg.data, seed)
        torch.manual_seed(seed)
        model = build_network(cfg, data.shape)
        trainer = Trainer(process, model, data, cfg.train, seed=seed).run()
        t = torch.arange(process.num_timesteps, dtype=torch.float32)
        features[kind] = trainer.ema.time_embed[0](t).numpy()  # the fixed features, before the MLP
        result[kind] = {"final_loss": trainer.history[-1]["loss"], "parameters": model.num_parameters()}
        for name, options in SAMPLERS.items():
            x = sample(process, trainer.ema, data.shape, range(N), batch_size=N, **options).x
            metrics = evaluate_points(x.numpy(), "spiral", metrics=["sliced_wasserstein", "mmd_rbf"])
            result[kind][name] = {m: metrics[m] for m in ("sliced_wasserstein", "mmd_rbf")}
            samples[kind, name] = x.numpy()
    picture(features, samples, load_dataset(cfg.data, seed + 1).x[:N].numpy(), result, out / "time_embeddings.png")
    (out / "time_embeddings.json").write_text(json.dumps(result, indent=2))
    return result


def picture(features, samples, data, result, path):
    fig, axes = plt.subplots(2, 2, figsize=(8, 7.6))
    for col, kind in enumerate(EMBEDDINGS):
        ax = axes[0, col]
        ax.imshow(features[kind].T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(f"{kind} features of t", fontsize=10)
        ax.set_xlabel("step t")
        ax.set_ylabel("feature")
        ax = axes[1, col]
        x = samples[kind, "ancestral"]
        ax.scatter(data[:, 0], data[:, 1], s=1, c="0.8", label="data")
        ax.scatter(x[:, 0], x[:, 1], s=1, c="C0" if col == 0 else "C3", alpha=0.6, label="samples")
        sw = result[kind]["ancestral"]["sliced_wasserstein"]
        ax.set_title(f"{kind}: sliced W2 {sw['value']:.3f} = {sw['ratio']:.2f} x floor", fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlim(-1.3, 1.3)
        ax.set_ylim(-1.3, 1.3)
        ax.legend(loc="lower right", fontsize=7, markerscale=5)
    fig.suptitle(f"DDPM on the spiral, {result['train_steps']} steps each; ancestral samples over the data",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    r = main(*sys.argv[1:2])
    print(f"spiral, {r['train_steps']} training steps each, {r['n']} samples, metric / data floor at the same n:")
    for kind in EMBEDDINGS:
        for name in SAMPLERS:
            sw, mmd = r[kind][name]["sliced_wasserstein"], r[kind][name]["mmd_rbf"]
            print(f"  {kind:<10} {name:<9} sliced W2 {sw['value']:.4f} (floor {sw['floor']:.4f}, "
                  f"ratio {sw['ratio']:.2f})"
                  f"  MMD {mmd['value']:.2e} (floor {mmd['floor']:.2e}, ratio {mmd['ratio']:.2f})")
