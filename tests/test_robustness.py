"""Nothing lost: damaged files named, runs that can always be continued, crashes survived,
non-finite numbers caught (the one-line errors of bad input: test_bad_input.py)."""

import json
import os
import random
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ddpm.cli import main
from ddpm.config import DataConfig, TrainConfig, config_from_dict, config_to_dict, load_config, make_config, save_config
from ddpm.data import load_dataset
from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import RunError
from ddpm.nets import MLP
from ddpm.schedules import make_betas
from ddpm.train import checkpoint as ckpt
from ddpm.train.trainer import Trainer

FAST = ["--quiet", "--set", "train.log_every=10", "--set", "sample.n=20", "--set", "diffusion.T=50"]


def ddpm(*args, preexec_fn=None):
    return subprocess.run([sys.executable, "-m", "ddpm", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=preexec_fn)


def one_line_error(r, *fragments, code=1):
    lines = r.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("ddpm: error:")]
    assert r.returncode == code, (r.returncode, r.stderr)
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes: what a failed command must leave unchanged."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "moons"
    assert main(["train", "--data", "moons", "--out", str(out), "--steps", "40", *FAST,
                 "--set", "train.checkpoint_every=20", "--set", "train.keep_checkpoints=5"]) == 0
    return out


# ------------------------------------------------------------------ the observed cases
def test_resume_with_a_changed_network_is_refused_and_leaves_the_run_intact(run, tmp_path):
    before = snapshot(run)
    r = ddpm("train", "--resume", run, "--set", "model.width=64")
    one_line_error(r, "model.width", "--out")
    r = ddpm("train", "--resume", run, "--quiet", "--set", "diffusion.schedule=cosine")
    one_line_error(r, "diffusion.schedule")
    assert snapshot(run) == before
    assert ddpm("sample", run, "--n", "5", "--out", tmp_path / "s.npz").returncode == 0


def test_damaged_weights_are_named_and_resume_falls_back_to_an_intact_checkpoint(run, tmp_path):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    one_line_error(ddpm("sample", copy, "--out", tmp_path / "s.npz"), "model.safetensors", "damaged")
    data = bytearray((copy / "checkpoints" / "step_00000040" / "weights.safetensors").read_bytes())
    data[-5] ^= 0xFF  # one flipped byte: a valid file with the wrong contents
    (copy / "checkpoints" / "step_00000040" / "weights.safetensors").write_bytes(bytes(data))
    r = ddpm("train", "--resume", copy, "--steps", "60", *FAST)
    assert r.returncode == 0, r.stderr
    assert "step_00000020" in r.stderr and "damaged" in r.stderr  # which checkpoint, and why
    assert "trained 60 steps" in r.stdout


def test_a_start_that_died_before_its_first_checkpoint_can_be_resumed(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", "moons", "--out", str(out), "--steps", "20", *FAST]) == 0
    for p in [*ckpt.list_checkpoints(out), out / "model.safetensors"]:
        subprocess.run(["rm", "-rf", str(p)], check=True)
    r = ddpm("train", "--resume", out, *FAST)
    assert r.returncode == 0 and "trained 20 steps" in r.stdout, r.stderr


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_checkpoint(run, tmp_path):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    before = {p.name for p in ckpt.list_checkpoints(copy)}

    def small_files():  # files may not grow past 64 kB (a checkpoint is bigger): a full disk to a writer
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))

    r = ddpm("train", "--resume", copy, "--steps", "60", *FAST, preexec_fn=small_files)
    one_line_error(r, "could not write", "step_00000060", "free disk space")
    assert {p.name for p in ckpt.list_checkpoints(copy)} == before
    assert not [p for p in (copy / "checkpoints").iterdir() if p.name.startswith(".tmp")]


def test_resuming_a_finished_run_changes_nothing(run):
    before = snapshot(run)
    r = ddpm("train", "--resume", run)
    assert r.returncode == 0 and "already finished at step 40" in r.stdout
    assert snapshot(run) == before


def test_unreadable_images_among_good_ones_are_skipped_with_a_warning(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match="skipped 1 of 7"):
        data = load_dataset(DataConfig(name=str(folder)))
    assert len(data) == 6
    for p in folder.glob("[0-9].png"):
        p.write_bytes(b"garbage")
    from ddpm.errors import DataError

    with pytest.raises(DataError, match="none of the 7"):
        load_dataset(DataConfig(name=str(folder)))


