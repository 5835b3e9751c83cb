"""Per-sample noise streams: a sample depends on its own seed only.

Each sample owns a CPU ``torch.Generator`` seeded with its seed (EDM's per-seed
generators). Its draws never depend on which other samples share the batch, on
the batch size, or on the device the sampler runs on.
"""

import math

import torch

#: numbers drawn per sample and per refill; fixed so the stream never depends on the batch
CHUNK_NUMEL = 2**18


class PerSampleNoise:
    """Standard-normal noise of shape (B, *shape) per call, row i from generator ``seeds[i]``.

    Draws are made ahead in chunks of steps (one ``randn`` per sample per chunk) so that
    small data (2-D points) does not pay one generator call per sample per step.
    """

    def __init__(self, seeds, shape, num_draws: int, device, dtype=torch.float32):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.shape = tuple(shape)
        self.chunk = max(1, min(num_draws, CHUNK_NUMEL // max(1, math.prod(self.shape))))
        self.device, self.dtype = torch.device(device), dtype
        self._buffer = None
        self._pos = self.chunk

    def __call__(self) -> torch.Tensor:
        if self._pos == self.chunk:
            draws = [torch.randn((self.chunk, *self.shape), generator=g) for g in self.generators]
            self._buffer = torch.stack(draws, dim=1).to(self.device, self.dtype)
            self._pos = 0
        out = self._buffer[self._pos]
        self._pos += 1
        return out
