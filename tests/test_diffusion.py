import warnings

import numpy as np
import pytest
import torch

from ddpm.diffusion import SCHEDULE_ARRAYS, GaussianDiffusion, spaced_timesteps
from ddpm.errors import ConfigError
from ddpm.schedules import make_betas


def process(T=20, schedule="linear", **kw):
    return GaussianDiffusion(make_betas(schedule, T), **kw)


class Oracle(torch.nn.Module):
    """Outputs the exact training target for known (x0, eps): what a perfect network would."""

    def __init__(self, proc, x0, eps, t):
        super().__init__()
        self.target = proc.training_target(x0, eps, t).float()

    def forward(self, x, t, y=None):
        return self.target


def test_closed_form_equals_iterating_the_chain_exactly():
    p = process(T=30, schedule="cosine")
    x0 = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros_like(x0)
    for i in range(p.num_timesteps):
        b = p.betas[i]
        mean, var = np.sqrt(1 - b) * mean, (1 - b) * var + b  # q(x_t | x_{t-1}), DDPM eq. 2
        m, v, logv = p.q_mean_variance(x0, torch.tensor([i]))
        assert torch.allclose(m, mean, rtol=1e-12) and torch.allclose(v, var, rtol=1e-12)
        assert torch.allclose(logv, torch.log(var), rtol=1e-10)


def test_closed_form_sampling_matches_simulated_chain_moments():
    p = process(T=25)
    n = 200_000
    gen = torch.Generator().manual_seed(1)
    x0 = torch.full((n, 1), 0.8, dtype=torch.float64)
    x = x0.clone()
    for i in range(p.num_timesteps):
        b = p.betas[i]
        x = np.sqrt(1 - b) * x + np.sqrt(b) * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    t = torch.full((n,), p.num_timesteps - 1)
    direct = p.q_sample(x0, t, torch.randn(x0.shape, generator=gen, dtype=torch.float64))
    se = 4 / np.sqrt(n)
    assert abs(x.mean() - direct.mean()) < 2 * se
    assert abs(x.std() - direct.std()) < 2 * se
    assert abs(direct.mean() - 0.8 * np.sqrt(p.alphas_cumprod[-1])) < se


def test_posterior_matches_bayes_rule_eq_6_7():
    p = process(T=40)
    gen = torch.Generator().manual_seed(0)
    x0, xt = torch.randn(8, 3, generator=gen, dtype=torch.float64), torch.randn(8, 3, generator=gen, dtype=torch.float64)
    t = torch.arange(1, 9) * 4
    mean, var, logvar = p.q_posterior_mean_variance(x0, xt, t)
    b = torch.tensor(p.betas)[t][:, None]
    ab_prev = torch.tensor(p.alphas_cumprod_prev)[t][:, None]
    # product of q(x_t | x_{t-1}) and q(x_{t-1} | x_0), both Gaussian in x_{t-1}
    precision = (1 - b) / b + 1 / (1 - ab_prev)
    expected_mean = (torch.sqrt(1 - b) / b * xt + torch.sqrt(ab_prev) / (1 - ab_prev) * x0) / precision
    assert torch.allclose(mean, expected_mean, rtol=1e-10)
    assert torch.allclose(var, (1 / precision).expand_as(var), rtol=1e-10)
    assert torch.allclose(logvar, torch.log(var), rtol=1e-10)


