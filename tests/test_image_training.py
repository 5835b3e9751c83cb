"""The trainer and samplers on images: tiny U-Net, exact resume, precision, conditioning, CLI."""

import json
import warnings

import numpy as np
import pytest
import torch

import ddpm
from ddpm.cli import main
from ddpm.compilation import resolve_compile
from ddpm.config import TrainConfig, make_config
from ddpm.data.images import load_image_data
from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.nets.unet import build_unet
from ddpm.precision import native, resolve_precision
from ddpm.samplers import sample
from ddpm.schedules import make_betas
from ddpm.train.trainer import Trainer


@pytest.fixture(scope="module")
def digits():
    data = load_image_data("digits", hflip=True)
    return data.subset(torch.arange(200))


def make(data, run_dir=None, seed=0, conditional=False, **train):
    torch.manual_seed(seed)
    cfg = TrainConfig(**{"steps": 12, "batch_size": 16, "lr": 1e-3, "warmup": 2, "log_every": 4,
                         "progress": False, **train})
    net = build_unet("tiny", 1, dropout=0.1, num_classes=10 if conditional else None)
    return Trainer(GaussianDiffusion(make_betas("linear", 100)), net, data, cfg, run_dir=run_dir, seed=0,
                   class_conditional=conditional)


def test_image_batches_are_scaled_and_flipped(digits):
    x, y = digits.batch(torch.arange(200), torch.Generator().manual_seed(0))
    assert x.shape == (200, 1, 8, 8) and x.min() >= -1 and x.max() <= 1 and y.shape == (200,)
    plain = digits.x[:200].float() / 127.5 - 1
    flipped = (x != plain).flatten(1).any(1)
    assert 0 < flipped.sum() < 200
    assert torch.equal(x[flipped], plain[flipped].flip(-1))


def test_unet_resume_is_exact_with_dropout_flips_and_accumulation(digits, tmp_path):
    kw = dict(grad_accum=2, channels_last=True)
    full = make(digits, tmp_path / "a", **kw).run()
    make(digits, tmp_path / "b", **kw).run(max_steps=5)
    resumed = make(digits, tmp_path / "b", seed=7, **kw).resume().run()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("precision", ["bf16", "fp16", "auto"])
def test_mixed_precision_trains_finite_and_warns_only_where_it_is_emulated(digits, precision):
    cpu = torch.device("cpu")
    resolved = resolve_precision(precision, cpu)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr = make(digits, precision=precision, steps=3, log_every=1)
    emulated = [w for w in caught if "much slower than fp32" in str(w.message)]
    assert tr.precision == resolved and len(emulated) == (resolved != "fp32" and not native(resolved, cpu))
    tr.run()
    assert all(np.isfinite(r["loss"]) for r in tr.history)
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())


