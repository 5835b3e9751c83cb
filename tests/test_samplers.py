"""Samplers: seeds, shapes and options; each sampler proven on the exact denoiser of a Gaussian
mixture (no network), against each other, and round trips through inversion."""

import numpy as np
import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.eval.toy_metrics import sliced_wasserstein
from ddpm.nets import MLP
from ddpm.samplers import DETERMINISTIC, SAMPLERS, PerSampleNoise, invert, karras_sigmas, p_sample, sample, sigma_grid
from ddpm.schedules import make_betas

from mixture import ring

ALL = ("ancestral", "ddim", "dpm++2m", "dpm++3m", "euler", "heun")


@pytest.fixture
def setup():
    torch.manual_seed(0)
    return GaussianDiffusion(make_betas("linear", 40)), MLP(2, width=32, depth=2)


@pytest.mark.parametrize("sampler,steps,eta", [("ancestral", None, 0.0), ("ancestral", 7, 0.0),
                                               ("ddim", 10, 0.0), ("ddim", 10, 1.0), ("dpm++", 6, 0.0),
                                               ("dpm++", 6, 1.0), ("dpm++3m", 8, 0.0), ("dpm++3m", 8, 1.0),
                                               ("euler", 6, 0.0), ("heun", 5, 0.0)])
def test_sample_depends_only_on_its_seed(setup, sampler, steps, eta):
    p, net = setup
    a = sample(p, net, (2,), range(100, 110), sampler=sampler, steps=steps, eta=eta, batch_size=10).x
    b = sample(p, net, (2,), range(100, 110), sampler=sampler, steps=steps, eta=eta, batch_size=3).x
    c = sample(p, net, (2,), [105, 106], sampler=sampler, steps=steps, eta=eta).x
    d = sample(p, net, (2,), range(200, 210), sampler=sampler, steps=steps, eta=eta).x
    assert torch.isfinite(a).all() and a.shape == (10, 2) and a.dtype == torch.float32
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(a[5:7], c, atol=1e-6)
    assert not torch.allclose(a, d)


def test_churn_draws_noise_per_seed(setup):
    p, net = setup
    a = sample(p, net, (2,), range(6), sampler="heun", steps=5, churn=2.0, batch_size=6).x
    b = sample(p, net, (2,), range(6), sampler="heun", steps=5, churn=2.0, batch_size=4).x
    c = sample(p, net, (2,), range(6), sampler="heun", steps=5).x
    assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, c)


def test_noise_stream_is_batch_and_chunk_independent():
    one = PerSampleNoise([7], (3,), num_draws=5, device="cpu")
    many = PerSampleNoise([1, 7, 9], (3,), num_draws=5, device="cpu")
    for _ in range(5):
        assert torch.equal(one()[0], many()[1])


def test_deterministic_samplers_are_maps_of_the_initial_noise(setup):
    p, net = setup
    for sampler in DETERMINISTIC:
        x1 = sample(p, net, (2,), [1, 2, 3], sampler=sampler, steps=10).x
        x2 = sample(p, net, (2,), [1, 2, 3], sampler=sampler, steps=10).x
        assert torch.equal(x1, x2), sampler


def test_trajectory_starts_at_noise_and_ends_at_sample(setup):
    p, net = setup
    out = sample(p, net, (2,), range(5), return_trajectory=True)
    assert out.trajectory.shape == (41, 5, 2) and out.nfe == 40
    assert torch.equal(out.trajectory[-1], out.x)
    noise = PerSampleNoise(range(5), (2,), 41, "cpu", torch.float64)()
    assert torch.allclose(out.trajectory[0], noise.float())
    short = sample(p, net, (2,), range(5), sampler="ddim", steps=8, return_trajectory=True)
    assert short.trajectory.shape == (9, 5, 2) and short.nfe == 8
    assert sample(p, net, (2,), range(2), sampler="heun", steps=8).nfe == 15


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


