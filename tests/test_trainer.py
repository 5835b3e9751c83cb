import json

import pytest
import torch
from safetensors.torch import load_file

from ddpm.config import TrainConfig
from ddpm.data import load_dataset
from ddpm.config import DataConfig
from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.nets import MLP
from ddpm.schedules import make_betas
from ddpm.train.checkpoint import latest_checkpoint, list_checkpoints
from ddpm.train.trainer import Trainer, power_function_exponent


class FakeClock:
    """A clock that only the work moves: each network evaluation takes ``seconds`` (a machine of
    exactly known speed, whatever the real one is doing)."""

    def __init__(self, seconds=0.5):
        self.t, self.seconds = 0.0, seconds

    def __call__(self):
        return self.t


class Timed(torch.nn.Module):
    def __init__(self, net, clock):
        super().__init__()
        self.net, self.clock = net, clock

    def forward(self, x, t, y=None):
        self.clock.t += self.clock.seconds
        return self.net(x, t)


def make(seed=0, run_dir=None, clock=None, started=None, **train):
    torch.manual_seed(seed)
    cfg = TrainConfig(**{"steps": 40, "batch_size": 32, "lr": 1e-3, "warmup": 5, "log_every": 10,
                         "progress": False, **train})
    data = load_dataset(DataConfig(name="moons", n=500), seed=0)
    net = MLP(2, width=32, depth=2)
    if clock is None:
        return Trainer(GaussianDiffusion(make_betas("linear", 50)), net, data, cfg, run_dir=run_dir, seed=0)
    return Trainer(GaussianDiffusion(make_betas("linear", 50)), Timed(net, clock), data, cfg, run_dir=run_dir,
                   seed=0, clock=clock, started=started)


def assert_same_weights(a: Trainer, b: Trainer) -> None:
    """The two trainers hold bit-identical network and EMA weights."""
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)
    for x, y in zip(a.ema.state_dict().values(), b.ema.state_dict().values()):
        assert torch.equal(x, y)


def test_loss_decreases_and_metrics_are_logged(tmp_path):
    tr = make(run_dir=tmp_path, steps=300, log_every=50, lr=3e-3).run()
    losses = [r["loss"] for r in tr.history]
    assert losses[-1] < 0.7 * losses[0]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [50, 100, 150, 200, 250, 300]
    assert all(r[f"loss_q{q}"] is not None for r in rows for q in range(4))
    # noise is easiest to predict at the noisiest steps
    assert rows[-1]["loss_q3"] < rows[-1]["loss_q0"]
    assert (tmp_path / "model.safetensors").is_file() and latest_checkpoint(tmp_path).name == "step_00000300"


def test_resume_continues_exactly(tmp_path):
    full = make(run_dir=tmp_path / "a").run()
    first = make(run_dir=tmp_path / "b").run(max_steps=15)
    assert first.step == 15 and not (tmp_path / "b" / "model.safetensors").exists()
    second = make(seed=123, run_dir=tmp_path / "b").resume()
    assert second.step == 15
    second.run()
    assert_same_weights(full, second)


def test_checkpoints_load_without_pickle_and_rotate(tmp_path):
    make(run_dir=tmp_path, steps=30, checkpoint_every=10, keep_checkpoints=2).run()
    found = list_checkpoints(tmp_path)
    assert [p.name for p in found] == ["step_00000020", "step_00000030"]
    weights = load_file(str(found[-1] / "weights.safetensors"))
    assert any(k.startswith("ema.") for k in weights) and any(k.startswith("model.") for k in weights)
    state = load_file(str(found[-1] / "state.safetensors"))
    assert "rank0.rng.torch" in state and any(k.startswith("optimizer.") for k in state)
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))


def test_ema_tracks_parameters_only():
    tr = make(ema_decay=0.9, ema_warmup=False)
    before = [p.clone() for p in tr.ema.parameters()]
    with torch.no_grad():
        for p in tr.model.parameters():
            p.add_(1.0)
    tr.update_ema()
    for b, e in zip(before, tr.ema.parameters()):
        assert torch.allclose(e, b + 0.1, atol=1e-6)
    assert not any(p.requires_grad for p in tr.ema.parameters())
    freqs = dict(tr.ema.named_buffers())
    assert all(torch.equal(freqs[k], v) for k, v in tr.model.named_buffers())


