"""The likelihood bound (DDPM eq. 5) of ``ddpm.eval.likelihood``: properties, not golden numbers.

The reference models are exact: the optimal eps-prediction for data whose distribution is
known in closed form (a few 8-bit points; the 2-D standard Gaussian). The process is told
nothing about it: it sees an ordinary ``model(x_t, t)``.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm.config import Config
from ddpm.diffusion import GaussianDiffusion, spaced_timesteps
from ddpm.errors import ConfigError
from ddpm.eval import likelihood
from ddpm.eval.likelihood import evaluate_bpd
from ddpm.nets import MLP
from ddpm.runs import Run
from ddpm.schedules import make_betas

T = 100


class ExactPointsEps(torch.nn.Module):
    """The optimal eps for data uniform over ``points`` (K, D) in [-1, 1] (original-chain t):
    E[x_0 | x_t] is the softmax-weighted mean of the points under q(x_t | x_0) = N(sqrt(ab) x_0, (1 - ab) I)."""

    def __init__(self, points, betas):
        super().__init__()
        self.register_buffer("pts", torch.as_tensor(points, dtype=torch.float64).flatten(1))
        self.register_buffer("ab", torch.as_tensor(np.cumprod(1 - np.asarray(betas)), dtype=torch.float64))

    def forward(self, x, t, y=None):
        xf, ab = x.double().flatten(1), self.ab[t.long()][:, None]
        d2 = ((xf[:, None, :] - ab.sqrt()[:, :, None] * self.pts[None]) ** 2).sum(-1)
        x0 = torch.softmax(-d2 / (2 * (1 - ab)), dim=1) @ self.pts
        return ((xf - ab.sqrt() * x0) / (1 - ab).sqrt()).reshape(x.shape)


class ExactGaussianEps(torch.nn.Module):
    """The optimal eps for N(0, I) data: every marginal is N(0, I), E[x_0 | x_t] = sqrt(ab) x_t."""

    def __init__(self, betas):
        super().__init__()
        self.register_buffer("ab", torch.as_tensor(np.cumprod(1 - np.asarray(betas)), dtype=torch.float64))

    def forward(self, x, t, y=None):
        return (1 - self.ab[t.long()][:, None]).sqrt() * x.double()


class Recorder(torch.nn.Module):
    """Wraps a model; records the timesteps and labels it sees and can fail after ``fail_after`` calls."""

    def __init__(self, model, fail_after=None):
        super().__init__()
        self.model, self.fail_after, self.calls, self.ts, self.ys = model, fail_after, 0, set(), []

    def forward(self, x, t, y=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.ts.update(t.tolist())
        if y is not None:
            self.ys.append(y.clone())
        return self.model(x, t)


def points_run(tmp_path, K=3, repeat=4, variance="fixed_small", labels=False) -> tuple[Run, np.ndarray]:
    """A run on 8-bit data uniform over K random points of shape (1, 2, 2), with the exact denoiser."""
    pts = np.random.default_rng(K).integers(0, 256, size=(K, 1, 2, 2), dtype=np.uint8)
    arrays = {"arr_0": np.repeat(pts, repeat, axis=0)}
    if labels:
        arrays["y"] = np.repeat(np.arange(K), repeat)
    np.savez(tmp_path / "points.npz", **arrays)
    cfg = Config()
    cfg.data.name, cfg.diffusion.T, cfg.model.class_conditional = str(tmp_path / "points.npz"), T, labels
    betas = make_betas("linear", T)
    model = ExactPointsEps(torch.from_numpy(pts).double() / 127.5 - 1.0, betas)
    return Run(tmp_path, cfg, GaussianDiffusion(betas, variance=variance), model, (1, 2, 2), K if labels else 0, 7), pts


def vector_run(model=None, variance="fixed_small", name="gaussian", n=4096) -> Run:
    cfg = Config()
    cfg.data.name, cfg.data.n, cfg.diffusion.T = name, n, T
    betas = make_betas("linear", T)
    model = ExactGaussianEps(betas) if model is None else model
    return Run(Path("."), cfg, GaussianDiffusion(betas, variance=variance), model, (2,), 0, 0)


def decoder_floor_bits(pixels: np.ndarray, sigma: float) -> float:
    """Mean -log2 of the eq. 13 decoder N(x_0, sigma^2) at its own centre (exact normal CDF):
    what L_0 costs when the predicted x_0 is exactly right."""
    phi = np.vectorize(lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))))
    half = (1.0 / 255.0) / sigma
    mass = np.where((pixels == 0) | (pixels == 255), phi(half), phi(half) - phi(-half))
    return float(np.mean(-np.log2(mass)))


# ------------------------------------------------------------ exact denoisers
@pytest.mark.parametrize("K", [2, 3, 4])
def test_exact_denoiser_bound_lies_above_the_true_nll_and_close(tmp_path, K):
    run, pts = points_run(tmp_path, K, repeat=256)
    b = evaluate_bpd(run, tmp_path / "out", split="train", batch_size=256)["bpd"]
    true = math.log2(K) / pts[0].size  # bits/dim of the uniform distribution over K points
    assert b["unit"] == "bits/dim" and b["decoder"] == "discretized-8bit" and b["n"] == 256 * K
    assert b["value"] > true
    # L_0: at t=0 the exact model predicts x_0 exactly, so L_0 is the decoder's own floor,
    # -log2 of the mass of the pixel's bin under N(x_0, sigma_1^2) with sigma_1^2 = beta-tilde_1
    # (~3.1 bits/dim at T=100); 1e-3 covers the tanh approximation of the normal CDF (eq. 13 code).
    betas = make_betas("linear", T)
    ab = np.cumprod(1 - betas)
    sigma = math.sqrt(betas[1] * (1 - ab[0]) / (1 - ab[1]))
    assert b["L0"] == pytest.approx(decoder_floor_bits(pts, sigma), abs=1e-3)
    # The rest, L_T + sum L_{t-1}, is in expectation I(x_0; x_1) + sum_t E KL(q(x_{t-1}|x_t) || p(x_{t-1}|x_t))
    # (chain rule of the KL), with I(x_0; x_1) = log2(K) here (the points are far apart at x_1's noise):
    # never below the true NLL (up to Monte Carlo error, 4 standard errors), above it only by
    # what Gaussian reverse kernels lose where the true one is a mixture of the K points:
    # measured 0.02-0.06 bits/dim for K = 2-4 at T=100, so 0.1 is the allowance.
    diffusion_part = b["value"] - b["L0"]
    assert true - 4 * b["std_error"] <= diffusion_part <= true + 0.1
    assert b["value"] - true == pytest.approx(b["L0"], abs=0.1 + 4 * b["std_error"])


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_gaussian_data_bound_matches_its_closed_form_in_nats(tmp_path, variance):
    """For N(0, I) data q(x_{t-1} | x_t) = N(sqrt(alpha_t) x_t, beta_t), and the exact model has that
    mean, so E[bound] = h(x_0) + sum_t KL(N(., beta_t) || N(., sigma_t^2)) with the decoder's KL at t=0
    against Var(x_0 | x_1) = beta_1 (paper's index), in nats/dim."""
    betas = make_betas("linear", T)
    ab = np.cumprod(1 - betas)
    tilde = betas * (1 - np.append(1.0, ab[:-1])) / (1 - ab)
    sigma2 = (tilde if variance == "fixed_small" else betas).copy()
    sigma2[0] = tilde[1]  # the decoder's variance (beta-tilde_1 clipped in, as improved-diffusion)
    r = betas / sigma2
    expected = 0.5 * math.log(2 * math.pi * math.e) + float(np.sum(0.5 * (r - 1 - np.log(r))))
    out = evaluate_bpd(vector_run(variance=variance), tmp_path, batch_size=4096)
    b = out["bpd"]
    assert b["unit"] == "nats/dim" and b["decoder"] == "gaussian" and b["n"] == 4096
    assert b["value"] == pytest.approx(expected, abs=4 * b["std_error"])
    assert b["value"] > 0.5 * math.log(2 * math.pi * math.e) - 4 * b["std_error"]


# ------------------------------------------------------------ bookkeeping
def test_terms_are_finite_sum_to_the_total_and_are_written(tmp_path):
    run, _ = points_run(tmp_path)
    out = evaluate_bpd(run, tmp_path / "out", split="train", batch_size=5)
    b, terms = out["bpd"], out["terms"]
    assert np.all(np.isfinite(terms["vb_mean"])) and math.isfinite(b["value"]) and b["std_error"] > 0
    assert sum(terms["vb_mean"]) + b["prior"] == pytest.approx(b["value"], rel=1e-12)
    assert terms["t"] == list(range(T)) and terms["vb_mean"][0] == pytest.approx(b["L0"], rel=1e-12)
    assert (b["steps"], b["T"], b["checkpoint_step"], b["weights"], b["split"]) == (T, T, 7, "ema", "train")
    assert json.loads((tmp_path / "out" / "bpd.json").read_text()) == out
    with np.load(tmp_path / "out" / "bpd_terms.npz") as z:
        assert z["vb_mean"].shape == z["t"].shape == (T,) and z["total"].shape == (b["n"],)
        assert float(z["total"].mean()) == pytest.approx(b["value"], rel=1e-12)
        assert float(z["prior"]) == b["prior"]
    assert not (tmp_path / "out" / "bpd.partial.npz").exists()


def test_respaced_chain_with_all_steps_equals_the_full_chain(tmp_path):
    run, _ = points_run(tmp_path)
    full = evaluate_bpd(run, tmp_path / "a", split="train")
    respaced = evaluate_bpd(run, tmp_path / "b", split="train", steps=T)
    assert respaced["bpd"]["value"] == pytest.approx(full["bpd"]["value"], rel=1e-9)
    np.testing.assert_allclose(respaced["terms"]["vb_mean"], full["terms"]["vb_mean"], rtol=1e-9, atol=1e-12)
    assert not respaced["bpd"]["notes"]


def test_respaced_chain_is_recorded_and_the_network_sees_original_timesteps(tmp_path):
    run, _ = points_run(tmp_path)
    run.model = Recorder(run.model)
    out = evaluate_bpd(run, tmp_path / "out", split="train", steps=10)
    b = out["bpd"]
    assert (b["steps"], b["T"]) == (10, T) and "shorter-chain" in b["notes"][0]
    assert out["terms"]["t"] == spaced_timesteps(T, 10).tolist()
    assert run.model.ts == set(float(t) for t in spaced_timesteps(T, 10))
    assert sum(out["terms"]["vb_mean"]) + b["prior"] == pytest.approx(b["value"], rel=1e-12)


def test_result_does_not_depend_on_the_batch_size(tmp_path):
    run, _ = points_run(tmp_path)
    a = evaluate_bpd(run, tmp_path / "a", split="train", batch_size=12)
    b = evaluate_bpd(run, tmp_path / "b", split="train", batch_size=5)
    assert b["bpd"]["value"] == pytest.approx(a["bpd"]["value"], rel=1e-12)
    with np.load(tmp_path / "a" / "bpd_terms.npz") as za, np.load(tmp_path / "b" / "bpd_terms.npz") as zb:
        np.testing.assert_allclose(za["total"], zb["total"], rtol=1e-12)
    c = evaluate_bpd(run, tmp_path / "c", split="train", batch_size=5, seed=1)
    assert c["bpd"]["value"] != b["bpd"]["value"]  # the seed does reach the noise


def test_interrupted_evaluation_resumes_to_the_same_result(tmp_path):
    run, _ = points_run(tmp_path)  # 12 examples: batches of 5, 5, 2
    reference = evaluate_bpd(run, tmp_path / "ref", split="train", batch_size=5)
    exact = run.model
    run.model = Recorder(exact, fail_after=T + 3)  # dies inside the second batch
    with pytest.raises(KeyboardInterrupt):
        evaluate_bpd(run, tmp_path / "out", split="train", batch_size=5)
    with np.load(tmp_path / "out" / "bpd.partial.npz") as z:
        assert z["total"].shape == (5,) and z["vb_sum"].shape == (T,)
    run.model = Recorder(exact)
    resumed = evaluate_bpd(run, tmp_path / "out", split="train", batch_size=5)
    assert run.model.calls == 2 * T  # the first batch was not evaluated again
    assert resumed == reference
    assert not (tmp_path / "out" / "bpd.partial.npz").exists()


def test_an_evaluation_killed_after_its_last_batch_only_writes_the_results(tmp_path, monkeypatch):
    run, _ = points_run(tmp_path)
    reference = evaluate_bpd(run, tmp_path / "ref", split="train", batch_size=5)
    finish = likelihood._finish

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the results")

    monkeypatch.setattr(likelihood, "_finish", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate_bpd(run, tmp_path / "out", split="train", batch_size=5)
    monkeypatch.setattr(likelihood, "_finish", finish)
    exact = run.model
    run.model = Recorder(exact)
    assert evaluate_bpd(run, tmp_path / "out", split="train", batch_size=5) == reference
    assert run.model.calls == 0


def test_a_changed_request_starts_over(tmp_path):
    run, _ = points_run(tmp_path)
    exact = run.model
    run.model = Recorder(exact, fail_after=T + 3)
    with pytest.raises(KeyboardInterrupt):
        evaluate_bpd(run, tmp_path / "out", split="train", batch_size=5)
    run.model = Recorder(exact)
    changed = evaluate_bpd(run, tmp_path / "out", split="train", batch_size=5, seed=3)
    assert run.model.calls == 3 * T
    run.model = exact
    assert changed == evaluate_bpd(run, tmp_path / "fresh", split="train", batch_size=5, seed=3)


def test_class_conditional_runs_get_their_labels(tmp_path):
    run, _ = points_run(tmp_path, K=3, repeat=4, labels=True)
    run.model = Recorder(run.model)
    evaluate_bpd(run, tmp_path / "out", split="train", batch_size=5, steps=2)
    seen = torch.cat(run.model.ys[::2])  # two steps per batch, the same labels at each
    assert seen.tolist() == np.repeat(np.arange(3), 4).tolist()


# ------------------------------------------------------------ vectors and errors
def test_vector_run_gives_finite_nats_per_dim_on_a_fresh_test_draw(tmp_path):
    torch.manual_seed(0)
    run = vector_run(MLP(2, width=32, depth=1, time_dim=16), name="moons", n=64)
    out = evaluate_bpd(run, tmp_path, batch_size=32)
    b = out["bpd"]
    assert math.isfinite(b["value"]) and np.all(np.isfinite(out["terms"]["vb_mean"]))
    assert (b["unit"], b["decoder"], b["split"], b["n"]) == ("nats/dim", "gaussian", "test", 64)
    assert sum(out["terms"]["vb_mean"]) + b["prior"] == pytest.approx(b["value"], rel=1e-12)
    test = likelihood._load_split(run.cfg, "test", 64).x
    train = likelihood._load_split(run.cfg, "train", 64).x
    assert test.shape == train.shape == (64, 2) and not torch.equal(test, train)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"decoder": "discretized-8bit"}, "decoder='gaussian'"),
        ({"decoder": "bernoulli"}, "choose one of"),
        ({"n": 0}, "n=0"),
        ({"steps": 0}, "steps=0"),
        ({"steps": T + 1}, f"1..{T}"),
        ({"batch_size": 0}, "batch_size"),
        ({"split": "valid"}, "'train' or 'test'"),
        ({"seed": -1}, "seed"),
        ({"n": 10**6, "split": "train"}, "n <= "),
    ],
)
def test_bad_requests_raise_config_errors_before_any_work(tmp_path, kwargs, match):
    run = vector_run(Recorder(MLP(2, width=8, depth=1, time_dim=8)), n=16)
    with pytest.raises(ConfigError, match=match):
        evaluate_bpd(run, tmp_path / "out", **kwargs)
    assert run.model.calls == 0 and not (tmp_path / "out").exists()