def test_a_run_of_a_newer_layout_is_refused(run, tmp_path):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    meta = json.loads((copy / "run.json").read_text())
    assert meta["ddpm_version"] and meta["run_format"] == 1
    (copy / "run.json").write_text(json.dumps({**meta, "run_format": 99, "ddpm_version": "9.0"}))
    one_line_error(ddpm("sample", copy, "--out", tmp_path / "s.npz"), "upgrade ddpm")


def test_debug_shows_the_traceback(tmp_path):
    r = ddpm("--debug", "train", "--data", "moons", "--out", tmp_path / "r", "--set", "model.width=-5")
    assert r.returncode != 0 and "Traceback" in r.stderr and "ConfigError" in r.stderr


def test_python_dash_m_ddpm_is_the_command():
    r = ddpm("--version")
    assert r.returncode == 0 and r.stdout.startswith("ddpm ")


# ------------------------------------------------------------------ configuration
def test_saved_configuration_round_trips_every_field_none_included(tmp_path):
    cfg = make_config(data="mnist", overrides={"train.grad_clip": "none", "train.minutes": None, "seed": 3,
                                               "model.channel_mults": [1, 2], "data.image_size": 28})
    assert cfg.train.grad_clip is None
    save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert 'grad_clip = "none"' in (tmp_path / "config.toml").read_text()


# ------------------------------------------------------------------ crash safety
def test_killed_at_random_moments_and_resumed_ends_bit_identical(tmp_path):
    """SIGKILL at random moments, some inside checkpoint writes (a checkpoint every 3 steps), then
    --resume until done: the weights equal those of a run never interrupted."""
    args = ["--data", "moons", "--steps", "300", *FAST, "--set", "train.checkpoint_every=3",
            "--set", "train.keep_checkpoints=2", "--set", "train.sample_every=0"]
    assert main(["train", "--out", str(tmp_path / "whole"), *args]) == 0
    out = tmp_path / "killed"
    rng = random.Random(0)
    cmd = [sys.executable, "-m", "ddpm", "train", "--out", str(out), *args]
    kills = 0
    for attempt in range(12):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            p.wait(timeout=rng.uniform(2.0, 6.0))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
        if (out / "model.safetensors").is_file() and p.returncode == 0:
            break
        cmd = [sys.executable, "-m", "ddpm", "train", "--resume", str(out), "--quiet"]
    assert (out / "model.safetensors").is_file()
    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if kills == 0:
        pytest.skip("the run finished before any kill: this machine is too fast for the random delays")


# ------------------------------------------------------------------ numerical faults
class Faulty(torch.nn.Module):
    """An MLP whose output is NaN on chosen calls: a loss that blows up."""

    def __init__(self, bad_calls):
        super().__init__()
        self.net, self.bad, self.calls = MLP(2, width=16, depth=1), set(bad_calls), 0

    def forward(self, x, t, y=None):
        self.calls += 1
        out = self.net(x, t)
        return out * float("nan") if self.calls in self.bad else out


def faulty_trainer(tmp_path, bad_calls, **train):
    cfg = TrainConfig(**{"steps": 20, "batch_size": 16, "log_every": 5, "progress": False, **train})
    data = load_dataset(DataConfig(name="moons", n=200))
    return Trainer(GaussianDiffusion(make_betas("linear", 20)), Faulty(bad_calls), data, cfg, run_dir=tmp_path)


def test_non_finite_steps_are_skipped_and_counted(tmp_path):
    tr = faulty_trainer(tmp_path, bad_calls={3, 4, 9})
    tr.run(max_steps=1)
    ema_before = [p.clone() for p in tr.ema.parameters()]
    tr.run(max_steps=1)  # call 2: a good step
    tr.run(max_steps=1)  # call 3 is NaN, skipped; call 4 NaN, skipped; call 5 good
    assert tr.step == 3
    tr.run()
    assert tr.step == 20 and tr.model.calls == 23  # 20 steps, 3 of the calls skipped
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("nonfinite_skipped", 0) for r in rows) == 3
    assert all(torch.isfinite(p).all() for p in tr.ema.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(ema_before, tr.ema.parameters()))


def test_a_run_that_keeps_failing_stops_and_keeps_its_last_checkpoint(tmp_path):
    tr = faulty_trainer(tmp_path, bad_calls=range(11, 1000), max_nonfinite=4, checkpoint_every=5)
    with pytest.raises(RunError, match="non-finite loss or gradients in 4 steps in a row at step 10"):
        tr.run()
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000005", "step_00000010"]
    weights, _, _ = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert all(torch.isfinite(v).all() for v in weights.values())
