"""Learned variances and the hybrid objective (Nichol & Dhariwal 2021), and importance-sampled
timesteps for the bound alone."""

import numpy as np
import pytest
import torch

from ddpm.config import DataConfig, TrainConfig
from ddpm.data import load_dataset
from ddpm.diffusion import GaussianDiffusion
from ddpm.nets import MLP
from ddpm.samplers import sample
from ddpm.schedules import make_betas
from ddpm.train.timesteps import ImportanceTimesteps
from ddpm.train.trainer import Trainer

T = 50


class Constant(torch.nn.Module):
    """Outputs a learnable constant mean channel block and variance channel block."""

    def __init__(self, dim=2, mean=0.1, v=0.3):
        super().__init__()
        self.mean = torch.nn.Parameter(torch.full((dim,), mean))
        self.v = torch.nn.Parameter(torch.full((dim,), v))

    def forward(self, x, t, y=None):
        b = x.shape[0]
        return torch.cat([self.mean.expand(b, -1), self.v.expand(b, -1)], dim=1)


def process(**kw):
    return GaussianDiffusion(make_betas("linear", T), variance="learned_range", **kw)


def test_vlb_term_sends_no_gradient_to_the_mean():
    p, net = process(), Constant()
    x0 = torch.randn(16, 2)
    t = torch.randint(0, T, (16,))
    out = p.training_losses(net, x0, t)
    out["vb"].sum().backward()
    assert net.mean.grad is None or torch.count_nonzero(net.mean.grad) == 0
    assert net.v.grad.abs().sum() > 0
    net.zero_grad()
    out = p.training_losses(net, x0, t)
    out["loss"].sum().backward()  # L_simple trains the mean, lambda L_vlb the variance
    assert net.mean.grad.abs().sum() > 0 and net.v.grad.abs().sum() > 0


def test_hybrid_loss_is_simple_plus_lambda_T_vlb():
    p, net = process(vlb_weight=0.01), Constant()
    x0, t, noise = torch.randn(8, 2), torch.randint(0, T, (8,)), torch.randn(8, 2)
    out = p.training_losses(net, x0, t, noise)
    simple = ((net.mean - noise) ** 2).mean(dim=1)
    assert torch.allclose(out["loss"], simple + 0.01 * T * out["vb"], atol=1e-6)
    vlb = GaussianDiffusion(make_betas("linear", T), variance="learned_range", loss="vlb").training_losses(
        net, x0, t, noise)
    assert torch.allclose(vlb["loss"], T * vlb["vb"]) and torch.allclose(vlb["vb"], out["vb"], atol=1e-6)


@pytest.mark.parametrize("v,fixed", [(1.0, "fixed_large"), (-1.0, "fixed_small")])
def test_variance_endpoints_are_beta_and_beta_tilde(v, fixed):
    """v = 1 gives beta_t, v = -1 the posterior's beta-tilde_t (iDDPM eq. 15), on the full chain and
    on a respaced one, whose endpoints are re-derived for the kept steps."""
    full = process()
    steps = [0, 7, 19, 33, 49]
    for p in (full, full.respaced(steps)):
        ref = GaussianDiffusion(p.betas, variance=fixed)
        n = p.num_timesteps
        t = torch.arange(1, n)  # t = 0: beta-tilde is 0 and both use the clipped value
        x = torch.randn(n - 1, 2, dtype=torch.float64)
        out = p.p_mean_variance(Constant(v=v).double(), x, t)
        expected = np.log(p.betas[1:]) if v == 1 else p.posterior_log_variance_clipped[1:]
        assert np.allclose(out["log_variance"][:, 0].detach().numpy(), expected)
        if fixed == "fixed_small":
            assert np.allclose(out["log_variance"][:, 0].detach().numpy(), ref.model_log_variance[1:])