def test_auto_precision_is_bf16_exactly_where_the_cpu_has_it_natively():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native("bf16", cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        resolve_precision("fp8", cpu)


def test_bf16_sampling_follows_fp32_sampling_and_leaves_the_network_as_it_was(digits):
    """Autocast sampling: float32 states out, deterministic per seed, close to fp32 sampling (the
    network in bf16 keeps ~3 significant digits); the network keeps its mode, also under guidance."""
    tr = make(digits, conditional=True, steps=6).run()
    kw = dict(sampler="ddim", steps=10, clip_denoised=True, labels=torch.arange(8) % 10)
    exact = sample(tr.process, tr.ema, (1, 8, 8), range(8), **kw).x
    low = sample(tr.process, tr.ema, (1, 8, 8), range(8), precision="bf16", **kw).x
    again = sample(tr.process, tr.ema, (1, 8, 8), range(8), precision="bf16", **kw).x
    assert low.dtype == torch.float32 and torch.equal(low, again)
    assert 0 < (low - exact).abs().max() < 0.1
    for mode in (True, False):
        tr.ema.train(mode)
        sample(tr.process, tr.ema, (1, 8, 8), range(2), precision="bf16", guidance=2.0, null_label=10,
               **{**kw, "labels": torch.arange(2)})
        assert tr.ema.training is mode  # guidance and autocast wrappers once left it in training mode


def test_class_conditional_training_and_sampling(digits):
    tr = make(digits, conditional=True, steps=3).run()
    p = tr.process
    a = sample(p, tr.ema, (1, 8, 8), range(4), steps=5, labels=torch.zeros(4, dtype=torch.long), clip_denoised=True).x
    b = sample(p, tr.ema, (1, 8, 8), range(4), steps=5, labels=torch.full((4,), 7), clip_denoised=True).x
    assert a.shape == (4, 1, 8, 8) and not torch.allclose(a, b) and a.abs().max() <= 1


def test_image_sample_is_batch_independent(digits):
    tr = make(digits, steps=2).run()
    a = sample(tr.process, tr.ema, (1, 8, 8), range(6), sampler="ddim", steps=10, batch_size=6, clip_denoised=True).x
    b = sample(tr.process, tr.ema, (1, 8, 8), range(6), sampler="ddim", steps=10, batch_size=4, clip_denoised=True).x
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("data", ["digits", "mnist"])
def test_the_image_presets_train_and_sample_as_they_stand(data, tmp_path):
    """The presets' own network, precision and compile mode ("auto"), sampler and sampling batch, for three steps:
    quality is measured by benchmarks/speedrun.py, never here."""
    out = tmp_path / data
    assert main(["train", "--data", data, "--out", str(out), "--steps", "3", "--quiet", "--set", "sample.n=6"]) == 0
    cfg = make_config(data=data)
    meta = json.loads((out / "run.json").read_text())
    assert meta["precision"] == resolve_precision(cfg.train.precision, torch.device("cpu"))
    assert meta["compile"] == resolve_compile(cfg.train.compile, "cpu")
    x = np.load(out / "samples.npz")["arr_0"]
    assert x.shape == (6, *{"digits": (8, 8, 1), "mnist": (28, 28, 1)}[data]) and x.dtype == np.uint8


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "digits"
    args = ["train", "--data", "digits", "--out", str(out), "--steps", "6", "--quiet",
            "--set", "model.unet=tiny", "--set", "diffusion.T=50", "--set", "sample.steps=none", "--set", "train.sample_every=3",
            "--set", "train.checkpoint_every=3", "--set", "train.log_every=3", "--set", "sample.n=4"]
    assert main(args) == 0
    return out


def test_image_run_directory(image_run):
    for name in ("model.safetensors", "samples/step_00000003.png", "pictures/samples.png", "pictures/reverse.gif",
                 "pictures/reverse.png", "pictures/forward.png", "pictures/loss.png", "samples.npz"):
        assert (image_run / name).is_file(), name
    meta = json.loads((image_run / "run.json").read_text())
    assert meta == {"shape": [1, 8, 8], "num_classes": 10, "ddpm_version": ddpm.__version__, "run_format": 1,
                    "precision": resolve_precision(make_config(data="digits").train.precision, torch.device("cpu")),
                    "compile": "none"}


def test_image_sampling_outputs(image_run, tmp_path):
    out = tmp_path / "s.npz"
    assert main(["sample", str(image_run), "--n", "5", "--out", str(out), "--quiet", "--sampler", "ddim",
                 "--steps", "5", "--png-dir", str(tmp_path / "png"), "--grid", str(tmp_path / "grid.png"),
                 "--gif", str(tmp_path / "r.gif")]) == 0
    with np.load(out) as f:
        arr = f["arr_0"]
    assert arr.shape == (5, 8, 8, 1) and arr.dtype == np.uint8
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(5)]
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(pngs[2])), arr[2, ..., 0])
    assert (tmp_path / "grid.png").is_file() and (tmp_path / "r.gif").is_file()


def test_tensorboard_logs_scalars_and_sample_grids(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--out", str(out), "--steps", "4", "--quiet",
                 "--set", "model.unet=tiny", "--set", "diffusion.T=20", "--set", "sample.steps=none", "--set", "train.sample_every=2",
                 "--set", "train.log_every=2", "--set", "train.tensorboard=true", "--set", "sample.n=2"]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4]
    assert "samples" in events.Tags()["images"]
