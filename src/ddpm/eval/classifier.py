"""A classifier of a data set's own classes: a feature space for small grayscale images.

Inception features say little about 28x28 or 8x8 digits. ``ddpm`` trains a small CNN on
the data set's training split (fixed seed, fixed recipe, a minute or so on a CPU), caches it
under the fingerprint of the training data, and reports its held-out accuracy. Its
penultimate layer (128-d) gives the *classifier FID/KID*, always labelled as such; its
predictions give the class histogram of a sample set and the mean confidence.

For the built-in ``digits`` and ``mnist`` the package ships the recipe's weights (:data:`SHIPPED`):
the recipe is deterministic on one machine, but float arithmetic differs between CPUs, and two
thousand steps of training turn that into other weights (the MNIST classifier FID floor was 2.90
with one machine's weights and 3.03 with another's). With the shipped weights a classifier FID
means the same on every machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, safe_open, save_file
from torch import nn
from tqdm.auto import tqdm

from ..data import Dataset, load_dataset
from ..errors import ConfigError, DataError
from .cache import cache_dir, fingerprint, safe_name
from .features import FeatureExtractor

#: the training recipe; changing it changes the cache key
RECIPE = {"version": 1, "steps": 2000, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4, "shift": 2, "seed": 0}
#: the recipe's weights for the built-in data sets, named as the cache names them (data set and the
#: fingerprint of its training images, labels and the recipe); trained on 2 CPU cores, 2026-12-05
SHIPPED = Path(__file__).with_name("classifiers")


class CNN(nn.Module):
    """Two 3x3 conv pairs (32, 64 channels) with a 2x2 max-pool between, 2x2 average pool,
    a 128-d ReLU layer (the features) and a linear read-out."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(256, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def _scale(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


class Classifier(FeatureExtractor):
    """A trained :class:`CNN` as a feature extractor (penultimate layer) and a classifier."""

    dim = 128

    def __init__(self, net: CNN, data_name: str, data_id: str, accuracy: float, n_test: int, shipped: bool = False):
        self.net = net.eval()
        self.data_name, self.data_id, self.accuracy, self.n_test = data_name, data_id, accuracy, n_test
        self.shipped = shipped
        self.name = f"classifier-{safe_name(data_name)}"
        self.description = (f"penultimate 128-d features of a CNN trained on {data_name}'s training split "
                            f"(held-out accuracy {accuracy:.4f} on {n_test} images; "
                            f"{'weights shipped with ddpm' if shipped else 'weights trained on this machine'})")
        self.batch_size = 500
        self.weights_id = fingerprint(*(v.numpy() for v in net.state_dict().values()))

    @property
    def key(self) -> str:
        """The weights' own fingerprint: features cached with one classifier never serve another."""
        return f"{self.name}-{self.weights_id}"

    def forward_batch(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.body(_scale(images))

    @torch.inference_mode()
    def probabilities(self, images) -> np.ndarray:
        """Class probabilities (N, K) of uint8 images."""
        from .features import as_nchw_uint8

        x = as_nchw_uint8(images)
        out = [F.softmax(self.net(_scale(x[i : i + 500])), dim=1).double() for i in range(0, len(x), 500)]
        return torch.cat(out).numpy()


def _shift(x: torch.Tensor, gen: torch.Generator, s: int) -> torch.Tensor:
    """Random translations by up to ``s`` pixels (zero padding is the background), one per image."""
    padded = F.pad(x, (s, s, s, s), value=-1.0)
    dy, dx = torch.randint(0, 2 * s + 1, (2, len(x)), generator=gen).tolist()
    h, w = x.shape[2:]
    return torch.stack([padded[i, :, a : a + h, b : b + w] for i, (a, b) in enumerate(zip(dy, dx))])


def train_classifier(train: Dataset, progress: bool = False) -> CNN:
    """The CNN trained by :data:`RECIPE`: AdamW, cosine learning rate, random shifts; deterministic
    for a given machine (fixed seed, generators for every draw)."""
    r = RECIPE
    with torch.random.fork_rng(devices=[]):  # leaves the caller's random state (e.g. a training run's) alone
        torch.manual_seed(r["seed"])
        net = CNN(train.shape[0], train.num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, r["steps"])
    gen = torch.Generator().manual_seed(r["seed"])
    x_all, y_all = _scale(train.x), train.y
    net.train()
    for _ in tqdm(range(r["steps"]), disable=not progress, desc=f"classifier of {train.name}", leave=False):
        idx = torch.randint(0, len(train), (r["batch_size"],), generator=gen)
        loss = F.cross_entropy(net(_shift(x_all[idx], gen, r["shift"])), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def held_out(data_cfg, train: Dataset) -> tuple[Dataset, Dataset]:
    """(training images, held-out images): the test split when the data has one, else every
    tenth training image held out."""
    try:
        test = load_dataset(dataclasses.replace(data_cfg, split="test"))
        if test.y is not None and len(test):
            return train, test
    except DataError:  # no test split: hold out part of train
        pass
    keep = torch.arange(len(train)) % 10 != 9
    return train.subset(torch.nonzero(keep).flatten()), train.subset(torch.nonzero(~keep).flatten())


def load_classifier(data_cfg, progress: bool = False) -> Classifier:
    """The classifier of the data set ``data_cfg`` names (its training split): the shipped weights
    when the package has them for exactly this data (:data:`SHIPPED`), else trained on first use and
    cached under ``cache_dir('classifiers')`` by the data's fingerprint and the recipe."""
    train = load_dataset(dataclasses.replace(data_cfg, split="train", hflip=False))
    if not train.is_image or train.y is None or train.num_classes < 2:
        raise ConfigError(f"{data_cfg.name} has no class labels: the classifier features need labelled images "
                          "(use class sub-folders); use --features inception")
    fit_on, test = held_out(data_cfg, train)
    data_id = fingerprint(fit_on.x.numpy(), fit_on.y.numpy(), json.dumps(RECIPE))
    name = f"{safe_name(train.name or data_cfg.name)}-{data_id}.safetensors"
    shipped = (SHIPPED / name).is_file()
    path = SHIPPED / name if shipped else cache_dir("classifiers") / name
    net = CNN(train.shape[0], train.num_classes)
    if path.is_file():
        net.load_state_dict(load_file(str(path)))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        accuracy, n_test = float(meta["accuracy"]), int(meta["n_test"])
    else:
        net = train_classifier(fit_on, progress)
        with torch.inference_mode():
            pred = torch.cat([net(_scale(test.x[i : i + 500])).argmax(1) for i in range(0, len(test), 500)])
        accuracy, n_test = float((pred == test.y).double().mean()), len(test)
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
                  metadata={"accuracy": str(accuracy), "n_test": str(n_test), "recipe": json.dumps(RECIPE)})
        os.replace(tmp, path)
    return Classifier(net, data_cfg.name, data_id, accuracy, n_test, shipped)