@pytest.mark.parametrize("sampler", ALL)
def test_clipping_bounds_the_prediction(sampler):
    p = GaussianDiffusion(make_betas("linear", 40))
    big = lambda x, t, **k: torch.full_like(x, -50.0)  # noqa: E731 - predicts eps far from data
    x = sample(p, big, (2,), range(4), sampler=sampler, steps=10, clip_denoised=True, device="cpu").x
    assert x.abs().max() <= 1.0 + 1e-6
    y = sample(p, big, (2,), range(4), sampler=sampler, steps=10, clip_denoised=False, device="cpu").x
    assert y.abs().max() > 1.0


@pytest.mark.parametrize("sampler", ALL)
@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_exact_model_reproduces_a_point_mass(sampler, target):
    """With the exact prediction of a point mass at c, every sampler returns c, for every target."""
    p = GaussianDiffusion(make_betas("linear", 100), target=target)
    c = torch.tensor([0.3, -0.5], dtype=torch.float64)

    def exact(x, t, y=None):
        ab = torch.as_tensor(1.0 / (1.0 + p.sigma_at(t.numpy()) ** 2))[:, None]
        eps = (x - ab.sqrt() * c) / (1 - ab).sqrt()
        return {"eps": eps, "x0": c.expand_as(x), "v": ab.sqrt() * eps - (1 - ab).sqrt() * c}[target]

    exact.dtype = torch.float64
    x = sample(p, exact, (2,), range(8), sampler=sampler, steps=10, device="cpu").x
    assert torch.allclose(x, c.float().expand(8, 2), atol=1e-4), sampler


def test_model_left_in_its_training_mode(setup):
    p, net = setup
    net.train()
    sample(p, net, (2,), [0], steps=2)
    assert net.training


def test_bad_sampler_options(setup):
    p, net = setup
    with pytest.raises(ConfigError, match="sampler"):
        sample(p, net, (2,), [0], sampler="lms")
    with pytest.raises(ConfigError, match="steps"):
        sample(p, net, (2,), [0], steps=0)
    with pytest.raises(ConfigError, match="eta"):
        sample(p, net, (2,), [0], sampler="ddim", eta=-1)
    with pytest.raises(ConfigError, match="churn"):
        sample(p, net, (2,), [0], sampler="heun", churn=-1)
    with pytest.raises(ConfigError, match="spacing"):
        sample(p, net, (2,), [0], sampler="ddim", spacing="quadratic")
    for spacing in ("karras", "logsnr"):
        with pytest.raises(ConfigError, match="chain's own steps"):
            sample(p, net, (2,), [0], sampler="ancestral", spacing=spacing)
    with pytest.raises(ConfigError, match="deterministic"):
        invert(p, net, torch.zeros(1, 2), sampler="ancestral")
    with pytest.raises(ConfigError, match="x_T"):
        sample(p, net, (2,), [0, 1], x_T=torch.zeros(3, 2))


def test_class_labels_reach_the_network(setup):
    p, _ = setup
    torch.manual_seed(1)
    net = MLP(2, width=16, depth=1, num_classes=3)
    a = sample(p, net, (2,), range(4), labels=torch.zeros(4, dtype=torch.long)).x
    b = sample(p, net, (2,), range(4), labels=torch.full((4,), 2)).x
    assert not torch.allclose(a, b)
    assert np.isfinite(a.numpy()).all()


# ------------------------------------------------------------------ proofs on an exact denoiser
#: the step counts the README recommends for each sampler (and the tests hold them to)
RECOMMENDED = {"ancestral": 1000, "ddim": 50, "dpm++2m": 20, "dpm++3m": 20, "euler": 50, "heun": 18}


@pytest.fixture(scope="module")
def mixture():
    process = GaussianDiffusion(make_betas("linear", 1000))
    denoiser = ring(process)
    data = denoiser.sample_data(2000, seed=1).numpy()
    floor = sliced_wasserstein(data, denoiser.sample_data(2000, seed=2).numpy())
    return process, denoiser, data, floor


