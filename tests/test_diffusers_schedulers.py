"""Our DDIM and DPM-Solver++ steps (its SDE variant too) agree with diffusers' schedulers on the
same model output, timesteps and noise (diffusers is a test dependency)."""

import numpy as np
import pytest
import torch

from ddpm.diffusion import GaussianDiffusion, spaced_timesteps
from ddpm.samplers import sample_ddim, sample_dpmpp_2m

from mixture import ring

diffusers = pytest.importorskip("diffusers")

T = 1000


def _setup(scheduler_cls, **kw):
    scheduler = scheduler_cls(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, **kw)
    process = GaussianDiffusion(scheduler.betas.double().numpy())  # diffusers' float32 betas, exactly
    return scheduler, process, ring(process)


def _run_diffusers(scheduler, model, x, **step_kw):
    for t in scheduler.timesteps:
        eps = model(x, torch.full((x.shape[0],), float(t), dtype=torch.float64))
        x = scheduler.step(eps.float(), t, x.float(), **step_kw).prev_sample.double()
    return x


def _noise():
    raise AssertionError("a deterministic sampler drew noise")


@pytest.mark.parametrize("spacing,steps", [("leading", 10), ("trailing", 10), ("trailing", 25), ("leading", 50)])
def test_ddim_matches_diffusers(spacing, steps):
    scheduler, process, model = _setup(diffusers.DDIMScheduler, clip_sample=False, set_alpha_to_one=True,
                                       timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    # diffusers steps back by T // S: on these spacings that is the next step of the grid
    ours_ts = spaced_timesteps(T, steps, spacing)[::-1]
    assert np.array_equal(scheduler.timesteps.numpy(), ours_ts)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theirs = _run_diffusers(scheduler, model, x_T, eta=0.0)
    sigmas = np.append(process.sigma_at(ours_ts), 0.0)
    ours = sample_ddim(process, model, x_T, sigmas, _noise)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), float((ours - theirs).abs().max())


@pytest.mark.parametrize("spacing,steps", [("linspace", 10), ("trailing", 10), ("leading", 20), ("linspace", 7)])
def test_dpm_solver_pp_2m_matches_diffusers(spacing, steps):
    scheduler, process, model = _setup(diffusers.DPMSolverMultistepScheduler, algorithm_type="dpmsolver++",
                                       solver_order=2, final_sigmas_type="zero", lower_order_final=True,
                                       timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    theirs = _run_diffusers(scheduler, model, x_T)
    # the same timesteps (diffusers' own grid), then to sigma = 0
    sigmas = np.append(process.sigma_at(scheduler.timesteps.numpy()), 0.0)
    ours = sample_dpmpp_2m(process, model, x_T, sigmas, _noise)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), float((ours - theirs).abs().max())


@pytest.mark.parametrize("spacing,steps", [("linspace", 10), ("trailing", 20)])
def test_sde_dpm_solver_pp_2m_matches_diffusers_on_the_same_noise(spacing, steps):
    scheduler, process, model = _setup(diffusers.DPMSolverMultistepScheduler, algorithm_type="sde-dpmsolver++",
                                       solver_order=2, final_sigmas_type="zero", lower_order_final=True,
                                       timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    gen = torch.Generator().manual_seed(2)
    x_T = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    z = [torch.randn(64, 2, generator=gen, dtype=torch.float64) for _ in range(steps)]
    x = x_T
    for i, t in enumerate(scheduler.timesteps):
        eps = model(x, torch.full((x.shape[0],), float(t), dtype=torch.float64))
        x = scheduler.step(eps.float(), t, x.float(), variance_noise=z[i].float()).prev_sample.double()
    sigmas = np.append(process.sigma_at(scheduler.timesteps.numpy()), 0.0)
    drawn = iter(z)
    ours = sample_dpmpp_2m(process, model, x_T, sigmas, lambda: next(drawn), eta=1.0)
    assert torch.allclose(ours, x, atol=1e-4, rtol=1e-4), float((ours - x).abs().max())
    assert next(drawn) is z[-1]  # noise at every step but the last, which returns x0
