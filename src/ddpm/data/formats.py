"""Readers for image data stored as arrays on disk: NumPy, IDX (MNIST) and CIFAR-10 binary.

Every reader returns a :class:`Raw` — uint8 pixels (N, C, H, W), int64 labels
(N,) or None, class names or None — for one split, and raises
:class:`~ddpm.errors.DataError` naming the file, the problem and the fix for
anything it cannot read. Nothing is unpickled (``np.load`` runs with
``allow_pickle=False``); archives are read in memory, never extracted.
"""

from __future__ import annotations

import gzip
import re
import tarfile
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError

CHANNEL_SIZES = (1, 3, 4)
#: what NumPy raises on a damaged .npy/.npz (a garbled header is parsed as a Python literal; zipfile
#: reports garbled flags as unsupported compression or encryption)
NUMPY_READ_ERRORS = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile, zlib.error,
                     MemoryError, NotImplementedError, RuntimeError)
IDX_IMAGES = re.compile(r"images([.-])idx3-ubyte(\.gz)?$")
CIFAR_DIR = "cifar-10-batches-bin"
CIFAR_PICKLED_DIR = "cifar-10-batches-py"
CIFAR_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
CIFAR_RECORD = 1 + 3 * 32 * 32


class Raw(NamedTuple):
    """One split of a source: pixels (N, C, H, W) uint8, labels (N,) int64 or None, class names or None,
    and what the files held before conversion where the reader knows better than the array
    (:func:`ddpm.data.summary.array_inventory`'s layout; None: the array itself)."""

    x: np.ndarray
    y: np.ndarray | None = None
    classes: list[str] | None = None
    inventory: dict | None = None


def single_split(path: Path, split: str) -> None:
    """A single file is one data set, served as split "train"; refuse "test"."""
    if split != "train":
        raise DataError(
            f"{path} is a single file, which holds only the 'train' split; "
            f"use split='train', or pass a directory that has a {split} split"
        )


# ---------------------------------------------------------------- NumPy arrays


def read_npy(path: Path, split: str) -> Raw:
    """A ``.npy`` array of images (layout and value range as in :func:`to_nchw_uint8`)."""
    single_split(path, split)
    try:
        arr = np.load(path, allow_pickle=False)
    except NUMPY_READ_ERRORS as e:
        raise _numpy_error(path, e, "a .npy array") from e
    return Raw(to_nchw_uint8(arr, path))


def _numpy_error(path: Path, e: Exception, what: str) -> DataError:
    if "allow_pickle" in str(e):
        return DataError(f"{path} holds Python objects (pickled arrays), which are never loaded because unpickling "
                         "can run code; save numeric arrays (e.g. np.savez(path, x=uint8_images))")
    return DataError(f"cannot read {path} as {what} ({one_line(e)}); the file is corrupt or not a NumPy file")


