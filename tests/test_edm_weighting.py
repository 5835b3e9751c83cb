"""EDM's training noise levels and loss weighting on a DDPM chain (train.timestep_sampling=edm)."""

import math

import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.schedules import make_betas
from ddpm.train.timesteps import EDMTimesteps

from test_trainer import assert_same_weights, make


def sigmas(process) -> torch.Tensor:
    """sigma_t = sqrt((1 - alpha-bar_t) / alpha-bar_t), from alpha-bar itself."""
    a = torch.tensor(process.alphas_cumprod, dtype=torch.float64)
    return ((1 - a) / a).sqrt()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_steps_are_drawn_with_the_log_normal_mass_of_their_noise_levels(schedule):
    process = GaussianDiffusion(make_betas(schedule, 1000))
    edm = EDMTimesteps(process)
    assert edm.p.sum().item() == pytest.approx(1.0, abs=1e-12) and (edm.p >= 0).all()
    log_sigma = sigmas(process).log()
    within = (log_sigma - EDMTimesteps.P_MEAN).abs() <= EDMTimesteps.P_STD
    assert edm.p[within].sum().item() == pytest.approx(math.erf(1 / math.sqrt(2)), abs=0.01)  # 68.3 %
    t, w = edm.sample(100_000, "cpu", torch.Generator().manual_seed(0))
    assert within[t].double().mean().item() == pytest.approx(0.683, abs=0.01)
    torch.testing.assert_close(w.double(), edm.weights[t], rtol=1e-6, atol=0)
    assert (edm.p * edm.weights).sum().item() == pytest.approx(1.0)


def test_every_target_trains_edms_weighted_denoising_error():
    """loss(target) * weight = c * lambda(sigma) ||D - x_0||^2 with one constant c per target, for
    any prediction, at every step up to sigma_max; D is the prediction's x_0."""
    torch.manual_seed(0)
    n = 400
    x0, noise, guess = torch.randn(n, 5, dtype=torch.float64), torch.randn(n, 5, dtype=torch.float64), torch.randn(n, 5, dtype=torch.float64)
    for target in ("eps", "x0", "v"):
        process = GaussianDiffusion(make_betas("linear", 1000), target=target)
        sigma = sigmas(process)
        t = torch.randint(0, 1000, (n,))
        t = t[sigma[t] <= EDMTimesteps.SIGMA_MAX]
        a = torch.tensor(process.alphas_cumprod, dtype=torch.float64)[t, None]
        x_t = a.sqrt() * x0[: len(t)] + (1 - a).sqrt() * noise[: len(t)]
        d = guess[: len(t)]  # the denoiser's x_0, and the same prediction in the target's terms:
        eps_hat = (x_t - a.sqrt() * d) / (1 - a).sqrt()
        pred = {"eps": eps_hat, "x0": d, "v": a.sqrt() * eps_hat - (1 - a).sqrt() * d}[target]
        true = process.training_target(x0[: len(t)], noise[: len(t)], t)
        weighted = ((pred - true) ** 2).sum(1) * EDMTimesteps(process).weights[t]
        s2 = sigma[t] ** 2
        lam = (s2 + 0.25) / (s2 * 0.25)
        ratio = weighted / (lam * ((d - x0[: len(t)]) ** 2).sum(1))
        torch.testing.assert_close(ratio, ratio.mean().expand_as(ratio), rtol=1e-9, atol=0)


def test_training_with_edm_weighting_runs_and_resumes_exactly(tmp_path):
    full = make(run_dir=tmp_path / "a", steps=30, timestep_sampling="edm").run()
    assert all(math.isfinite(r["loss"]) for r in full.history if "loss" in r)
    make(run_dir=tmp_path / "b", steps=30, timestep_sampling="edm").run(max_steps=12)
    second = make(seed=5, run_dir=tmp_path / "b", steps=30, timestep_sampling="edm").resume()
    second.run()
    assert_same_weights(full, second)


@pytest.mark.parametrize("options", [dict(variance="learned_range"), dict(loss="vlb", variance="learned_range"),
                                     dict(min_snr_gamma=5.0)])
def test_other_weightings_are_refused(options):
    with pytest.raises(ConfigError, match="timestep_sampling=edm"):
        EDMTimesteps(GaussianDiffusion(make_betas("linear", 100), **options))
