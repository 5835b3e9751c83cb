"""Does the model copy its training images? Nearest-neighbour distances in pixel space.

For each generated image, the distance to its nearest training image is compared with the
same distance for held-out real images, which the model never saw: a sample closer to a
training image than almost all held-out images are (the 1st percentile) is counted as a
near copy. A model that generalises has about 1% of such samples; one that memorises its
(small) training set has many more.
"""

from __future__ import annotations

import numpy as np
import torch

#: share of held-out images allowed below the near-copy threshold
QUANTILE = 0.01


def nearest_training_images(queries: torch.Tensor, train: torch.Tensor, chunk: int = 1024):
    """Root-mean-square pixel distance (pixels scaled to [0, 1]) of each uint8 query image to its
    nearest uint8 training image, and that image's index."""
    t = train.flatten(1).double() / 255
    dists, idx = [], []
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i : i + chunk].flatten(1).double() / 255, t)
        best = d.min(dim=1)
        dists.append(best.values)
        idx.append(best.indices)
    d = torch.cat(dists) / np.sqrt(t.shape[1])
    return d.numpy(), torch.cat(idx).numpy()


def memorization(samples: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor | None, pairs: int = 8) -> dict:
    """Near-copy share of ``samples`` (uint8 NCHW) against ``train``, with the held-out images'
    distances as the reference, and the ``pairs`` closest (sample, training image) pairs."""
    d_s, j_s = nearest_training_images(samples, train)
    order = np.argsort(d_s)[:pairs]
    out = {
        "n": len(samples),
        "n_train": len(train),
        "distance": "RMS pixel difference, pixels in [0, 1], to the nearest training image",
        "median_nn_distance": {"value": float(np.median(d_s))},
        "pairs": [{"sample_index": int(i), "train_index": int(j_s[i]), "distance": float(d_s[i])} for i in order],
    }
    if heldout is not None and len(heldout):
        d_h, _ = nearest_training_images(heldout, train)
        threshold = float(np.quantile(d_h, QUANTILE))
        out["median_nn_distance"]["floor"] = float(np.median(d_h))
        out["near_copy_share"] = {"value": float(np.mean(d_s < threshold)), "floor": QUANTILE,
                                  "threshold": threshold, "n_heldout": len(heldout),
                                  "rule": f"nearer a training image than the {QUANTILE:.0%} nearest held-out images"}
    return out


def pairs_picture(samples: torch.Tensor, train: torch.Tensor, result: dict, path) -> None:
    """Two rows: the closest samples on top, their nearest training images below."""
    from .. import viz

    top = [p["sample_index"] for p in result["pairs"]]
    below = [p["train_index"] for p in result["pairs"]]
    images = torch.cat([samples[top], train[below]]).float() / 127.5 - 1
    viz.save_image_grid(images, path, nrow=len(top))
