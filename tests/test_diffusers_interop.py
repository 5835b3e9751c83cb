"""Runs to and from diffusers: exact network conversion, DDPMPipeline export and import."""

import json

import numpy as np
import pytest
import torch

from ddpm.cli import main
from ddpm.convert.unet2d import native_options, to_unet2d, unet2d_config
from ddpm.errors import ConfigError
from ddpm.nets.unet import UNET_PRESETS, UNet, build_unet
from ddpm.runs import load_run

diffusers = pytest.importorskip("diffusers")
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402

#: google/ddpm-cifar10-32's unet/config.json: the paper's CIFAR-10 model converted to diffusers
CIFAR10_UNET = dict(
    sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None,
    downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, norm_num_groups=32,
    act_fn="silu", center_input_sample=False, mid_block_scale_factor=1, time_embedding_type="positional",
)
CIFAR10_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
                         clip_sample=True, variance_type="fixed_small")


def randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``module`` with every parameter redrawn, so zero-initialised layers take part too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return module.eval()


def write_pipeline(folder, unet, **scheduler):
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**{**CIFAR10_SCHEDULER, **scheduler})).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("options", [
    dict(UNET_PRESETS["tiny"]),
    dict(UNET_PRESETS["tiny"], scale_shift_norm=False, num_classes=3, flip_sin_to_cos=True),
    dict(UNET_PRESETS["digits"], num_heads=4, norm_eps=1e-6, freq_shift=1, downsample_padding=0, out_channels=2),
])
def test_native_unet_and_unet2d_compute_the_same_function(options):
    native = randomised(build_unet(options, 1))
    theirs = UNet2DModel(**unet2d_config(native.config)).eval()
    theirs.load_state_dict(to_unet2d(native.state_dict()))
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0.0, 17.0, 999.0])
    y = torch.tensor([0, 2, 3]) if options.get("num_classes") else None  # 3: the "no label" row
    with torch.no_grad():
        assert torch.allclose(native(x, t, y), theirs(x, t, class_labels=y).sample, atol=1e-5)
    assert native_options(dict(theirs.config)) | {"in_channels": 1} == {**native.config, "image_size": 8}


def test_cifar10_pipeline_imports_into_the_native_unet_with_the_same_outputs(tmp_path):
    unet = randomised(UNet2DModel(**CIFAR10_UNET))
    assert sum(p.numel() for p in unet.parameters()) == 35_746_307  # the paper's 35.7M
    folder = write_pipeline(tmp_path / "ddpm-cifar10-32", unet)
    assert main(["import", str(folder), "--out", str(tmp_path / "run")]) == 0
    run = load_run(tmp_path / "run")
    assert type(run.model) is UNet and run.shape == (3, 32, 32)
    c = run.model.config
    assert (c["freq_shift"], c["flip_sin_to_cos"], c["downsample_padding"], c["norm_eps"]) == (1.0, False, 0, 1e-6)
    assert c["attention_resolutions"] == (16,) and c["channel_mults"] == (1, 2, 2, 2)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([5.0, 800.0])
    with torch.no_grad():
        assert torch.allclose(run.model(x, t), unet(x, t).sample, atol=1e-5)
    np.testing.assert_allclose(run.process.betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-12)
    assert (run.cfg.diffusion.schedule, run.cfg.diffusion.target, run.cfg.diffusion.variance) == \
        ("linear", "eps", "fixed_small")
    assert run.cfg.data.name == "unknown" and run.cfg.sample.clip_denoised is True


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    assert main(["train", "--data", "digits", "--out", str(out), "--steps", "3", "--quiet", "--set", "model.unet=tiny",
                 "--set", "diffusion.T=40", "--set", "sample.steps=none", "--set", "diffusion.schedule=cosine", "--set", "sample.n=2"]) == 0
    run = load_run(out)
    randomised(run.model)  # three steps leave the zero-initialised layers near zero: give them weight
    from ddpm.train.checkpoint import atomic_save

    atomic_save(run.model.state_dict(), out / "model.safetensors", {"shape": [1, 8, 8], "step": 3})
    return out


def test_exported_run_runs_in_ddpm_pipeline_as_in_ddpm(digits_run, tmp_path):
    assert main(["export", str(digits_run), str(tmp_path / "pipe")]) == 0
    pipe = DDPMPipeline.from_pretrained(tmp_path / "pipe")
    run = load_run(digits_run)
    assert pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2" and pipe.scheduler.config.num_train_timesteps == 40
    np.testing.assert_allclose(pipe.scheduler.betas.numpy(), run.process.betas, rtol=1e-5)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 9, 20, 39])
    with torch.no_grad():
        assert torch.allclose(pipe.unet(x, t).sample, run.model(x, t.float()), atol=1e-5)
    # one step of DDPMScheduler equals ddpm's ancestral step with the same noise
    from ddpm.samplers.ancestral import p_sample

    pipe.scheduler.set_timesteps(40)
    x_t = torch.randn(1, 1, 8, 8)
    noise = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        theirs = pipe.scheduler.step(pipe.unet(x_t, 25).sample, 25, x_t,
                                     generator=torch.Generator().manual_seed(7)).prev_sample
        ours, _ = p_sample(run.process, run.model, x_t, torch.tensor([25]), noise, clip_denoised=True)
    assert torch.allclose(theirs, ours, atol=1e-5)
    images = pipe(batch_size=2, num_inference_steps=40, output_type="np").images
    assert images.shape == (2, 8, 8, 1) and np.isfinite(images).all()


