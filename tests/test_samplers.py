import numpy as np
import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.nets import MLP
from ddpm.samplers import PerSampleNoise, p_sample, sample
from ddpm.schedules import make_betas


@pytest.fixture
def setup():
    torch.manual_seed(0)
    return GaussianDiffusion(make_betas("linear", 40)), MLP(2, width=32, depth=2)


@pytest.mark.parametrize("sampler,steps,eta", [("ancestral", None, 0.0), ("ancestral", 7, 0.0),
                                               ("ddim", 10, 0.0), ("ddim", 10, 1.0)])
def test_sample_depends_only_on_its_seed(setup, sampler, steps, eta):
    p, net = setup
    a = sample(p, net, (2,), range(100, 110), sampler=sampler, steps=steps, eta=eta, batch_size=10)
    b = sample(p, net, (2,), range(100, 110), sampler=sampler, steps=steps, eta=eta, batch_size=3)
    c = sample(p, net, (2,), [105, 106], sampler=sampler, steps=steps, eta=eta)
    d = sample(p, net, (2,), range(200, 210), sampler=sampler, steps=steps, eta=eta)
    assert torch.isfinite(a).all() and a.shape == (10, 2) and a.dtype == torch.float32
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(a[5:7], c, atol=1e-6)
    assert not torch.allclose(a, d)


def test_noise_stream_is_batch_and_chunk_independent():
    one = PerSampleNoise([7], (3,), num_draws=5, device="cpu")
    many = PerSampleNoise([1, 7, 9], (3,), num_draws=5, device="cpu")
    for _ in range(5):
        assert torch.equal(one()[0], many()[1])


def test_ddim_eta0_is_deterministic_map_of_the_initial_noise(setup):
    p, net = setup
    x1 = sample(p, net, (2,), [1, 2, 3], sampler="ddim", steps=10)
    x2 = sample(p, net, (2,), [1, 2, 3], sampler="ddim", steps=10)
    assert torch.equal(x1, x2)


def test_trajectory_starts_at_noise_and_ends_at_sample(setup):
    p, net = setup
    x, traj = sample(p, net, (2,), range(5), return_trajectory=True)
    assert traj.shape == (41, 5, 2)
    assert torch.equal(traj[-1], x)
    noise = PerSampleNoise(range(5), (2,), 41, "cpu", torch.float64)()
    assert torch.allclose(traj[0], noise.float())
    _, short = sample(p, net, (2,), range(5), sampler="ddim", steps=8, return_trajectory=True)
    assert short.shape == (9, 5, 2)


def test_last_ancestral_step_adds_no_noise(setup):
    p, net = setup
    x = torch.randn(4, 2, dtype=torch.float64)
    t0 = torch.zeros(4, dtype=torch.long)
    a, _ = p_sample(p, net, x, t0, torch.randn(4, 2, dtype=torch.float64))
    b, _ = p_sample(p, net, x, t0, torch.randn(4, 2, dtype=torch.float64))
    assert torch.equal(a, b)
    t5 = torch.full((4,), 5)
    c, _ = p_sample(p, net, x, t5, torch.randn(4, 2, dtype=torch.float64))
    d, _ = p_sample(p, net, x, t5, torch.randn(4, 2, dtype=torch.float64))
    assert not torch.allclose(c, d)


def test_clipping_bounds_the_prediction(setup):
    p, _ = setup
    big = lambda x, t, **k: torch.full_like(x, -50.0)  # noqa: E731 - predicts eps far from data
    x = sample(p, big, (2,), range(4), clip_denoised=True, device="cpu")
    assert x.abs().max() <= 1.0 + 1e-6
    y = sample(p, big, (2,), range(4), clip_denoised=False, device="cpu")
    assert y.abs().max() > 1.0


def test_exact_model_reproduces_a_point_mass():
    """With the exact eps of a point mass at c, every sampler returns c."""
    p = GaussianDiffusion(make_betas("linear", 100))
    c = torch.tensor([0.3, -0.5])

    def eps_star(x, t, y=None):
        ab = torch.as_tensor(p.alphas_cumprod, dtype=x.dtype)[t.long()][:, None]
        return (x - ab.sqrt() * c) / (1 - ab).sqrt()

    for sampler, steps in (("ancestral", None), ("ancestral", 10), ("ddim", 5)):
        x = sample(p, eps_star, (2,), range(8), sampler=sampler, steps=steps, device="cpu")
        assert torch.allclose(x, c.expand(8, 2), atol=1e-4), sampler


def test_model_left_in_its_training_mode(setup):
    p, net = setup
    net.train()
    sample(p, net, (2,), [0], steps=2)
    assert net.training


def test_bad_sampler_options(setup):
    p, net = setup
    with pytest.raises(ConfigError, match="sampler"):
        sample(p, net, (2,), [0], sampler="euler")
    with pytest.raises(ConfigError, match="steps"):
        sample(p, net, (2,), [0], steps=0)
    with pytest.raises(ConfigError, match="eta"):
        sample(p, net, (2,), [0], sampler="ddim", eta=-1)


def test_class_labels_reach_the_network(setup):
    p, _ = setup
    torch.manual_seed(1)
    net = MLP(2, width=16, depth=1, num_classes=3)
    a = sample(p, net, (2,), range(4), labels=torch.zeros(4, dtype=torch.long))
    b = sample(p, net, (2,), range(4), labels=torch.full((4,), 2))
    assert not torch.allclose(a, b)
    assert np.isfinite(a.numpy()).all()