def test_trained_variance_stays_between_beta_tilde_and_beta():
    """Nothing bounds v (as in iDDPM), yet a trained model's variance stays in the range it
    interpolates: within 1% of it at most steps, and at the first steps (where the true reverse
    variance of smooth data is beta_t itself) within 25% above beta_t."""
    torch.manual_seed(0)
    p = GaussianDiffusion(make_betas("linear", 100), variance="learned_range")
    data = load_dataset(DataConfig(name="moons", n=2000), seed=0)
    net = MLP(2, width=64, depth=2, out_dim=4)
    cfg = TrainConfig(steps=600, batch_size=128, lr=2e-3, warmup=20, log_every=100, progress=False)
    tr = Trainer(p, net, data, cfg, seed=0).run()
    x = data.x[:256].double()
    with torch.no_grad():
        for step, slack in ((1, 1.25), (2, 1.25), (5, 1.25), (10, 1.1), (50, 1.01), (99, 1.01)):
            t = torch.full((256,), step)
            x_t = p.q_sample(x, t, torch.randn_like(x))
            var = p.p_mean_variance(tr.ema, x_t, t)["variance"].numpy()
            lo, hi = p.posterior_variance[step], p.betas[step]
            assert var.min() >= lo / slack and var.max() <= hi * slack, (step, var.min(), var.max(), lo, hi)
    x = sample(p, tr.ema, (2,), range(500), steps=20).x
    assert torch.isfinite(x).all() and x.abs().max() < 5


def test_importance_sampler_is_uniform_until_warm_then_follows_the_losses():
    s = ImportanceTimesteps(4, history=3, uniform_prob=0.0)
    assert torch.allclose(s.probabilities(), torch.full((4,), 0.25, dtype=torch.float64))
    from ddpm.train.distributed import DistInfo

    for _ in range(5):  # more than the history: the oldest values are dropped
        s.update(torch.tensor([0, 1, 2, 3]), torch.tensor([1.0, 2.0, 2.0, 4.0]), DistInfo())
    p = s.probabilities()
    assert torch.allclose(p, torch.tensor([1.0, 2.0, 2.0, 4.0], dtype=torch.float64) / 9.0)
    gen = torch.Generator().manual_seed(0)
    t, w = s.sample(40000, "cpu", gen)
    freq = torch.bincount(t, minlength=4).double() / 40000
    assert torch.allclose(freq, p, atol=0.01)
    # the weights 1 / (T p_t) make the weighted mean of L_t an unbiased estimate of its uniform mean
    losses = torch.tensor([1.0, 2.0, 2.0, 4.0])[t]
    assert abs(float((w * losses).mean()) - 2.25) < 0.05


def test_importance_sampled_training_resumes_exactly(tmp_path):
    def make(run_dir):
        torch.manual_seed(0)
        cfg = TrainConfig(steps=30, batch_size=32, lr=1e-3, warmup=5, log_every=10, progress=False,
                          timestep_sampling="importance")
        data = load_dataset(DataConfig(name="moons", n=500), seed=0)
        p = GaussianDiffusion(make_betas("linear", 8), variance="learned_range", loss="vlb")
        return Trainer(p, MLP(2, width=32, depth=2, out_dim=4), data, cfg, run_dir=run_dir, seed=0)

    full = make(tmp_path / "a").run()
    assert full.timesteps.count.min() >= 10  # warmed up: importance sampling took over
    make(tmp_path / "b").run(max_steps=17)
    resumed = make(tmp_path / "b").resume().run()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(full.timesteps.history, resumed.timesteps.history)


def test_skipped_non_finite_steps_do_not_reach_the_timestep_history():
    class NaNOnce(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.calls = MLP(2, width=16, depth=1, out_dim=4), 0

        def forward(self, x, t, y=None):
            self.calls += 1
            out = self.net(x, t)
            return out * float("nan") if self.calls == 2 else out

    torch.manual_seed(0)
    cfg = TrainConfig(steps=3, batch_size=16, progress=False, timestep_sampling="importance")
    data = load_dataset(DataConfig(name="moons", n=200), seed=0)
    p = GaussianDiffusion(make_betas("linear", 8), variance="learned_range", loss="vlb")
    tr = Trainer(p, NaNOnce(), data, cfg, seed=0).run()
    assert tr.step == 3 and int(tr.timesteps.count.sum()) == 3 * 16  # the NaN batch was skipped, not recorded
    assert torch.isfinite(tr.timesteps.history).all()