def test_export_then_import_is_the_identity(digits_run, tmp_path):
    assert main(["export", str(digits_run), str(tmp_path / "pipe")]) == 0
    assert main(["import", str(tmp_path / "pipe"), "--out", str(tmp_path / "back")]) == 0
    a, b = load_run(digits_run), load_run(tmp_path / "back")
    assert a.model.config == b.model.config and a.shape == b.shape
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_allclose(a.process.betas, b.process.betas, rtol=1e-12)
    assert (a.cfg.data, a.cfg.train, a.cfg.diffusion.target, a.cfg.diffusion.variance) == \
        (b.cfg.data, b.cfg.train, b.cfg.diffusion.target, b.cfg.diffusion.variance)
    assert json.loads((tmp_path / "back" / "run.json").read_text())["imported_from"] == str((tmp_path / "pipe").resolve())
    assert main(["sample", str(tmp_path / "back"), "--n", "2", "--out", str(tmp_path / "s.npz"), "--quiet"]) == 0


def test_learned_variance_and_custom_betas_export(tmp_path):
    out = tmp_path / "run"
    betas = ",".join(str(b) for b in np.geomspace(1e-3, 0.3, 12))
    assert main(["train", "--data", "digits", "--out", str(out), "--steps", "2", "--quiet", "--set", "model.unet=tiny",
                 "--set", "diffusion.variance=learned_range", "--set", "diffusion.target=v",
                 "--set", "diffusion.schedule=custom", "--set", f"diffusion.betas=[{betas}]", "--set", "diffusion.T=12", "--set", "sample.steps=none",
                 "--set", "sample.n=2"]) == 0
    assert main(["export", str(out), str(tmp_path / "pipe")]) == 0
    config = json.loads((tmp_path / "pipe" / "scheduler" / "scheduler_config.json").read_text())
    assert (config["variance_type"], config["prediction_type"]) == ("learned_range", "v_prediction")
    np.testing.assert_allclose(config["trained_betas"], np.geomspace(1e-3, 0.3, 12), rtol=1e-12)
    assert DDPMPipeline.from_pretrained(tmp_path / "pipe").unet.config.out_channels == 2
    assert main(["import", str(tmp_path / "pipe"), "--out", str(tmp_path / "back")]) == 0
    back = load_run(tmp_path / "back")
    assert (back.cfg.diffusion.schedule, back.cfg.diffusion.variance, back.cfg.diffusion.target) == \
        ("custom", "learned_range", "v")


def test_options_without_a_diffusers_counterpart_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--out", str(out), "--steps", "1", "--quiet", "--set", "model.unet=tiny",
                 "--set", "model.attention=linear", "--set", "diffusion.T=10", "--set", "sample.steps=none", "--set", "sample.n=1"]) == 0
    capsys.readouterr()
    assert main(["export", str(out), str(tmp_path / "pipe")]) == 1
    err = capsys.readouterr().err
    assert "model.attention='linear'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "pipe").exists()


def test_export_never_overwrites_and_import_refuses_what_it_cannot_map(digits_run, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert main(["export", str(digits_run), str(tmp_path / "taken")]) == 1
    assert "already exists" in capsys.readouterr().err and (tmp_path / "taken" / "keep.txt").read_text() == "mine"

    small = randomised(UNet2DModel(**{**CIFAR10_UNET, "block_out_channels": (32, 64, 64, 64)}))
    write_pipeline(tmp_path / "learned", small, variance_type="learned")
    assert main(["import", str(tmp_path / "learned"), "--out", str(tmp_path / "r2")]) == 1
    assert "variance_type='learned'" in capsys.readouterr().err and not (tmp_path / "r2").exists()

    assert main(["import", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r3")]) == 1
    assert "model_index.json is missing" in capsys.readouterr().err


def test_a_unet2d_without_native_counterpart_is_kept_as_a_diffusers_network(tmp_path, capsys):
    gelu = randomised(UNet2DModel(**{**CIFAR10_UNET, "block_out_channels": (32, 64, 64, 64), "act_fn": "gelu"}))
    write_pipeline(tmp_path / "gelu", gelu)
    assert main(["import", str(tmp_path / "gelu"), "--out", str(tmp_path / "run"), "--data", "cifar-10-batches-bin"]) == 0
    assert "kept as a diffusers network (model.kind=diffusers): UNet2DModel setting act_fn='gelu'" in \
        capsys.readouterr().err
    run = load_run(tmp_path / "run")
    assert run.cfg.model.kind == "diffusers" and run.cfg.data.name == "cifar-10-batches-bin"
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([5.0, 800.0])
    with torch.no_grad():
        assert torch.allclose(run.model(x, t), gelu(x, t).sample, atol=1e-5)
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "again")]) == 0  # written as it is
    assert DDPMPipeline.from_pretrained(tmp_path / "again").unet.config.act_fn == "gelu"


def test_native_options_refuse_a_unet2d_layout_the_unet_lacks():
    config = dict(UNet2DModel(**{**CIFAR10_UNET, "block_out_channels": (32, 64, 64, 64)}).config)
    with pytest.raises(ConfigError, match="up_block_types"):
        native_options({**config, "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D")})
    with pytest.raises(ConfigError, match="attn_norm_num_groups"):
        native_options({**config, "resnet_time_scale_shift": "scale_shift"})


def test_group_counts_the_unet2d_cannot_share_are_refused():
    from ddpm.convert.unet2d import check_group_counts

    model = UNet(in_channels=1, base_channels=24, channel_mults=(1, 2), attention_resolutions=(), image_size=8,
                 num_groups=16)  # 24 channels: 12 groups, 48: 16 groups
    with pytest.raises(ConfigError, match="model.num_groups=16"):
        check_group_counts(model)