@pytest.mark.parametrize("sampler", ALL)
def test_each_sampler_reproduces_the_mixture(mixture, sampler):
    process, denoiser, data, floor = mixture
    steps = RECOMMENDED[sampler]
    x = sample(process, denoiser, (2,), range(2000), sampler=sampler, steps=steps, batch_size=2000, device="cpu").x
    sw = sliced_wasserstein(x.numpy(), data)
    assert sw < 1.3 * floor, (sampler, steps, sw, floor)


@pytest.mark.parametrize("sampler,step_counts", [("dpm++2m", (20, 50)), ("dpm++3m", (50,))])
def test_sde_dpm_solver_pp_reproduces_the_mixture(mixture, sampler, step_counts):
    """SDE-DPM-Solver++ (eta = 1) on Karras sigmas. The third-order estimate amplifies the SDE's
    noise in the predictions it differences: (3M) needs more steps than (2M) (docs/sampling.md)."""
    process, denoiser, data, floor = mixture
    for steps in step_counts:
        x = sample(process, denoiser, (2,), range(2000), sampler=sampler, steps=steps, eta=1.0, spacing="karras",
                   batch_size=2000, device="cpu").x
        sw = sliced_wasserstein(x.numpy(), data)
        assert sw < 1.3 * floor, (steps, sw, floor)


@pytest.mark.parametrize("sampler", ["ddim", "dpm++2m", "dpm++3m", "euler", "heun"])
def test_error_shrinks_as_steps_grow(mixture, sampler):
    """The deterministic samplers converge: their distance to the 1000-step DDIM solution of the
    same x_T falls with the step count (and fastest for the high-order solvers)."""
    process, denoiser, _, _ = mixture
    reference = sample(process, denoiser, (2,), range(300), sampler="ddim", steps=1000, batch_size=300,
                       device="cpu").x
    errors = []
    for steps in (5, 10, 20, 40):
        x = sample(process, denoiser, (2,), range(300), sampler=sampler, steps=steps, batch_size=300, device="cpu").x
        errors.append(float((x - reference).norm(dim=1).mean()))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    if sampler in ("dpm++2m", "dpm++3m", "heun"):
        assert errors[-1] < 0.05, errors


@pytest.mark.parametrize("sampler,order", [("ddim", 1), ("dpm++2m", 2), ("dpm++3m", 3)])
def test_multistep_solvers_converge_at_their_order(mixture, sampler, order):
    """Halving the step of a grid even in log-SNR cuts the error at sigma_min by 2^order: DDIM is
    first order, DPM-Solver++(2M) second, (3M) third (with the reference implementation's halved
    h^2 x0'' term it would stay second order)."""
    process, denoiser, _, _ = mixture
    sigma_min, sigma_max = process.sigma_at([0, process.num_timesteps - 1])
    x_T = torch.randn(300, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def solve(sampler, steps):  # to sigma_min, without the final step to clean data
        sigmas = np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), steps + 1))
        return SAMPLERS[sampler][0](process, denoiser, x_T, sigmas, None)

    reference = solve("dpm++3m", 4000)
    errors = [float((solve(sampler, n) - reference).norm(dim=1).mean()) for n in (50, 100, 200)]
    orders = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all(np.abs(orders - order) < 0.4), (errors, orders)


@pytest.mark.parametrize("sampler", ["dpm++2m", "dpm++3m", "heun"])
def test_high_order_solvers_agree_with_ddim_at_many_steps(mixture, sampler):
    process, denoiser, _, _ = mixture
    ddim = sample(process, denoiser, (2,), range(200), sampler="ddim", steps=1000, batch_size=200, device="cpu").x
    x = sample(process, denoiser, (2,), range(200), sampler=sampler, steps=250, batch_size=200, device="cpu").x
    assert torch.allclose(x, ddim, atol=0.02), float((x - ddim).abs().max())


