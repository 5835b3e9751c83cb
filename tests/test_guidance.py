"""Classifier-free guidance: label dropout in training, and guided sampling that reduces to the
unconditional model at scale 0 and to the conditional one at scale 1, for every sampler."""

import pytest
import torch

from ddpm.config import DataConfig, TrainConfig
from ddpm.data import load_dataset
from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.nets import MLP
from ddpm.samplers import ClassifierFreeGuidance, sample
from ddpm.schedules import make_betas
from ddpm.train.trainer import Trainer

SAMPLERS = ("ancestral", "ddim", "dpm++2m", "dpm++3m", "euler", "heun")


@pytest.fixture
def conditional():
    torch.manual_seed(0)
    return GaussianDiffusion(make_betas("linear", 40)), MLP(2, width=32, depth=2, num_classes=3)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_scale_0_is_the_unconditional_model_and_1_the_conditional(conditional, sampler):
    p, net = conditional
    y = torch.tensor([0, 1, 2, 1])
    kw = dict(sampler=sampler, steps=8, device="cpu")
    null = torch.full((4,), 3)
    assert torch.allclose(sample(p, net, (2,), range(4), labels=y, guidance=0.0, null_label=3, **kw).x,
                          sample(p, net, (2,), range(4), labels=null, **kw).x, atol=1e-5)
    assert torch.allclose(sample(p, net, (2,), range(4), labels=y, guidance=1.0, null_label=3, **kw).x,
                          sample(p, net, (2,), range(4), labels=y, **kw).x, atol=1e-5)
    guided = sample(p, net, (2,), range(4), labels=y, guidance=3.0, null_label=3, **kw).x
    assert torch.isfinite(guided).all() and not torch.allclose(guided, sample(p, net, (2,), range(4), labels=y, **kw).x)


def test_guidance_is_one_batched_call_and_extrapolates(conditional):
    _, net = conditional
    calls = []
    net.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    x, t, y = torch.randn(5, 2), torch.full((5,), 10.0), torch.tensor([0, 1, 2, 0, 1])
    out = ClassifierFreeGuidance(net, 2.5, 3)(x, t, y)
    assert calls == [10]
    c, u = net(x, t, y), net(x, t, torch.full((5,), 3))
    assert torch.allclose(out, u + 2.5 * (c - u), atol=1e-6)
    rescaled = ClassifierFreeGuidance(net, 2.5, 3, rescale=1.0)(x, t, y)
    assert torch.allclose(rescaled.std(dim=1), c.std(dim=1), atol=1e-5)  # the conditional output's spread


def test_learned_variance_is_not_guided():
    torch.manual_seed(0)
    net = MLP(2, width=16, depth=1, num_classes=2, out_dim=4)
    x, t, y = torch.randn(3, 2), torch.full((3,), 5.0), torch.tensor([0, 1, 1])
    out = ClassifierFreeGuidance(net, 4.0, 2, learned_variance=True)(x, t, y)
    assert torch.allclose(out[:, 2:], net(x, t, y)[:, 2:])


def test_labels_are_dropped_at_the_asked_rate():
    data = load_dataset(DataConfig(name="digits"))
    p = GaussianDiffusion(make_betas("linear", 10))
    from ddpm.nets.unet import build_unet

    tr = Trainer(p, build_unet("tiny", 1, num_classes=10), data,
                 TrainConfig(steps=1, batch_size=4000, progress=False, label_dropout=0.25), class_conditional=True)
    _, kwargs = tr.next_batch()
    dropped = float((kwargs["y"] == 10).float().mean())
    assert abs(dropped - 0.25) < 0.03
    default = Trainer(p, build_unet("tiny", 1, num_classes=10), data, TrainConfig(steps=1, batch_size=4000,
                      progress=False), class_conditional=True)
    assert default.label_dropout == 0.1


def test_guidance_needs_labels(conditional):
    p, net = conditional
    with pytest.raises(ConfigError, match="labels"):
        sample(p, net, (2,), range(2), guidance=2.0)


def test_conditional_training_and_guided_sampling_from_the_command_line(tmp_path, capsys):
    import numpy as np

    from ddpm.cli import main

    out = tmp_path / "digits"
    assert main(["train", "--data", "digits", "--conditional", "--out", str(out), "--steps", "4", "--quiet",
                 "--set", "model.unet=tiny", "--set", "diffusion.T=20", "--set", "sample.steps=none", "--set", "train.sample_every=0",
                 "--set", "sample.n=4"]) == 0
    s = tmp_path / "s.npz"
    assert main(["sample", str(out), "--n", "6", "--class", "3", "--guidance", "2", "--guidance-rescale", "0.7",
                 "--sampler", "dpm++", "--steps", "5", "--out", str(s), "--quiet"]) == 0
    with np.load(s) as z:
        assert z["arr_0"].shape == (6, 8, 8, 1) and list(z["arr_1"]) == [3] * 6
    grid = tmp_path / "grid.png"
    assert main(["sample", str(out), "--n", "2", "--class", "all", "--steps", "5", "--out", str(s), "--grid",
                 str(grid), "--quiet"]) == 0
    with np.load(s) as z:
        assert list(z["arr_1"]) == [c for c in range(10) for _ in range(2)]
    from PIL import Image

    width, height = Image.open(grid).size
    assert height > 4 * width  # ten rows of two
    capsys.readouterr()
    assert main(["sample", str(out), "--n", "2", "--steps", "5", "--out", str(s), "--quiet"]) == 0
    assert "unconditional model" in capsys.readouterr().out
    assert main(["sample", str(out), "--guidance", "2", "--out", str(s), "--quiet"]) == 1  # no --class: refused
    assert "--guidance needs --class" in capsys.readouterr().err


@pytest.mark.slow
def test_a_conditional_2d_model_draws_the_asked_component(tmp_path):
    """8gaussians is labelled by its component: a guided class-conditional MLP puts the samples of
    class k on the k-th Gaussian (at angle k pi/4), far above the chance of 1/8."""
    import numpy as np

    from ddpm.cli import main

    out = tmp_path / "8g"
    assert main(["train", "--data", "8gaussians", "--conditional", "--out", str(out), "--steps", "1500", "--quiet",
                 "--set", "data.n=4000", "--set", "sample.n=16"]) == 0
    s = tmp_path / "s.npz"
    assert main(["sample", str(out), "--n", "40", "--class", "all", "--guidance", "2", "--sampler", "dpm++",
                 "--steps", "20", "--out", str(s), "--quiet"]) == 0
    with np.load(s) as z:
        x, y = z["arr_0"], z["arr_1"]
    component = np.round((np.arctan2(x[:, 1], x[:, 0]) % (2 * np.pi)) / (np.pi / 4)).astype(int) % 8
    assert np.mean(component == y) > 0.9
