"""Pictures: panel choice follows the schedule, trajectories are labelled with their true steps,
and every picture is a readable file of the expected kind."""

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm import GaussianDiffusion, make_betas, sample, viz
from ddpm.viz import _panels, _noise_level


@pytest.fixture
def process():
    return GaussianDiffusion(make_betas("linear", T=100))


@pytest.mark.parametrize("sampler,steps,spacing", [("ancestral", None, None), ("ancestral", 1, None),
                                                   ("ddim", 7, "trailing"), ("ddim", 7, "leading"),
                                                   ("heun", 5, None)])
def test_sample_returns_the_steps_it_visited(process, sampler, steps, spacing):
    mlp = torch.nn.Linear(2, 2)
    model = lambda x, t: mlp(x.float()).to(x.dtype)  # noqa: E731
    out = sample(process, model, (2,), range(3), sampler=sampler, steps=steps, spacing=spacing, return_trajectory=True)
    t = out.timesteps
    assert len(t) == (steps or 100) + 1 == out.trajectory.shape[0]
    assert t[-1] == 0 and np.all(np.diff(t) < 0)
    if spacing != "leading":
        assert t[0] == 100  # the noisiest step of the chain
    if sampler != "heun":
        assert np.all(t == np.round(t))  # the chain's own steps


@pytest.mark.parametrize("T", [7, 100, 1000])
def test_every_step_count_visits_distinct_steps(T):
    from ddpm.samplers import sigma_grid

    process = GaussianDiffusion(make_betas("linear", T=T))
    for spacing in ("linspace", "leading", "trailing", "karras", "logsnr"):
        for S in sorted({1, 2, 3, T // 2, T - 1, T} - {0}):
            sigmas = sigma_grid(process, S, spacing)
            assert len(sigmas) == S + 1 and np.all(np.diff(sigmas) < 0), (spacing, S)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_panels_spread_evenly_in_noise_level(schedule):
    process = GaussianDiffusion(make_betas(schedule, T=200))
    t = np.arange(201)
    noise = _noise_level(process, t)
    idx = _panels(noise, 6)
    assert idx[0] == 0 and idx[-1] == 200
    gaps = np.diff(noise[idx])
    step = (noise[-1] - noise[0]) / 5
    assert np.allclose(gaps, step, atol=0.02)  # one step of the chain changes the noise level by < 0.02
    # evenly spaced t would put most panels where the noise has already hidden the data (linear schedule)
    if schedule == "linear":
        assert np.sum(noise[np.linspace(0, 200, 6).astype(int)] > 0.55) >= 4


def test_strips_and_gif_are_written(process, tmp_path):
    x0 = torch.randn(300, 2) * 0.3
    viz.forward_strip(process, x0, tmp_path / "f.png")
    traj = torch.randn(11, 50, 2)
    timesteps = np.append(np.linspace(100, 10, 10).round(), 0)
    viz.reverse_strip(traj, timesteps, tmp_path / "r.png", process, reference=x0)
    viz.reverse_gif(traj, timesteps, tmp_path / "r.gif", process, frames=5)
    for name in ("f.png", "r.png"):
        assert Image.open(tmp_path / name).format == "PNG"
    gif = Image.open(tmp_path / "r.gif")
    expected = len(_panels(_noise_level(process, timesteps), 5))
    assert gif.format == "GIF" and gif.n_frames == expected and expected >= 4
    images = torch.rand(11, 4, 1, 8, 8) * 2 - 1
    viz.reverse_gif(images, timesteps, tmp_path / "i.gif", process, frames=3)
    assert Image.open(tmp_path / "i.gif").n_frames == 3
