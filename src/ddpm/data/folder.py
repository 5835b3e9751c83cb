"""A folder of image files read into one array: one channel count, one size, one split.

Every image under the folder is read in sorted path order (hidden files and folders
skipped; the first level of sub-folders names the classes) and converted as it is read:

- **channels**: unset, a folder whose images are all grayscale (Pillow modes ``1``, ``L``,
  ``LA``, ``I``, ``F``, 16-bit ``I;16``) gives one channel, anything else three (RGB, gray
  replicated). 16-bit images are scaled to 8 bits (v >> 8). ``channels`` 1 or 3 forces it.
- **palette images** (mode ``P``) are converted through their palette, with a warning.
- **transparency** (an alpha channel, or a palette or colour key marking pixels
  transparent) is removed by the ``alpha`` policy of :data:`ALPHA_POLICIES`: composited on
  white (the default: the picture as a viewer shows it on a white page), on black, or
  dropped (the colours stored under transparent pixels kept, as Pillow's ``convert``
  does). Compositing is ``round((c a + b (255 - a)) / 255)`` for colour c, alpha a and
  background b. Images with transparent pixels draw one warning per folder saying what
  was done and how to choose otherwise; fully opaque alpha channels are lossless and pass
  silently.
- **size**: ``image_size`` (height, width) fits each image by
  :func:`ddpm.data.resize.fit` (keep the aspect ratio, cover, centre-crop); unset, the
  images must share one size.

The modes and sizes the files held are kept as the :class:`~ddpm.data.formats.Raw`'s
inventory for the data summary (:mod:`ddpm.data.summary`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..errors import DataError
from .formats import Raw
from .resize import fit
from .summary import count

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
#: modes whose ``transparency`` info (a palette index or a colour key) marks pixels transparent
KEYED_MODES = {"1", "L", "P", "RGB"}
#: what to do with transparent pixels (data.alpha), as the warning offers each choice
ALPHA_POLICIES = {
    "white": "composite on white",
    "black": "composite on black",
    "drop": "drop alpha, keeping the colours stored under transparent pixels",
}
#: what the warning says was done
ALPHA_DONE = {"white": "alpha composited on white", "black": "alpha composited on black", "drop": "alpha dropped"}
BACKGROUND = {"white": 255, "black": 0}


class ImageFile(NamedTuple):
    """One image as read: pixels uint8 (H, W) or (H, W, 3), converted and fitted; the file's Pillow
    mode and (height, width); whether it had transparent pixels."""

    pixels: np.ndarray
    mode: str
    size: tuple[int, int]
    transparent: bool


def read_folder(root: Path, split: str, image_size: tuple[int, int] | None, channels: int | None,
                alpha: str = "white") -> Raw:
    """Every image under ``root`` (or ``root/split`` when ``train/`` and ``test/`` exist), in path order.

    Labels index the sorted names of first-level sub-folders holding images,
    over both splits so that they agree; images lying directly in the root
    have no labels. Images are converted and fitted as they are read (module docstring).
    """
    splits = {s: root / s for s in SPLITS} if all((root / s).is_dir() for s in SPLITS) else {"train": root}
    if split not in splits:
        raise DataError(f"{root} has no test split; give it train/ and test/ sub-folders, or use split='train'")
    folder = splits[split]
    parts = {s: [p.relative_to(d).parts for p in image_files(d)] for s, d in splits.items()}
    mine = parts[split]
    if not mine:
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); check the path")
    classes = sorted({p[0] for ps in parts.values() for p in ps if len(p) > 1})
    if classes and any(len(p) == 1 for p in mine):
        raise DataError(
            f"{folder} mixes images in class sub-folders with images directly in it; "
            "put every image in a class sub-folder, or none"
        )
    read, kept, bad = [], [], []
    for p in mine:
        try:
            read.append(read_image(folder.joinpath(*p), image_size, channels, alpha))
            kept.append(p)
        except DataError:
            bad.append("/".join(p))
    if not read:
        raise DataError(f"none of the {len(mine)} image files in {folder} can be read (first: {bad[0]}); "
                        "replace the files")
    if bad:
        warnings.warn(f"skipped {len(bad)} of {len(mine)} image files in {folder} that cannot be read "
                      f"(first: {bad[0]}); the other {len(kept)} are used", stacklevel=2)
    warn_conversions(read, folder, channels, alpha)
    arrays = [f.pixels for f in read]
    if any(a.ndim == 3 for a in arrays):
        arrays = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays]
    sizes = {a.shape[:2]: p for a, p in zip(arrays, kept, strict=True)}
    if len(sizes) > 1:
        (s1, p1), (s2, p2) = list(sizes.items())[:2]
        raise DataError(
            f"{folder}: images differ in size (height x width {s1[0]}x{s1[1]} {'/'.join(p1)}, "
            f"{s2[0]}x{s2[1]} {'/'.join(p2)}); pass image_size (e.g. --set data.image_size=64, or "
            "data.image_size=48,64 for height,width) to resize and centre-crop them to one size"
        )
    x = np.stack(arrays)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    inventory = {"sizes": count(f"{f.size[0]}x{f.size[1]}" for f in read), "modes": count(f.mode for f in read)}
    if not classes:
        return Raw(x, inventory=inventory)
    index = {c: i for i, c in enumerate(classes)}
    return Raw(x, np.array([index[p[0]] for p in kept], dtype=np.int64), classes, inventory)


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted, skipping hidden files and folders."""
    found = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return sorted(p for p in found if not any(s.startswith(".") for s in p.relative_to(folder).parts))


