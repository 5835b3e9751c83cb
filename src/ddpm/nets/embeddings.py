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

    ``emb = [sin(t f_i), cos(t f_i)]`` with ``f_i = max_period^(-i / (half - freq_shift))``,
    i = 0 .. half-1. ``freq_shift=0`` is improved-diffusion's ``timestep_embedding``;
    ``freq_shift=1`` is the DDPM reference's ``get_timestep_embedding`` (``log(10000) /
    (half_dim - 1)``). ``flip_sin_to_cos`` puts the cosines first. Both are named as in
    diffusers' ``get_timestep_embedding``, which a converted ``UNet2DModel`` uses.
    """

    def __init__(self, dim: int, max_period: float = 10000.0, freq_shift: float = 0.0,
                 flip_sin_to_cos: bool = False):
        super().__init__()
        if dim < 2:
            raise ValueError("embedding dimension must be at least 2")
        self.dim = dim
        self.flip_sin_to_cos = flip_sin_to_cos
        half = dim // 2
        exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32) / (half - freq_shift)
        self.register_buffer("freqs", torch.exp(exponent), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs[None, :]
        parts = [torch.cos(args), torch.sin(args)] if self.flip_sin_to_cos else [torch.sin(args), torch.cos(args)]
        emb = torch.cat(parts, dim=-1)
        if self.dim % 2:
            emb = torch.nn.functional.pad(emb, (0, 1))
        return emb


class GaussianFourierEmbedding(nn.Module):
    """Gaussian random Fourier features of a continuous time (Tancik et al. 2020; the
    ``GaussianFourierProjection`` of Song et al. 2021, score SDEs, appendix H.1).

    ``emb = [sin(2 pi w t / 1000), cos(2 pi w t / 1000)]`` with ``dim // 2`` frequencies
    ``w ~ N(0, scale^2)`` drawn once from a fixed seed and kept in the state dict, never
    trained. Steps are divided by 1000 (DDPM's T), so with scale 16 the features span
    periods from the whole chain down to a few steps; a fractional step (EDM's samplers
    evaluate between training steps) is embedded as naturally as a whole one, where the
    sinusoidal embedding of discrete positions was made for integers.
    """

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        if dim < 2:
            raise ValueError("embedding dimension must be at least 2")
        self.dim = dim
        w = torch.randn(dim // 2, generator=torch.Generator().manual_seed(seed)) * scale
        self.register_buffer("frequencies", w)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = (2 * math.pi / 1000.0) * t.float()[:, None] * self.frequencies[None, :]
        emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
        return torch.nn.functional.pad(emb, (0, self.dim % 2))


#: ``model.time_embedding`` choices
TIME_EMBEDDINGS = ("sinusoidal", "fourier")


def time_features(kind: str, dim: int, freq_shift: float = 0.0, flip_sin_to_cos: bool = False) -> nn.Module:
    """The fixed (untrained) embedding of a time: ``sinusoidal`` positions or ``fourier`` features."""
    if kind == "fourier":
        return GaussianFourierEmbedding(dim)
    if kind != "sinusoidal":
        raise ValueError(f"time embedding {kind!r} is not one of {TIME_EMBEDDINGS}")
    return SinusoidalEmbedding(dim, freq_shift=freq_shift, flip_sin_to_cos=flip_sin_to_cos)


class TimeEmbedding(nn.Module):
    """Sinusoidal (or Fourier) features followed by a two-layer MLP (DDPM U-Net ``temb``)."""

    def __init__(self, base_dim: int, out_dim: int, freq_shift: float = 0.0, flip_sin_to_cos: bool = False,
                 kind: str = "sinusoidal"):
        super().__init__()
        self.features = time_features(kind, base_dim, freq_shift, flip_sin_to_cos)
        self.mlp = nn.Sequential(nn.Linear(base_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(t))


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
