"""Real images to measure against, and their features computed once.

The *reference* is a split of the data set (``train``, ``test`` or ``all``). The *floor* of
a metric is its value for ``n`` real images in place of the samples: held-out images (the
test split) when the reference is the training split and the test split holds at least
``n``, otherwise ``n`` images drawn from the reference itself (an optimistic floor; the
source is recorded). One draw of ``n`` real images is a noisy estimate of what real data
scores (classifier FID@1k of MNIST moves by a factor of 2 between draws), so the floor's
pool also gives :data:`FLOOR_DRAWS` - 1 further draws, from which FID reports the floor's
mean and spread. Features are cached per data split and feature space, under a name
that holds the data set, split, image count and shape, feature key (network and resize)
and a fingerprint of the pixels, so any change recomputes them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..data import Dataset, load_dataset
from ..errors import ConfigError, DataError
from .cache import cache_dir, fingerprint, safe_name, save_npz_atomic
from .features import FeatureExtractor

REFERENCE_SPLITS = ("train", "test", "all")
#: reference images apart from the floor's that precision/recall and density/coverage need: the
#: k = 5 nearest neighbours of density and coverage (Naeem et al. 2020) besides each point itself
MIN_PAIRED = 6
#: draws of the floor's n images from its pool for the spread of the FID floor (the first is the floor)
FLOOR_DRAWS = 5


def load_split(data_cfg, split: str) -> Dataset | None:
    """Split ``split`` of the data set, or None when it has no such split."""
    try:
        return load_dataset(dataclasses.replace(data_cfg, split=split, hflip=False))
    except DataError:
        if split == "train":
            raise
        return None


@dataclasses.dataclass
class Reference:
    """The real images of an evaluation: per split, so that features are cached per split."""

    data_name: str
    parts: dict[str, Dataset]  # split -> images forming the reference
    floor: tuple[str, Dataset, np.ndarray]  # (split, data, indices) of the floor images
    floor_source: str
    redraws: list[np.ndarray]  # indices of further draws of as many images from the floor's pool

    @property
    def n(self) -> int:
        return sum(len(d) for d in self.parts.values())

    def images(self) -> torch.Tensor:
        return torch.cat([d.x for d in self.parts.values()])

    def floor_positions(self) -> np.ndarray:
        """Where the floor images lie in :meth:`images` (empty when they are held out)."""
        offset = 0
        for split, data in self.parts.items():
            if split == self.floor[0]:
                return offset + self.floor[2]
            offset += len(data)
        return np.zeros(0, dtype=np.int64)


def make_reference(data_cfg, split: str, n: int, seed: int = 0) -> Reference:
    """The reference split and the ``n`` floor images (see the module docstring)."""
    if split not in REFERENCE_SPLITS:
        raise ConfigError(f"unknown reference split {split!r}: choose one of {', '.join(REFERENCE_SPLITS)}")
    train = load_split(data_cfg, "train")
    test = load_split(data_cfg, "test")
    if split == "test" and test is None:
        raise ConfigError(f"{data_cfg.name} has no test split: use --ref-split train")
    parts = {"train": train} if split == "train" else {"test": test} if split == "test" else \
        {"train": train, **({"test": test} if test is not None else {})}
    gen = torch.Generator().manual_seed(seed)

    def draws(pool: Dataset) -> list[np.ndarray]:
        return [torch.randperm(len(pool), generator=gen)[:n].numpy() for _ in range(FLOOR_DRAWS)]

    if split == "train" and test is not None and len(test) >= n:
        idx, *redraws = draws(test)
        return Reference(data_cfg.name, parts, ("test", test, idx), f"{n} held-out images (test split)", redraws)
    first = next(iter(parts))
    pool = parts[first]
    most = min(len(pool), sum(len(d) for d in parts.values()) - MIN_PAIRED)
    if n > most:
        fix = f"evaluate at most --n {most}" if most >= MIN_PAIRED else f"give it at least {2 * MIN_PAIRED} images"
        raise ConfigError(f"the floor needs {n} real images and the nearest-neighbour metrics {MIN_PAIRED} more, "
                          f"but the {first} split of {data_cfg.name} has {len(pool)}: {fix}")
    idx, *redraws = draws(pool)
    return Reference(data_cfg.name, parts, (first, pool, idx),
                     f"{n} images of the reference itself ({first} split; no held-out split of that size)", redraws)


def split_features(extractor: FeatureExtractor, data: Dataset, split: str, progress: bool = False) -> np.ndarray:
    """Features of a whole data split, computed once and cached."""
    shape = "x".join(map(str, data.shape))
    name = f"{safe_name(data.name)}-{split}-{len(data)}x{shape}-{extractor.key}-{fingerprint(data.x.numpy())}.npz"
    path = cache_dir("features") / name
    if path.is_file():
        with np.load(path) as f:
            return f["features"].astype(np.float64)
    feats = extractor(data.x, progress=progress, desc=f"{extractor.name} of {data.name} {split}")
    save_npz_atomic(path, features=feats.astype(np.float32))
    return feats.astype(np.float32).astype(np.float64)


def reference_features(extractor: FeatureExtractor, ref: Reference, progress: bool = False):
    """(reference features, floor features, features of each further draw) for one feature space."""
    feats = {s: split_features(extractor, d, s, progress) for s, d in ref.parts.items()}
    split, data, idx = ref.floor
    pool = feats[split] if split in feats else split_features(extractor, data, split, progress)
    return np.concatenate(list(feats.values())), pool[idx], [pool[i] for i in ref.redraws]
