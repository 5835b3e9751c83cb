"""Properties of the DDPM U-Net noise predictor and its diffusers counterpart."""

import copy
import sys

import pytest
import torch
import torch.nn.functional as F

from ddpm.errors import ConfigError
from ddpm.nets.unet import UNET_PRESETS, SelfAttention, UNet, Upsample, WeightStandardizedConv2d, build_unet

PRESET_INPUTS = {"tiny": (1, 8, 8), "small": (1, 28, 28), "digits": (1, 8, 8)}


def perturbed(model, scale=0.1, seed=0):
    """Add noise to every parameter, so zero-initialised layers no longer hide the rest."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def inputs(batch, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=g), torch.randint(0, 1000, (batch,), generator=g).float()


@pytest.mark.parametrize("preset", sorted(PRESET_INPUTS))
def test_presets_preserve_the_input_shape(preset):
    shape = PRESET_INPUTS[preset]
    model = perturbed(build_unet(preset, shape[0])).eval()
    x, t = inputs(2, shape)
    with torch.no_grad():
        out = model(x, t)
    assert out.shape == x.shape
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_cifar10_preset_is_the_papers_35_7m_parameter_model():
    model = build_unet("cifar10", 3)
    assert abs(model.num_parameters() - 35.7e6) <= 0.1e6  # Ho et al. 2020, appendix B
    assert UNet(in_channels=3).config == model.config  # the defaults are that model
    x, t = inputs(1, (3, 32, 32))
    with torch.no_grad():
        assert model.eval()(x, t).shape == x.shape


def test_tiny_preset_is_small():
    assert build_unet("tiny", 3).num_parameters() < 100_000


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(28, 28), (32, 32), (8, 8), (13, 21)])
@pytest.mark.parametrize("channel_mults", [(1, 2), (1, 1, 2, 2)])
def test_any_size_and_channel_count_comes_back_unchanged(channels, size, channel_mults):
    model = perturbed(build_unet("tiny", channels, channel_mults=channel_mults)).eval()
    x, t = inputs(2, (channels, *size))
    with torch.no_grad():
        out = model(x, t)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_odd_sizes_are_reflect_padded_and_cropped_back():
    model = perturbed(build_unet("tiny", 1, channel_mults=(1, 1, 1, 2))).eval()  # multiple of 8
    x, t = inputs(2, (1, 28, 28))
    with torch.no_grad():
        out = model(x, t)
        padded = model(F.pad(x, (2, 2, 2, 2), mode="reflect"), t)
    torch.testing.assert_close(out, padded[..., 2:30, 2:30])


def test_too_small_inputs_raise_config_error():
    model = build_unet("tiny", 1, channel_mults=(1, 1, 1, 2))  # multiple of 8: 3 -> 8 cannot reflect
    x, t = inputs(1, (1, 3, 3))
    with pytest.raises(ConfigError, match="too small"):
        model(x, t)


def test_out_channels_can_differ_from_in_channels():
    model = build_unet("tiny", 3, out_channels=6)
    x, t = inputs(2, (3, 8, 8))
    assert model(x, t).shape == (2, 6, 8, 8)


def test_output_layer_is_zero_initialised():
    model = build_unet("tiny", 1)
    assert not model.conv_out.weight.any() and not model.conv_out.bias.any()
    x, t = inputs(4, (1, 8, 8))
    assert not model(x, t).any()


def test_output_depends_on_the_timestep():
    model = perturbed(build_unet("tiny", 1)).eval()
    x, _ = inputs(2, (1, 8, 8))
    with torch.no_grad():
        early, late = model(x, torch.tensor([10.0, 10.0])), model(x, torch.tensor([900.0, 900.0]))
    assert not torch.allclose(early, late)


def test_class_labels_change_the_output():
    model = perturbed(build_unet("tiny", 1, num_classes=10)).eval()
    x, t = inputs(2, (1, 8, 8))
    with torch.no_grad():
        out_a = model(x, t, torch.tensor([1, 1]))
        out_b = model(x, t, torch.tensor([2, 2]))
        out_none = model(x, t)
    assert not torch.allclose(out_a, out_b)
    assert not torch.allclose(out_a, out_none)


def test_unconditional_models_ignore_labels():
    model = perturbed(build_unet("tiny", 1)).eval()
    x, t = inputs(2, (1, 8, 8))
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, torch.tensor([1, 2])), model(x, t), rtol=0, atol=0)


VARIANTS = {
    "full": dict(),
    "linear": dict(attention="linear"),
    "weight_standardized": dict(weight_standardized=True),
    "additive_time": dict(scale_shift_norm=False),
    "no_resample_conv": dict(resample_with_conv=False, num_heads=2),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradient_reaches_every_parameter(variant):
    """No unused parameters (DistributedDataParallel requires it)."""
    model = perturbed(build_unet("tiny", 1, num_classes=3, dropout=0.1, **VARIANTS[variant])).train()
    x, t = inputs(4, (1, 8, 8))
    model(x, t, torch.tensor([0, 1, 2, 0])).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_example_is_independent_of_the_batch(variant):
    model = perturbed(build_unet("tiny", 1, **VARIANTS[variant])).eval()
    x, t = inputs(5, (1, 12, 12))
    with torch.no_grad():
        batched = model(x, t)
        single = torch.cat([model(x[i : i + 1], t[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_in_place_sampling_path_matches_the_gradient_path(variant):
    model = perturbed(build_unet("tiny", 1, **VARIANTS[variant])).eval()
    x, t = inputs(3, (1, 8, 8))
    x_before = x.clone()
    with torch.no_grad():
        sampled = model(x, t)
    torch.testing.assert_close(sampled, model(x, t).detach(), rtol=0, atol=0)
    torch.testing.assert_close(x, x_before, rtol=0, atol=0)  # the input is never overwritten


@pytest.mark.parametrize("attention", ["full", "linear"])
def test_channels_last_gives_the_same_output(attention):
    model = perturbed(build_unet("tiny", 3, attention=attention, num_heads=2)).eval()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x, t = inputs(3, (3, 14, 14))
    with torch.no_grad():
        expected = model(x, t)
        out = model_cl(x.contiguous(memory_format=torch.channels_last), t)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("num_heads", [1, 2])
def test_attention_matches_its_formula(memory_format, num_heads):
    torch.manual_seed(0)
    attn = perturbed(SelfAttention(8, num_heads=num_heads, num_groups=4)).to(memory_format=memory_format)
    linear = copy.deepcopy(attn)
    linear.linear = True
    x = torch.randn(2, 8, 3, 5).contiguous(memory_format=memory_format)
    q, k, v = attn.qkv(attn.norm(x)).flatten(2).chunk(3, dim=1)  # (B, C, N) each
    q, k, v = (a.reshape(2, num_heads, 8 // num_heads, 15) for a in (q, k, v))  # (B, heads, d, N)
    d = 8 // num_heads
    weights = torch.einsum("bhdn,bhdm->bhnm", q, k).div(d**0.5).softmax(dim=-1)  # Vaswani et al. eq. 1
    full = torch.einsum("bhnm,bhem->bhen", weights, v)
    context = torch.einsum("bhdm,bhem->bhde", k.softmax(dim=-1), v)  # Shen et al. 2018
    efficient = torch.einsum("bhde,bhdn->bhen", context, q.softmax(dim=-2))
    for module, h in ((attn, full), (linear, efficient)):
        expected = x + attn.proj_out(h.reshape(2, 8, 3, 5))
        torch.testing.assert_close(module(x), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_upsampling_is_nearest_neighbour_interpolation(memory_format):
    up = Upsample(3, with_conv=False)
    x = torch.randn(2, 3, 5, 7).contiguous(memory_format=memory_format).requires_grad_()
    y = up(x)
    assert torch.equal(y, F.interpolate(x, scale_factor=2.0, mode="nearest"))
    g = torch.randn_like(y)
    y.backward(g)  # each input pixel receives the sum of its 2x2 block's gradients
    torch.testing.assert_close(x.grad, F.avg_pool2d(g, 2) * 4)


def test_weight_standardized_conv_ignores_the_scale_and_offset_of_each_filter():
    torch.manual_seed(0)
    conv = WeightStandardizedConv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(10.0)  # variance ~1, so eps = 1e-5 in the standardisation is negligible
    x = torch.randn(2, 3, 6, 6)
    expected = conv(x)
    with torch.no_grad():
        conv.weight.mul_(torch.tensor([1.0, 2.0, 3.0, 10.0])[:, None, None, None]).add_(1.5)
    torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-4)
    w = conv.weight
    standardized = (w - w.mean((1, 2, 3), keepdim=True)) / w.std((1, 2, 3), correction=0, keepdim=True)
    torch.testing.assert_close(conv(x), F.conv2d(x, standardized, conv.bias, padding=1), atol=1e-4, rtol=1e-4)


def test_config_rebuilds_the_same_model():
    model = build_unet("small", 1, num_classes=10)
    rebuilt = UNet(**model.config)
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())  # same parameter names and shapes
    assert model.config["num_classes"] == 10 and model.config["in_channels"] == 1


def attention_levels(levels):
    return [any(block.attn is not None for block in level.blocks) for level in levels]


def test_attention_is_placed_at_the_requested_resolutions():
    small = build_unet("small", 1)  # 28x28: levels 28, 14, 7; attention at 7
    assert attention_levels(small.down) == [False, False, True]
    assert attention_levels(small.up) == [True, False, False]
    cifar = build_unet("cifar10", 3)  # 32x32: attention at 16, the second level
    assert attention_levels(cifar.down) == [False, True, False, False]


@pytest.mark.parametrize(
    "bad",
    [
        dict(attention="sparse"),
        dict(attention_resolutions=(16,)),  # tiny's levels are 8 and 4
        dict(base_channels=0),
        dict(num_classes=0),
        dict(bogus_option=1),
    ],
)
def test_invalid_options_raise_config_error(bad):
    with pytest.raises(ConfigError):
        build_unet("tiny", 1, **bad)


def test_unknown_preset_raises_config_error():
    with pytest.raises(ConfigError, match="tiny"):
        build_unet("huge", 1)


def test_diffusers_unet_preserves_shape_and_matches_our_parameter_count():
    pytest.importorskip("diffusers")
    from ddpm.nets.diffusers_unet import DiffusersUNet

    model = DiffusersUNet(in_channels=1, num_classes=10, **UNET_PRESETS["tiny"]).eval()
    assert model.num_parameters() == build_unet("tiny", 1, num_classes=10).num_parameters()
    x, t = inputs(2, (1, 28, 28))
    with torch.no_grad():
        assert model(x, t).shape == x.shape
        assert model(x, t, torch.tensor([3, 4])).shape == x.shape
    with pytest.raises(ConfigError):
        DiffusersUNet(in_channels=1, **{**UNET_PRESETS["tiny"], "attention": "linear"})


def test_diffusers_unet_without_diffusers_says_how_to_install(monkeypatch):
    from ddpm.nets.diffusers_unet import DiffusersUNet

    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` fail
    with pytest.raises(ConfigError, match=r"pip install 'ddpm\[diffusers\]'"):
        DiffusersUNet(in_channels=1, **UNET_PRESETS["tiny"])
