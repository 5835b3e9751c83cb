"""Time and label embeddings shared by the networks.

Networks receive the timestep ``t`` as a float tensor of shape (B,) holding the
index of the diffusion step in the *original* chain (0 .. T-1), also when a
sampler skips steps. They know nothing else of the diffusion process.
"""

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Transformer sinusoidal position embedding of a scalar time (Vaswani et al. 2017, sec. 3.5).

    ``emb[2i] = sin(t / max_period^(i/half))``, ``emb[2i+1]``-half ``= cos(...)``, as in
    the DDPM reference implementation (``get_timestep_embedding``).
    """

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim < 2:
            raise ValueError("embedding dimension must be at least 2")
        self.dim = dim
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs[None, :]
        emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
        if self.dim % 2:
            emb = torch.nn.functional.pad(emb, (0, 1))
        return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding followed by a two-layer MLP (DDPM U-Net ``temb``)."""

    def __init__(self, base_dim: int, out_dim: int):
        super().__init__()
        self.sinusoidal = SinusoidalEmbedding(base_dim)
        self.mlp = nn.Sequential(nn.Linear(base_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoidal(t))


class LabelEmbedding(nn.Module):
    """Class-label embedding for class-conditional models; label ``num_classes`` is "no label"."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes + 1, dim)

    def forward(self, y: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        return self.embedding(y)
