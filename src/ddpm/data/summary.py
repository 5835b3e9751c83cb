"""What an image data set holds, said before training: count, sizes and modes, colour statistics.

:func:`summarize` describes a loaded :class:`~ddpm.data.base.Dataset` of images: the number
of images, their shape after conversion, the sizes (height x width) and modes (Pillow's
names: ``L``, ``RGB``, ``RGBA``, ``P``, ...) the source held before conversion, and the mean
and standard deviation of each channel's pixel values (0-255) over every pixel of every
image. :func:`channel_statistics` is the one implementation of those statistics; the
evaluation compares samples with data by it (:mod:`ddpm.eval.color`).

:func:`small_data_warning` speaks when a set is small enough to be memorised: diffusion
models reproduce training images when trained on few of them (Somepalli et al. 2023,
"Diffusion art or digital forgery?"; Kadkhodaie et al. 2024, "Generalization in diffusion
models arises from geometry-adaptive harmonic representations", where a U-Net memorises
sets of up to about a thousand face images and generalises from 10^5).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from .base import Dataset

#: fewer training images than this draw the memorisation warning ("a few thousand")
SMALL_DATA = 5000
#: Pillow's name of the pixel layout of an array with this many channels
ARRAY_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
UNIT = "pixel values 0-255"
SHOWN = 5  # sizes and modes listed by name in the printed summary; the rest are counted


def channel_names(channels: int) -> list[str]:
    """``["gray"]``, ``["R", "G", "B"]``, or ``["channel 0", ...]`` for other counts."""
    return {1: ["gray"], 3: ["R", "G", "B"]}.get(channels, [f"channel {c}" for c in range(channels)])


def channel_histograms(x) -> np.ndarray:
    """Counts of each pixel value 0..255 per channel of uint8 images (N, C, H, W): (C, 256) int64."""
    x = x.numpy() if torch.is_tensor(x) else np.asarray(x)
    return np.stack([np.bincount(x[:, c].ravel(), minlength=256) for c in range(x.shape[1])])


def moments(histograms: np.ndarray) -> dict:
    """Mean and (population) standard deviation of each channel from its histogram of values 0..255."""
    values = np.arange(256, dtype=np.float64)
    counts = histograms.astype(np.float64)
    n = counts.sum(axis=1)
    mean = counts @ values / n
    var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / n
    return {"mean": mean.tolist(), "std": np.sqrt(var).tolist()}


def channel_statistics(x) -> dict:
    """``{"mean": [...], "std": [...]}`` of each channel of uint8 images (N, C, H, W), pixel values
    0-255, over all pixels of all images (exact: computed from the histogram of values)."""
    return moments(channel_histograms(x))


def array_inventory(x: np.ndarray) -> dict:
    """Sizes and modes of uint8 images (N, C, H, W) held as one array: one size, one mode."""
    n, c, h, w = x.shape
    return {"sizes": {f"{h}x{w}": n}, "modes": {ARRAY_MODES.get(c, f"{c} channels"): n}}


def count(items) -> dict:
    """Occurrences of each item, most frequent first (ties in order of first appearance)."""
    return dict(Counter(items).most_common())


def summarize(data: Dataset) -> dict:
    """The summary of an image data set (see the module docstring), as JSON-ready values."""
    inventory = data.inventory or array_inventory(data.x.numpy())
    return {"data": data.name, "images": len(data), "shape": list(data.shape), "classes": data.num_classes,
            "source_sizes": inventory["sizes"], "source_modes": inventory["modes"],
            "channels": channel_names(data.shape[0]), "unit": UNIT, **channel_statistics(data.x)}


def _listed(counts: dict) -> str:
    shown = [f"{k} ({v:,})" for k, v in list(counts.items())[:SHOWN]]
    rest = len(counts) - SHOWN
    return ", ".join(shown) + (f" and {rest} more" if rest > 0 else "")


def summary_lines(summary: dict) -> list[str]:
    """The summary as a few lines of text for the terminal."""
    c, h, w = summary["shape"]
    classes = f"{summary['classes']} classes" if summary["classes"] else "no labels"
    stats = ", ".join(f"{name} {m:.1f} / {s:.1f}" for name, m, s in
                      zip(summary["channels"], summary["mean"], summary["std"]))
    return [f"data {summary['data']}: {summary['images']:,} images, {classes}, trained as {c} x {h} x {w} (C x H x W)",
            f"  sizes in the source (H x W): {_listed(summary['source_sizes'])}",
            f"  modes in the source: {_listed(summary['source_modes'])}",
            f"  per-channel mean / std ({summary['unit']}): {stats}"]


def small_data_warning(n: int) -> str | None:
    """The warning for a training set of ``n`` images small enough to be memorised, else None."""
    if n >= SMALL_DATA:
        return None
    return (f"{n:,} training images is few enough (under {SMALL_DATA:,}) for a diffusion model to memorise them "
            "and reproduce training images instead of new ones; after training, `ddpm evaluate RUN` checks the "
            "samples for near copies (its memorisation check; a test/ split gives it held-out images to compare "
            "with), and the report shows the closest pairs")
