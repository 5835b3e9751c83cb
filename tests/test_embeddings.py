"""Time embeddings: the sinusoidal positions of DDPM and its reference's variants, and Gaussian
random Fourier features of a continuous time."""

import math

import pytest
import torch

from ddpm.config import ModelConfig
from ddpm.convert.unet2d import unet2d_config
from ddpm.errors import ConfigError
from ddpm.nets import MLP, build_model
from ddpm.nets.embeddings import GaussianFourierEmbedding, SinusoidalEmbedding


def test_sinusoidal_frequencies_follow_the_two_conventions():
    t = torch.tensor([0.0, 7.0, 999.0])
    improved = SinusoidalEmbedding(8)(t)  # 10000^(-i/4)
    reference = SinusoidalEmbedding(8, freq_shift=1)(t)  # the DDPM reference: 10000^(-i/3)
    for i in range(4):
        assert torch.allclose(improved[:, i], torch.sin(t * 10000 ** (-i / 4)), atol=1e-5)
        assert torch.allclose(reference[:, 4 + i], torch.cos(t * 10000 ** (-i / 3)), atol=1e-5)
    flipped = SinusoidalEmbedding(8, flip_sin_to_cos=True)(t)
    assert torch.equal(flipped, torch.cat([improved[:, 4:], improved[:, :4]], dim=1))


def test_fourier_features_are_fixed_seeded_and_continuous():
    a, b = GaussianFourierEmbedding(16), GaussianFourierEmbedding(16)
    assert torch.equal(a.frequencies, b.frequencies) and "frequencies" in a.state_dict()
    assert abs(float(a.frequencies.std()) - 16) < 8  # w ~ N(0, 16^2), eight draws
    t = torch.tensor([0.0, 250.5, 999.0])
    emb = a(t)
    angle = 2 * math.pi * t[:, None] / 1000 * a.frequencies[None, :]
    assert torch.allclose(emb, torch.cat([angle.sin(), angle.cos()], dim=1), atol=1e-5)
    assert not any(p is a.frequencies for p in a.parameters())  # never trained
    near = a(torch.tensor([250.5 + 1e-3]))
    assert (near - emb[1]).abs().max() < 1e-3  # a small change of time, a small change of features


def test_time_embedding_is_a_network_option():
    mlp = build_model(ModelConfig(kind="mlp", time_embedding="fourier"), (2,))
    assert isinstance(mlp, MLP) and isinstance(mlp.time_embed[0], GaussianFourierEmbedding)
    unet = build_model(ModelConfig(kind="unet", unet="tiny", time_embedding="fourier"), (1, 8, 8))
    assert isinstance(unet.time_embedding.features, GaussianFourierEmbedding)
    assert unet(torch.randn(2, 1, 8, 8), torch.tensor([3.0, 4.5])).shape == (2, 1, 8, 8)
    with pytest.raises(ConfigError, match="time_embedding"):
        unet2d_config(unet.config)  # diffusers' UNet2DModel has no such embedding of a step