def read_image(path: Path, image_size: tuple[int, int] | None, channels: int | None,
               alpha: str = "white") -> ImageFile:
    """One image file, converted (module docstring) and fitted to ``image_size`` (height, width)."""
    try:
        with Image.open(path) as img:
            mode, size = img.mode, (img.height, img.width)
            if mode.startswith("I;16"):
                img = Image.fromarray((np.asarray(img) >> 8).astype(np.uint8))
            gray = img.mode in GRAY_MODES
            img, transparent = remove_alpha(img, alpha)
            img = img.convert("L" if channels == 1 or (channels is None and gray) else "RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path} ({e}); the file is corrupt: remove or replace it") from e
    return ImageFile(np.asarray(fit(img, image_size) if image_size else img), mode, size, transparent)


def remove_alpha(img: Image.Image, policy: str) -> tuple[Image.Image, bool]:
    """``img`` without transparency by ``policy`` (a key of :data:`ALPHA_POLICIES`), and whether it had
    transparent pixels; images without transparency come back as they are."""
    if img.mode not in ALPHA_MODES and not (img.mode in KEYED_MODES and "transparency" in img.info):
        return img, False
    gray = img.mode in GRAY_MODES
    pixels = np.asarray(img.convert("LA" if gray else "RGBA"))
    colour, a = pixels[..., :-1], pixels[..., -1:]
    transparent = bool((a < 255).any())
    if transparent and policy != "drop":
        a = a.astype(np.uint32)
        colour = ((colour * a + BACKGROUND[policy] * (255 - a) + 127) // 255).astype(np.uint8)
    return Image.fromarray(colour[..., 0] if gray else colour), transparent


def warn_conversions(read: list[ImageFile], folder: Path, channels: int | None, alpha: str) -> None:
    """One warning per kind of lossy or surprising conversion in a folder: palette images, transparency."""
    n = len(read)
    palette = [f for f in read if f.mode in ("P", "PA")]
    if palette:
        to, other = ("grayscale", "leave data.channels unset to keep their colours") if channels == 1 else \
            ("RGB", "set data.channels=1 to train on grayscale instead")
        warnings.warn(f"{len(palette)} of {n} images in {folder} are palette images (mode P): converted through "
                      f"their palette to {to}; {other}", stacklevel=3)
    transparent = [f for f in read if f.transparent]
    if transparent:
        modes = ", ".join(count(f.mode for f in transparent))
        others = " or ".join(f"data.alpha={k} ({v})" for k, v in ALPHA_POLICIES.items() if k != alpha)
        warnings.warn(f"{len(transparent)} of {n} images in {folder} have transparent pixels (modes {modes}): "
                      f"{ALPHA_DONE[alpha]}; to change this set {others}", stacklevel=3)