def test_ema_half_life_halves_the_weight_of_old_parameters_every_that_many_images():
    """EDM's half-life form: after halflife_kimg * 1000 training images old weights count half."""
    tr = make(ema_halflife_kimg=0.64, grad_accum=2, ema_warmup=False)  # 640 images = 10 steps of 2 x 32
    assert tr.ema_decay ** 10 == pytest.approx(0.5)
    before = [p.clone() for p in tr.ema.parameters()]
    with torch.no_grad():
        for p in tr.model.parameters():
            p.add_(1.0)
    for _ in range(10):
        tr.update_ema()
    for b, e in zip(before, tr.ema.parameters()):
        assert torch.allclose(e, b + 0.5, atol=1e-5)


@pytest.mark.parametrize("std", [0.05, 0.10, 0.25])
def test_power_function_exponent_has_the_relative_width_asked_for(std):
    """EDM2 appendix eq. 123: sigma_rel^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3))."""
    g = power_function_exponent(std)
    assert g > 0 and ((g + 1) / ((g + 2) ** 2 * (g + 3))) ** 0.5 == pytest.approx(std, rel=1e-10)


def test_power_function_ema_weighs_step_tau_by_the_power_profile():
    """After t updates the EMA is sum_tau w_tau theta_tau with w_tau = (tau^(g+1) - (tau-1)^(g+1)) /
    t^(g+1) (EDM2 sec. 3.1): the first step copies the weights, and no warm-up applies."""
    tr = make(ema_std=0.10, ema_warmup=True)
    g = power_function_exponent(0.10)
    param = next(tr.model.parameters())
    thetas = []
    for step in range(30):
        with torch.no_grad():
            param.copy_(torch.randn_like(param))
        thetas.append(param.detach().clone())
        tr.update_ema()
        tr.step += 1
        t = step + 1
        w = [(tau ** (g + 1) - (tau - 1) ** (g + 1)) / t ** (g + 1) for tau in range(1, t + 1)]
        expected = sum(wi * th for wi, th in zip(w, thetas))
        assert torch.allclose(next(tr.ema.parameters()), expected, atol=1e-5)
    assert sum(w) == pytest.approx(1.0)


def test_power_function_ema_resumes_exactly(tmp_path):
    full = make(run_dir=tmp_path / "a", ema_std=0.05).run()
    first = make(run_dir=tmp_path / "b", ema_std=0.05).run(max_steps=15)
    second = make(seed=123, run_dir=tmp_path / "b", ema_std=0.05).resume()
    assert first.step == second.step == 15
    second.run()
    assert_same_weights(full, second)


def test_power_function_ema_and_half_life_are_refused_together():
    with pytest.raises(ConfigError, match="not both"):
        make(ema_std=0.05, ema_halflife_kimg=1.0)


def test_adam_betas_reach_the_optimizer():
    tr = make(adam_betas=[0.9, 0.99])
    assert tr.optimizer.param_groups[0]["betas"] == (0.9, 0.99)


def test_learning_rate_schedule():
    tr = make(steps=100, warmup=10, lr=1.0, decay="cosine", min_lr=0.1)
    assert tr.lr_at(0) == pytest.approx(0.1) and tr.lr_at(9) == pytest.approx(1.0)
    assert tr.lr_at(10) == pytest.approx(1.0) and tr.lr_at(100) == pytest.approx(0.1)
    assert tr.lr_at(55) == pytest.approx(0.55)
    lin = make(steps=100, warmup=0, lr=1.0, decay="linear")
    assert lin.lr_at(50) == pytest.approx(0.5)
    # the schedule spans the step budget: train.steps, or the steps a time budget was measured to hold
    lin.step_budget = 20
    assert lin.lr_at(10) == pytest.approx(0.5) and lin.lr_at(30) == pytest.approx(0.0)


