"""Per-channel colour statistics of samples against the data: is there a colour shift?

A model can match shapes and still be too red, too dark or too flat; feature distances
such as FID mix that with everything else, so the colour is measured on its own: the mean
and standard deviation of each channel's pixel values (0-255, over every pixel of every
image; :func:`ddpm.data.summary.channel_statistics`) for the samples, the reference images
and the floor's ``n`` real images (:mod:`ddpm.eval.reference`). The differences
samples - reference say how the colours moved; floor - reference says how far ``n`` real
images stray by chance, so a difference well beyond it is a real shift.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.summary import UNIT, channel_histograms, channel_names, moments
from .reference import Reference

STATISTICS = ("mean", "std")


def difference(a: dict, b: dict) -> dict:
    """``a - b`` for each statistic and channel."""
    return {k: [x - y for x, y in zip(a[k], b[k], strict=True)] for k in STATISTICS}


def color_statistics(samples: torch.Tensor, ref: Reference) -> dict:
    """Mean and standard deviation per channel of uint8 ``samples`` (N, C, H, W), of the reference
    images and of the floor images, with the differences from the reference (module docstring)."""
    _, floor_data, floor_idx = ref.floor
    data = moments(np.sum([channel_histograms(d.x) for d in ref.parts.values()], axis=0))
    found, floor = moments(channel_histograms(samples)), moments(channel_histograms(floor_data.x[floor_idx]))
    return {"channels": channel_names(samples.shape[1]), "unit": UNIT, "n": len(samples), "n_reference": ref.n,
            "samples": found, "data": data, "floor": floor,
            "difference": difference(found, data), "floor_difference": difference(floor, data)}