def one_line(e: Exception) -> str:
    """The first line of an exception's message (library messages can span several)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def read_npz(path: Path, split: str) -> Raw:
    """A ``.npz`` archive: images from ``arr_0``, ``x`` or ``images``; labels from ``y``, ``labels`` or ``arr_1``."""
    single_split(path, split)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except NUMPY_READ_ERRORS as e:
        raise _numpy_error(path, e, "a .npz archive") from e
    x_key = next((k for k in ("arr_0", "x", "images") if k in arrays), None)
    if x_key is None:
        raise DataError(
            f"{path} holds arrays {sorted(arrays)} but none named arr_0, x or images; "
            "save the images under one of these names"
        )
    x = to_nchw_uint8(arrays[x_key], path)
    y_key = next((k for k in ("y", "labels", "arr_1") if k in arrays), None)
    return Raw(x, None if y_key is None else check_labels(arrays[y_key], len(x), f"{path}[{y_key!r}]"))


def to_nchw_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    """Images in any accepted layout and value range as uint8 (N, C, H, W).

    Layout: 3-D arrays are NHW (one channel); in 4-D arrays the channel axis is
    whichever of axes 1 (NCHW) and 3 (NHWC) has size 1, 3 or 4; if both do, the
    one that leaves a square image, and axis 3 if that does not decide.
    Values: integers must lie in 0..255 and are kept; floats in [0, 1] become
    round(255 v); other floats in [-1, 1] become round(127.5 (v + 1)) (NumPy's
    rint in the array's own precision).
    """
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        axes = [a for a in (3, 1) if arr.shape[a] in CHANNEL_SIZES]
        if not axes:
            raise DataError(
                f"{path}: images of shape {arr.shape} have no channel axis of size 1, 3 or 4 at position 1 (NCHW) "
                "or 3 (NHWC); save grayscale, RGB or RGBA images"
            )
        square = [a for a in axes if len({arr.shape[d] for d in (1, 2, 3) if d != a}) == 1]
        if (square or axes)[0] == 3:
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(
            f"{path}: an array of shape {arr.shape} is not images; save (N, H, W), (N, H, W, C) or (N, C, H, W)"
        )
    if len(arr) == 0:
        raise DataError(f"{path} holds no images; save at least one")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise DataError(f"{path}: integer pixels range over {arr.min()}..{arr.max()}; save pixels in 0..255")
        return np.ascontiguousarray(arr, dtype=np.uint8)
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{path}: pixels of type {arr.dtype} are not numbers; save uint8 or float images")
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise DataError(f"{path}: {bad} pixel values are NaN or infinite; fix or drop those images")
    lo, hi = float(arr.min()), float(arr.max())
    if not (-1.0 <= lo and hi <= 1.0):
        raise DataError(
            f"{path}: float pixels range over [{lo:g}, {hi:g}]; "
            "save floats in [0, 1] or [-1, 1], or uint8 pixels 0..255"
        )
    scaled = arr * 255.0 if lo >= 0.0 else (arr + 1.0) * 127.5
    return np.rint(scaled).astype(np.uint8)


def check_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    """Labels as int64 (n,), refusing the wrong shape, length, type or negative values."""
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{where}: labels of shape {y.shape} do not match {n} images; save one label per image")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels of type {y.dtype} are not integers; save integer class labels")
    if n and y.min() < 0:
        raise DataError(f"{where}: label {y.min()} is negative; class labels count from 0")
    return y.astype(np.int64)


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


def is_idx_images(path: Path) -> bool:
    """True for a file named like ``train-images-idx3-ubyte`` (optionally ``.gz``)."""
    return bool(IDX_IMAGES.search(path.name))


def read_idx(path: Path, split: str) -> Raw:
    """MNIST-style IDX files: an images file, or a directory of the standard four files.

    A directory serves ``train-*`` as "train" and ``t10k-*`` as "test"; a single
    images file is the "train" split. Labels come from the matching
    ``*-labels-idx1-ubyte[.gz]`` file when it exists.
    """
    if path.is_dir():
        prefix = {"train": "train", "test": "t10k"}[split]
        images = next((p for p in sorted(path.iterdir()) if p.name.startswith(prefix + "-") and is_idx_images(p)), None)
        if images is None:
            raise DataError(
                f"{path} has no {prefix}-images-idx3-ubyte[.gz], so no {split!r} split; "
                "add the file or use the other split"
            )
    else:
        single_split(path, split)
        images = path
    x = read_idx_array(images, ndim=3)[:, None]
    labels = find_gz(images.with_name(IDX_IMAGES.sub(r"labels\1idx1-ubyte", images.name)))
    if labels is None:
        return Raw(x)
    return Raw(x, check_labels(read_idx_array(labels, ndim=1), len(x), str(labels)))


def find_gz(path: Path) -> Path | None:
    """``path`` or ``path.gz``, whichever exists."""
    return next((p for p in (path, path.with_name(path.name + ".gz")) if p.is_file()), None)


def read_idx_array(path: Path, ndim: int) -> np.ndarray:
    """Parse and validate one unsigned-byte IDX file (gzipped or not).

    Header: two zero bytes, type code 0x08 (unsigned byte), the number of
    dimensions, then each dimension as a big-endian uint32; the data must hold
    exactly the product of the dimensions in bytes.
    """
    data = read_maybe_gzip(path)
    if len(data) < 4 or data[:2] != b"\0\0":
        raise DataError(
            f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'none'}); "
            "pass an MNIST-style *-images-idx3-ubyte file"
        )
    if data[2] != 0x08:
        raise DataError(
            f"{path}: IDX data type 0x{data[2]:02x} is not unsigned bytes (0x08); "
            "pass an MNIST-style file of uint8 pixels or labels"
        )
    if data[3] != ndim:
        raise DataError(
            f"{path}: IDX file has {data[3]} dimensions, expected {ndim}; "
            "pass the matching images (3) or labels (1) file"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated inside its IDX header; download the file again")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    size = int(np.prod(dims))
    if len(data) - header != size:
        raise DataError(
            f"{path} holds {len(data) - header} data bytes but its IDX header {dims} says {size}; "
            "the file is truncated or corrupt: download it again"
        )
    return np.frombuffer(data, np.uint8, size, header).reshape(dims)


def read_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, decompressed if it starts with the gzip magic number."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is a damaged gzip file ({one_line(e)}); download it again") from e


# ---------------------------------------------------------------- CIFAR-10 binary version


def is_cifar(path: Path) -> bool:
    """True for a tar archive, a CIFAR-10 batches directory (binary or pickled), or its parent."""
    if path.is_file():
        return path.name.endswith((".tar.gz", ".tgz", ".tar"))
    dirs = (CIFAR_DIR, CIFAR_PICKLED_DIR)
    return path.name in dirs or any((path / d).is_dir() for d in dirs) or any(path.glob("*_batch*.bin"))


def read_cifar10(path: Path, split: str) -> Raw:
    """CIFAR-10 binary batches: "train" is ``data_batch_1..5.bin`` in order, "test" is ``test_batch.bin``.

    Each record is one label byte then 3,072 pixel bytes (R, G, B planes of
    32x32). Class names come from ``batches.meta.txt`` when present.
    """
    files = {name: None for name in CIFAR_FILES[split] + ["batches.meta.txt"]}
    if path.is_file():
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    name = Path(member.name).name
                    if member.isfile() and name in files:
                        files[name] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot read {path} as a tar archive ({one_line(e)}); "
                            "download cifar-10-binary.tar.gz again") from e
    else:
        folder = path / CIFAR_DIR if (path / CIFAR_DIR).is_dir() else path
        files = {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in files}
    missing = [name for name in CIFAR_FILES[split] if files[name] is None]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)} for the {split!r} split; pass the complete CIFAR-10 binary version "
            "(cifar-10-binary.tar.gz; the pickled Python version is never read, as unpickling can run code)"
        )
    batches = []
    for name in CIFAR_FILES[split]:
        if len(files[name]) % CIFAR_RECORD:
            raise DataError(
                f"{path}: {name} is {len(files[name])} bytes, not whole {CIFAR_RECORD}-byte records; "
                "the file is truncated: download it again"
            )
        batches.append(np.frombuffer(files[name], np.uint8).reshape(-1, CIFAR_RECORD))
    meta = files["batches.meta.txt"]
    names = [] if meta is None else meta.decode("utf-8", "replace").splitlines()
    classes = [n.strip() for n in names if n.strip()] or None
    y = np.concatenate([b[:, 0] for b in batches]).astype(np.int64)
    if classes and y.max(initial=0) >= len(classes):
        raise DataError(
            f"{path}: label {y.max()} has no name among the {len(classes)} in batches.meta.txt; the data is corrupt"
        )
    return Raw(np.concatenate([b[:, 1:] for b in batches]).reshape(-1, 3, 32, 32), y, classes)