def test_ddim_with_eta_1_is_ancestral_sampling_on_the_same_noise():
    process = GaussianDiffusion(make_betas("linear", 100))
    denoiser = ring(process)
    for steps in (None, 17):
        kw = dict(steps=steps, batch_size=64, device="cpu")
        a = sample(process, denoiser, (2,), range(64), sampler="ancestral", **kw, return_trajectory=True)
        d = sample(process, denoiser, (2,), range(64), sampler="ddim", eta=1.0, **kw, return_trajectory=True)
        # compare in float64: run the loops directly on the same float64 noise
        from ddpm.samplers import sample_ancestral, sample_ddim

        sigmas = sigma_grid(process, steps or 100, "linspace")
        noise_a = PerSampleNoise(range(64), (2,), len(sigmas), "cpu", torch.float64)
        noise_d = PerSampleNoise(range(64), (2,), len(sigmas), "cpu", torch.float64)
        x_T = noise_a()
        noise_d()
        xa = sample_ancestral(process, denoiser, x_T, sigmas, noise_a)
        xd = sample_ddim(process, denoiser, x_T, sigmas, noise_d, eta=1.0)
        assert torch.allclose(xa, xd, rtol=0, atol=1e-10), float((xa - xd).abs().max())
        assert torch.allclose(a.x, d.x, atol=1e-5)


def test_logsnr_grid_is_even_in_lambda_between_the_chains_ends():
    """DPM-Solver's "logSNR" steps: lambda = -log sigma evenly spaced from the chain's noisiest
    level to its least noisy, then clean data."""
    process = GaussianDiffusion(make_betas("linear", 1000))
    sigmas = sigma_grid(process, 10, "logsnr")
    assert len(sigmas) == 11 and sigmas[-1] == 0
    assert np.allclose(sigmas[[0, -2]], process.sigma_at([999, 0]), rtol=1e-12)
    h = np.diff(-np.log(sigmas[:-1]))
    assert np.allclose(h, h[0], rtol=1e-9)


def test_a_sigma_range_narrows_the_karras_and_logsnr_grids_and_nothing_else():
    """EDM's sigma_min and sigma_max: the grid's first level and its last before 0, inside the chain's."""
    process = GaussianDiffusion(make_betas("linear", 1000))
    lo, hi = process.sigma_at([0, 999])
    assert np.array_equal(sigma_grid(process, 10, "logsnr", lo, hi), sigma_grid(process, 10, "logsnr"))
    logsnr = sigma_grid(process, 10, "logsnr", 0.05, 20.0)
    assert len(logsnr) == 11 and logsnr[-1] == 0 and np.allclose(logsnr[[0, -2]], [20.0, 0.05], rtol=1e-12)
    assert np.allclose(np.diff(np.log(logsnr[:-1])), np.log(0.05 / 20.0) / 9, rtol=1e-9)
    karras = sigma_grid(process, 10, "karras", sigma_max=20.0)
    assert np.allclose(karras, karras_sigmas(10, lo, 20.0), rtol=1e-12)
    for spacing in ("linspace", "leading", "trailing"):
        with pytest.raises(ConfigError, match="sigma_min and sigma_max bound the karras and logsnr grids"):
            sigma_grid(process, 10, spacing, sigma_min=0.05)
    for bad in ({"sigma_min": lo / 2}, {"sigma_max": 2 * hi}, {"sigma_min": 2.0, "sigma_max": 1.0},
                {"sigma_min": float("nan")}):
        with pytest.raises(ConfigError, match="must satisfy"):
            sigma_grid(process, 10, "logsnr", **bad)