def test_time_budget_becomes_a_recorded_step_budget(tmp_path):
    # a step takes 0.5 s: calibration (1 + 20 steps, 10.5 s) leaves 19.5 s of the 30, which hold
    # int(0.95 * 19.5 / 0.5) = 37 steps
    tr = make(run_dir=tmp_path, steps=10**7, minutes=0.5, lr=1.0, min_lr=0.0, decay="cosine", clock=FakeClock(0.5))
    tr.run()
    assert tr.seconds_per_step == pytest.approx(0.5) and tr.step_budget == 37 and tr.step == 37
    assert tr.elapsed == pytest.approx(10.5 + 37 * 0.5)
    calibration = [r for r in tr.history if "calibration" in r][0]["calibration"]
    assert calibration == {"seconds_per_step": 0.5, "minutes": 0.5, "step_budget": 37}
    # the learning rate was annealed over the budget, not over the 10**7 steps never reached
    assert tr.optimizer.param_groups[0]["lr"] < 0.01
    assert latest_checkpoint(tmp_path).name == f"step_{tr.step:08d}"
    assert (tmp_path / "model.safetensors").is_file()


def test_setup_time_counts_against_the_time_budget():
    # the command began 6 s before the first step: calibration (10.5 s) leaves 13.5 s of the 30,
    # which hold int(0.95 * 13.5 / 0.5) = 25 steps; a second run() adds no setup time again
    tr = make(steps=10**7, minutes=0.5, clock=FakeClock(0.5), started=-6.0)
    tr.run(max_steps=10)
    assert tr.step_budget == 25 and tr.step == 10 and tr.elapsed == pytest.approx(6.0 + 10.5 + 10 * 0.5)
    tr.run()
    assert tr.step == 25 and tr.elapsed == pytest.approx(6.0 + 10.5 + 25 * 0.5)


def test_a_slower_machine_still_stops_on_time(tmp_path):
    clock = FakeClock(0.5)
    tr = make(run_dir=tmp_path, steps=10**7, minutes=0.5, clock=clock)
    tr.calibrate()
    clock.seconds = 1.0  # slower than measured: the time, not the budget, ends the run
    tr.run()
    assert tr.step_budget == 37 and tr.step < 37 and tr.elapsed >= 30 and tr.finished
    assert (tmp_path / "model.safetensors").is_file()


def test_time_budgeted_runs_are_reproducible():
    """Same command, same machine speed: the same weights; and --steps BUDGET without a time budget
    reproduces the run (the clock never reaches the learning rate)."""
    a = make(steps=10**7, minutes=1.0, warmup=0, clock=FakeClock(0.1)).run()
    b = make(steps=10**7, minutes=1.0, warmup=0, clock=FakeClock(0.1)).run()
    assert a.step_budget == b.step_budget == 550 and a.step == b.step == 550
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    steps = make(steps=a.step_budget, warmup=0).run()
    for pa, pb in zip(a.ema.parameters(), steps.ema.parameters()):
        assert torch.equal(pa, pb)


def test_time_budgeted_run_resumes_exactly(tmp_path):
    whole = make(run_dir=tmp_path / "a", steps=10**7, minutes=1.0, warmup=0, clock=FakeClock(0.1)).run()
    part = make(run_dir=tmp_path / "b", steps=10**7, minutes=1.0, warmup=0, clock=FakeClock(0.1))
    part.run(max_steps=100)
    rest = make(run_dir=tmp_path / "b", steps=10**7, minutes=1.0, warmup=0, clock=FakeClock(0.1)).resume()
    assert rest.step == 100 and rest.step_budget == whole.step_budget  # the budget comes from the checkpoint
    rest.run()
    assert rest.step == whole.step
    for pa, pb in zip(whole.ema.parameters(), rest.ema.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("field,value", [("optimizer", "sgd"), ("decay", "step"), ("precision", "fp8"),
                                         ("steps", 0), ("lr", -1.0), ("ema_decay", 1.0),
                                         ("ema_halflife_kimg", 0.0), ("ema_std", 0.0), ("ema_std", 0.3),
                                         ("adam_betas", [0.9]),
                                         ("adam_betas", [0.9, 1.0]), ("precision", "fp64")])
def test_invalid_training_options(field, value):
    with pytest.raises(ConfigError, match=field):
        make(**{field: value})
