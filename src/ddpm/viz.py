"""Pictures a learner wants: forward and reverse strips, samples over data, grids,
the loss curve and an animated GIF of the reverse process.

Every function takes tensors (vectors (N, D) or images (N, C, H, W) in [-1, 1]) and a
path, draws with matplotlib's Agg backend or Pillow, and writes the file.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from .data.base import to_uint8  # noqa: E402


def _atomic(path, write) -> Path:
    """``write(temporary path)``, then rename into ``path``: a picture is whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _save(fig, path) -> Path:
    try:
        return _atomic(path, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _limits(*clouds, margin=0.1):
    pts = np.concatenate([np.asarray(c)[:, :2] for c in clouds])
    lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
    pad = (hi - lo) * margin
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] tiled into one uint8 HWC (or HW) array."""
    x = to_uint8(images).numpy()
    n, c, h, w = x.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    ncol = int(np.ceil(n / nrow))
    grid = np.full((c, ncol * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = x[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)[..., :3]


def save_image_grid(images: torch.Tensor, path, nrow: int | None = None, scale: int = 0) -> Path:
    """PNG grid of images; ``scale`` enlarges small images (0: to about 512 px wide)."""
    grid = Image.fromarray(image_grid(images, nrow))
    scale = scale or max(1, 512 // grid.width)
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    return _atomic(path, grid.save)


def _strip(states, titles, path, reference=None, title=None) -> Path:
    """One panel per state: a scatter for vectors, a grid for images."""
    k = len(states)
    fig, axes = plt.subplots(1, k, figsize=(2.2 * k, 2.4 if states[0].ndim == 2 else 2.2), squeeze=False)
    is_vec = states[0].ndim == 2
    lims = _limits(*(states if reference is None else [reference, *states])) if is_vec else None
    for ax, s, label in zip(axes[0], states, titles):
        if is_vec:
            if reference is not None:
                ax.scatter(reference[:, 0], reference[:, 1], s=1, c="0.85")
            ax.scatter(s[:, 0], s[:, 1], s=1, c="C0", alpha=0.6)
            ax.set_xlim(lims[0])
            ax.set_ylim(lims[1])
            ax.set_aspect("equal")
        else:
            ax.imshow(image_grid(s), cmap="gray" if s.shape[1] == 1 else None, vmin=0, vmax=255)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10, y=1.04)
    return _save(fig, path)


def _noise_level(process, t) -> np.ndarray:
    """sqrt(1 - alpha-bar_t), the standard deviation of the noise in x_t (eq. 4), for paper steps
    t in 0..T, fractional ones too (t=0: the data, no noise)."""
    t = np.asarray(t, dtype=np.float64)
    sigma = np.where(t > 0, process.sigma_at(np.maximum(t - 1, 0)), 0.0)
    return sigma / np.sqrt(1.0 + sigma**2)


def _panels(noise: np.ndarray, k: int) -> np.ndarray:
    """Indices of the states whose noise level is nearest to ``k`` levels evenly spaced from the
    first state's to the last's, so that the panels show the structure dissolve (or appear) step
    by step whatever the schedule; evenly spaced t would show mostly noise."""
    levels = np.linspace(noise[0], noise[-1], k)
    return np.unique(np.abs(noise[None, :] - levels[:, None]).argmin(axis=1))


@torch.no_grad()
def forward_strip(process, x0: torch.Tensor, path, panels: int = 6, seed: int = 0) -> Path:
    """x_t ~ q(x_t | x_0) from t=0 (data) to T (noise), at steps evenly spaced in noise level."""
    steps = _panels(_noise_level(process, np.arange(process.num_timesteps + 1)), panels)  # index = t
    gen = torch.Generator().manual_seed(seed)
    x0 = x0.double()
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    states, titles = [], []
    for s in steps:
        if s == 0:
            states.append(x0.float())
        else:
            t = torch.full((len(x0),), s - 1, dtype=torch.long)
            states.append(process.q_sample(x0, t, noise).float())
        titles.append(f"t = {s}")
    return _strip(states, titles, path, title="forward process q(x_t | x_0)")


def _step_label(t: float) -> str:
    return f"t = {t:.0f}" if float(t).is_integer() else f"t = {t:.1f}"


def _trajectory_frames(trajectory: torch.Tensor, timesteps, process, k: int):
    # the states of a trajectory and the paper steps they were at, as ``sample`` returns them
    if len(timesteps) != trajectory.shape[0]:
        raise ValueError(f"{trajectory.shape[0]} states but {len(timesteps)} timesteps")
    idx = _panels(_noise_level(process, timesteps), k)
    return idx, [_step_label(timesteps[i]) for i in idx]


def reverse_strip(trajectory: torch.Tensor, timesteps, path, process, panels: int = 6, reference=None) -> Path:
    """States of a sampling trajectory (S+1, N, ...) from x_T (noise) to x_0: the reverse process,
    at steps evenly spaced in noise level, each labelled with its step of the chain
    (``timesteps``: ``SampleOutput.timesteps``)."""
    idx, titles = _trajectory_frames(trajectory, timesteps, process, panels)
    ref = None if reference is None else np.asarray(reference)
    return _strip([trajectory[i] for i in idx], titles, path, reference=ref, title="reverse process p(x_{t-1} | x_t)")


def samples_over_data(samples, data, path, title: str = "samples over data") -> Path:
    """Scatter of model samples (blue) over the training data (grey)."""
    samples, data = np.asarray(samples), np.asarray(data)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(data[:, 0], data[:, 1], s=2, c="0.75", label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, c="C0", alpha=0.6, label="samples")
    lims = _limits(data, samples)
    ax.set_xlim(lims[0])
    ax.set_ylim(lims[1])
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4, fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def loss_curve(metrics_path, path) -> Path:
    """Training loss (and the loss per timestep quartile) against step, from metrics.jsonl."""
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]  # evaluation records share the file
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(steps, [r["loss"] for r in rows], c="k", lw=1.5, label="loss")
    for q in range(4):
        vals = [r.get(f"loss_q{q}") for r in rows]
        if any(v is not None for v in vals):
            ax.plot(steps, [np.nan if v is None else v for v in vals], lw=0.8, label=f"t in quartile {q + 1}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _frame_vectors(x, lims, label):
    fig, ax = plt.subplots(figsize=(3.5, 3.5), dpi=80)
    ax.scatter(x[:, 0], x[:, 1], s=2, c="C0", alpha=0.6)
    ax.set_xlim(lims[0])
    ax.set_ylim(lims[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(label, fontsize=9)
    fig.canvas.draw()
    frame = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return Image.fromarray(frame)


def reverse_gif(trajectory: torch.Tensor, timesteps, path, process, frames: int = 40, duration_ms: int = 80) -> Path:
    """Animated GIF of a sampling trajectory (S+1, N, ...) from noise to samples, frames evenly
    spaced in noise level, the last one held (``timesteps``: ``SampleOutput.timesteps``)."""
    idx, titles = _trajectory_frames(trajectory, timesteps, process, frames)
    if trajectory.ndim == 3:
        lims = _limits(trajectory[-1].numpy(), margin=0.3)
        images = [_frame_vectors(trajectory[i].numpy(), lims, label) for i, label in zip(idx, titles)]
    else:
        images = []
        for i in idx:
            img = Image.fromarray(image_grid(trajectory[i]))
            scale = max(1, 256 // img.width)
            images.append(img.resize((img.width * scale, img.height * scale), Image.NEAREST))
    durations = [duration_ms] * (len(images) - 1) + [1500]
    return _atomic(path, lambda p: images[0].save(p, save_all=True, append_images=images[1:], duration=durations,
                                                  loop=0))
