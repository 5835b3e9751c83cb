"""Data sets: 2-D distributions (generated) and images (built-in or from disk)."""

from pathlib import Path

from ..errors import DataError
from .base import Dataset, to_uint8
from .toy2d import TOY2D, load_toy2d, sample_toy2d

__all__ = ["Dataset", "to_uint8", "TOY2D", "load_dataset", "sample_toy2d", "is_vector_dataset"]


def is_vector_dataset(name: str) -> bool:
    """True for the generated 2-D data sets, whose true distribution is known."""
    return name in TOY2D


def load_dataset(data_cfg, seed: int = 0) -> Dataset:
    """The :class:`Dataset` a :class:`~ddpm.config.DataConfig` describes.

    2-D data sets draw ``n`` points from ``seed``; anything else is an image source.
    """
    name = data_cfg.name
    if is_vector_dataset(name):
        return load_toy2d(name, data_cfg.n, seed, mean=data_cfg.mean, cov=data_cfg.cov)
    from .images import is_image_source, load_image_data

    if not is_image_source(name):
        if "/" in name or "\\" in name or Path(name).suffix:
            raise DataError(f"data path {name} does not exist: check the path (relative to {Path.cwd()})")
        raise DataError(
            f"unknown data set {name!r}: use a 2-D set ({', '.join(TOY2D)}), a built-in image set "
            "(digits, mnist) or the path of an image folder, .npz/.npy file, IDX file or CIFAR-10 binary batches"
        )
    return load_image_data(
        name, split=data_cfg.split, image_size=data_cfg.image_size, channels=data_cfg.channels, alpha=data_cfg.alpha,
        hflip=data_cfg.hflip,
    )
