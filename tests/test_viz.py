"""Pictures: panel choice follows the schedule, trajectories are labelled with their true steps,
and every picture is a readable file of the expected kind."""

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm import GaussianDiffusion, make_betas, sample, viz
from ddpm.viz import _panels, _noise_level, trajectory_timesteps


@pytest.fixture
def process():
    return GaussianDiffusion(make_betas("linear", T=100))


@pytest.mark.parametrize("steps", [None, 1, 7, 100])
def test_trajectory_timesteps_run_from_T_to_0(process, steps):
    t = trajectory_timesteps(process, steps)
    assert len(t) == (steps or 100) + 1
    assert t[0] == 100 and t[-1] == 0
    assert np.all(np.diff(t) < 0)


@pytest.mark.parametrize("T", [7, 100, 1000])
def test_step_count_fixes_the_visited_steps(T):
    # the pictures read S from a trajectory's S + 1 states: every S must visit S distinct steps
    process = GaussianDiffusion(make_betas("linear", T=T))
    assert all(len(trajectory_timesteps(process, S)) == S + 1 for S in range(1, T + 1))


def test_trajectory_matches_sampler_states(process):
    mlp = torch.nn.Linear(2, 2)
    model = lambda x, t: mlp(x)  # noqa: E731
    _, traj = sample(process, model, (2,), range(3), steps=7, return_trajectory=True)
    assert traj.shape[0] == len(trajectory_timesteps(process, 7))


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
    viz.reverse_strip(traj, tmp_path / "r.png", process, reference=x0)
    viz.reverse_gif(traj, tmp_path / "r.gif", process, frames=5)
    for name in ("f.png", "r.png"):
        assert Image.open(tmp_path / name).format == "PNG"
    gif = Image.open(tmp_path / "r.gif")
    expected = len(_panels(_noise_level(process, trajectory_timesteps(process, 10)), 5))
    assert gif.format == "GIF" and gif.n_frames == expected and expected >= 4
    images = torch.rand(11, 4, 1, 8, 8) * 2 - 1
    viz.reverse_gif(images, tmp_path / "i.gif", process, frames=3)
    assert Image.open(tmp_path / "i.gif").n_frames == 3