def test_posterior_at_t0_is_x0():
    p = process()
    x0, xt = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    mean, var, _ = p.q_posterior_mean_variance(x0, xt, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(mean, x0) and torch.all(var == 0)


@pytest.mark.parametrize("T", [10, 1000])
def test_conversions_round_trip(T):
    p = process(T=T)
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(64, 2, generator=gen, dtype=torch.float64), torch.randn(64, 2, generator=gen, dtype=torch.float64)
    t = torch.randint(0, T, (64,), generator=gen)
    xt = p.q_sample(x0, t, eps)
    assert torch.allclose(p.predict_start_from_noise(xt, t, eps), x0, atol=1e-8)
    assert torch.allclose(p.predict_noise_from_start(xt, t, x0), eps, atol=1e-6 if T == 1000 else 1e-9)
    assert torch.allclose(p.predict_start_from_v(xt, t, p.get_v(x0, eps, t)), x0, atol=1e-10)


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_model_predictions_recover_truth_from_a_perfect_network(target):
    p = process(T=50, target=target)
    gen = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(16, 2, generator=gen, dtype=torch.float64), torch.randn(16, 2, generator=gen, dtype=torch.float64)
    t = torch.randint(1, 49, (16,), generator=gen)  # away from the ends where x0<->eps is ill-conditioned
    xt = p.q_sample(x0, t, eps)
    e_hat, x_hat = p.model_predictions(Oracle(p, x0, eps, t), xt, t)
    assert torch.allclose(x_hat, x0, atol=1e-4) and torch.allclose(e_hat, eps, atol=1e-4)


def test_p_mean_is_ddpm_eq_11_for_eps_networks():
    p = process(T=50)
    x, t = torch.randn(6, 2, dtype=torch.float64), torch.tensor([1, 5, 10, 20, 40, 49])
    net = lambda x, t, **k: torch.sin(x) * (1 + t[:, None] / 50)  # noqa: E731
    out = p.p_mean_variance(net, x, t)
    eps = net(x.float(), t.float()).double()
    a, b = torch.as_tensor(1 - p.betas)[t][:, None], torch.tensor(p.betas)[t][:, None]
    ab = torch.tensor(p.alphas_cumprod)[t][:, None]
    expected = (x - b / torch.sqrt(1 - ab) * eps) / torch.sqrt(a)
    assert torch.allclose(out["mean"], expected, atol=1e-6)


def test_variances_are_beta_tilde_and_beta():
    small, large = process(variance="fixed_small"), process(variance="fixed_large")
    x, t = torch.zeros(3, 2, dtype=torch.float64), torch.tensor([1, 7, 19])
    net = lambda x, t, **k: torch.zeros_like(x)  # noqa: E731
    assert torch.allclose(small.p_mean_variance(net, x, t)["variance"][:, 0], torch.as_tensor(small.posterior_variance)[t])
    assert torch.allclose(large.p_mean_variance(net, x, t)["variance"][:, 0], torch.as_tensor(large.betas)[t])
    assert np.all(small.posterior_variance[1:] < small.betas[1:])


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
@pytest.mark.parametrize("gamma", [None, 5.0])
def test_training_losses_are_finite_per_example(tiny_eps, target, loss, gamma):
    p = process(T=100, target=target, loss=loss, min_snr_gamma=gamma)
    x0 = torch.randn(32, 2)
    t = torch.randint(0, 100, (32,))
    out = p.training_losses(tiny_eps, x0, t)["loss"]
    assert out.shape == (32,) and torch.isfinite(out).all() and (out >= 0).all()
    out.mean().backward()
    assert all(torch.isfinite(q.grad).all() for q in tiny_eps.parameters())


def test_perfect_network_has_zero_loss():
    for target in ("eps", "x0", "v"):
        p = process(T=50, target=target)
        x0, eps, t = torch.randn(8, 2), torch.randn(8, 2), torch.randint(0, 50, (8,))
        loss = p.training_losses(Oracle(p, x0, eps, t), x0, t, eps)["loss"]
        assert torch.allclose(loss, torch.zeros(8), atol=1e-10)


def test_min_snr_weights():
    p = process(T=100, min_snr_gamma=5.0)
    t = torch.arange(100)
    snr = torch.tensor(p.snr)
    w = p.loss_weight(t, torch.zeros(100, 2, dtype=torch.float64))
    assert torch.allclose(w, torch.clamp(snr, max=5.0) / snr)
    assert torch.all(w <= 1) and w[-1] == 1  # noisiest steps keep full weight
    pv = process(T=100, target="v", min_snr_gamma=5.0)
    assert torch.allclose(pv.loss_weight(t, w[:, None]), torch.clamp(snr, max=5.0) / (snr + 1))


def test_vb_term_is_zero_for_the_true_posterior_and_bound_sums():
    p = process(T=10)
    x0, eps = torch.rand(4, 3, dtype=torch.float64) * 2 - 1, torch.randn(4, 3, dtype=torch.float64)
    t = torch.full((4,), 5)
    xt = p.q_sample(x0, t, eps)
    kl = p.vb_terms_bpd(Oracle(p, x0.float(), eps.float(), t), x0, xt, t)["output"]
    assert torch.allclose(kl, torch.zeros(4, dtype=torch.float64), atol=1e-5)
    net = lambda x, t, **k: torch.zeros_like(x)  # noqa: E731
    out = p.calc_bpd_loop(net, x0, generator=torch.Generator().manual_seed(0))
    assert out["vb"].shape == (4, 10) and torch.isfinite(out["total_bpd"]).all()
    assert torch.allclose(out["total_bpd"], out["vb"].sum(1) + out["prior_bpd"])
    assert (out["vb"] >= -1e-9).all() and (out["prior_bpd"] >= 0).all()


def test_prior_term_is_small_when_chain_reaches_noise():
    p = process(T=1000)
    assert p.prior_bpd(torch.ones(2, 5, dtype=torch.float64)).max() < 1e-4


def test_respacing_keeps_alpha_bar_and_maps_timesteps():
    p = process(T=1000)
    steps = spaced_timesteps(1000, 50)
    assert steps[0] == 0 and steps[-1] == 999 and len(steps) == 50
    r = p.respaced(steps)
    assert r.num_timesteps == 50
    assert np.allclose(r.alphas_cumprod, p.alphas_cumprod[steps], rtol=1e-12)
    assert torch.equal(r.model_timesteps(torch.tensor([0, 49])), torch.tensor([0.0, 999.0]))
    full = p.respaced(range(1000))
    assert np.allclose(full.betas, p.betas, rtol=1e-9)


def test_spaced_timesteps_always_start_at_the_noisiest_step():
    for T in (10, 100, 1000):
        for k in (1, 2, 3, 7, T):
            s = spaced_timesteps(T, k)
            assert s[-1] == T - 1 and len(s) == k and len(np.unique(s)) == k
            if k > 1:
                assert s[0] == 0
    with pytest.raises(ConfigError):
        spaced_timesteps(10, 11)


def test_invalid_options_raise_config_error():
    with pytest.raises(ConfigError, match="target"):
        process(target="score")
    with pytest.raises(ConfigError, match="variance"):
        process(variance="learned")
    with pytest.raises(ConfigError, match="loss"):
        process(loss="l3")
    with pytest.raises(ConfigError, match="min_snr_gamma"):
        process(min_snr_gamma=-1.0)


def test_every_schedule_gives_finite_constants():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("linear", "cosine", "quadratic", "sigmoid"):
            for T in (1, 2, 50, 1000):
                p = GaussianDiffusion(make_betas(name, T))
                assert all(np.all(np.isfinite(getattr(p, k))) for k in SCHEDULE_ARRAYS)


def test_schedule_arrays_are_public_and_read_only():
    p = process()
    assert isinstance(p.alphas_cumprod, np.ndarray) and p.alphas_cumprod.dtype == np.float64
    with pytest.raises(ValueError):
        p.betas[0] = 0.5
    t = torch.tensor([0, 5, 9])
    x = torch.zeros(3, 1, 4, 4, dtype=torch.float32)
    c = p.extract("alphas_cumprod", t, x)
    assert c.shape == (3, 1, 1, 1) and c.dtype == torch.float32
    assert np.allclose(c.flatten().numpy(), p.alphas_cumprod[[0, 5, 9]])