def test_sampling_on_a_sigma_range_starts_there_and_inverts(setup, mixture):
    p, net = setup
    out = sample(p, net, (2,), range(8), sampler="dpm++2m", steps=6, spacing="logsnr", sigma_min=0.1, sigma_max=5.0)
    assert np.allclose(out.sigmas[[0, -2, -1]], [5.0, 0.1, 0.0]) and out.nfe == 6
    assert np.allclose(out.timesteps[0], p.t_at_sigma(5.0) + 1)
    process, denoiser, _, _ = mixture
    x0 = denoiser.sample_data(100, seed=5).float()
    grid = {"sampler": "dpm++2m", "steps": 100, "spacing": "logsnr", "sigma_max": 20.0}
    x_T = invert(process, denoiser, x0, **grid, device="cpu")
    back = sample(process, denoiser, (2,), range(100), **grid, x_T=x_T, device="cpu").x
    assert float((back - x0).norm(dim=1).mean()) < 0.05


def test_ddim_eta_0_is_euler_on_the_same_grid(mixture):
    """DDIM is Euler's method on the probability-flow ODE in x / alpha (EDM sec. 4)."""
    process, denoiser, _, _ = mixture
    for spacing in ("linspace", "trailing", "karras", "logsnr"):
        a = sample(process, denoiser, (2,), range(50), sampler="ddim", steps=12, spacing=spacing, device="cpu").x
        b = sample(process, denoiser, (2,), range(50), sampler="euler", steps=12, spacing=spacing, device="cpu").x
        assert torch.allclose(a, b, atol=1e-5), spacing


@pytest.mark.parametrize("sampler,steps", [("ddim", 200), ("dpm++2m", 100), ("dpm++3m", 100), ("euler", 200),
                                           ("heun", 100)])
def test_inversion_round_trip(mixture, sampler, steps):
    """Data encoded to x_T by the reversed ODE and decoded by the same sampler comes back."""
    process, denoiser, _, _ = mixture
    x0 = denoiser.sample_data(100, seed=5).float()
    x_T = invert(process, denoiser, x0, sampler=sampler, steps=steps, device="cpu")
    assert 0.5 < float(x_T.std()) < 1.5  # noise-like, not the data
    back = sample(process, denoiser, (2,), range(100), sampler=sampler, steps=steps, x_T=x_T, device="cpu").x
    err = float((back - x0).norm(dim=1).mean())
    assert err < 0.05, err


def test_dynamic_thresholding_scales_into_the_data_range():
    """Imagen's dynamic thresholding: x0 clipped at its p-quantile s (at least 1) and divided by s,
    so predictions inside [-1, 1] are untouched and every sample ends inside [-1, 1]."""
    p = GaussianDiffusion(make_betas("linear", 40), target="x0")  # the output is x0 itself
    x_t = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    out = torch.stack([torch.full((1, 4, 4), 0.5), torch.linspace(-4, 4, 16).reshape(1, 4, 4),
                       torch.full((1, 4, 4), -3.0)]).double()
    eps, x0 = p.predictions_from_output(out, x_t, 1.0, 0.5, clip_denoised=0.9)
    assert torch.equal(x0[0], out[0])  # within range: s = 1
    s = torch.quantile(out[1].abs().flatten(), 0.9)
    assert torch.allclose(x0[1], out[1].clamp(-s, s) / s)
    assert torch.allclose(x0[2], torch.full_like(x0[2], -1.0))
    assert torch.allclose(x_t, x0 + 0.5 * eps)  # eps re-derived from the thresholded x0
    p = GaussianDiffusion(make_betas("linear", 40))
    big = lambda x, t, **k: torch.full_like(x, -50.0)  # noqa: E731
    x = sample(p, big, (2,), range(4), sampler="ddim", steps=10, clip_denoised=0.995, device="cpu").x
    assert x.abs().max() <= 1.0 + 1e-6
    with pytest.raises(ConfigError, match="quantile"):
        sample(p, big, (2,), range(4), clip_denoised=1.5)


def test_sigma_range_is_the_noise_of_the_chains_first_and_last_steps():
    process = GaussianDiffusion(make_betas("cosine", 300))
    assert process.sigma_range == tuple(process.sigma_at([0, 299]))
    assert process.sigma_range[0] == pytest.approx(np.sqrt((1 - process.alphas_cumprod[0]) / process.alphas_cumprod[0]))
