"""The in-memory data set every loader returns and the trainer consumes."""

from dataclasses import dataclass

import torch


@dataclass
class Dataset:
    """A whole data set held in memory.

    ``x`` is float32 (N, D) for vector data, or uint8 (N, C, H, W) for images
    (pixels 0..255). ``y`` holds int64 class labels (N,) when the data has them.
    :meth:`batch` returns model-space tensors: vectors as they are, images scaled
    to [-1, 1] (DDPM sec. 3.3), with random horizontal flips when ``hflip``.
    ``inventory`` records what an image source held before conversion:
    ``{"sizes": {"HxW": count}, "modes": {Pillow mode: count}}`` (:mod:`ddpm.data.summary`).
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    name: str = ""
    classes: list[str] | None = None
    hflip: bool = False
    inventory: dict | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def is_image(self) -> bool:
        return self.x.dtype == torch.uint8

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. (2,) or (1, 28, 28)."""
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return int(self.y.max()) + 1 if self.y is not None else 0

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        """Examples ``idx`` in model space, and their labels (or None)."""
        x = self.x[idx]
        y = None if self.y is None else self.y[idx]
        if not self.is_image:
            return x, y
        x = x.float().div_(127.5).sub_(1.0)
        if self.hflip:
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x[flip] = x[flip].flip(-1)
        return x, y

    def subset(self, idx: torch.Tensor) -> "Dataset":
        return Dataset(self.x[idx], None if self.y is None else self.y[idx], self.name, self.classes, self.hflip)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Model-space images in [-1, 1] to uint8 pixels (rounded, clipped)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
