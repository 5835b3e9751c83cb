"""The one resize policy of image data: keep the aspect ratio, cover the target, crop the centre.

``data.image_size`` is one side (square images) or a (height, width) pair. :func:`fit`
scales an image by the larger of height/h and width/w, so that it covers the target while
keeping its aspect ratio (a box filter, i.e. area averaging, when shrinking; bicubic when
enlarging), then crops the centre height x width. Nothing is padded and nothing is
stretched; what lies outside the target's aspect ratio is cut off, evenly from both sides
(choose an ``image_size`` of your pictures' own aspect ratio to keep all of them). For a
square target this is the geometry of torchvision's ``Resize(size)`` + ``CenterCrop(size)``,
the usual recipe of diffusion training scripts, with the filters above.
"""

from __future__ import annotations

from PIL import Image

from ..errors import DataError


def image_hw(image_size) -> tuple[int, int] | None:
    """``image_size`` (a positive int, or a sequence of one or two) as (height, width); None stays None."""
    if image_size is None:
        return None
    sides = list(image_size) if isinstance(image_size, (list, tuple)) else [image_size]
    if not 1 <= len(sides) <= 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sides):
        raise DataError(
            f"image_size={image_size!r} is not a positive integer or a pair of them; pass one side for square "
            "images (e.g. 32) or (height, width), e.g. (32, 48)"
        )
    return (sides[0], sides[-1])


def fit(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize ``img`` to cover (height, width) ``size`` keeping its aspect ratio; crop the centre (module docstring)."""
    th, tw = size
    w, h = img.size
    scale = max(th / h, tw / w)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return img.crop((left, top, left + tw, top + th))
