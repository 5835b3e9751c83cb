"""The model examples under examples/ (lab_mnist, time_embeddings, variances) and the ``lab`` preset.

Each example's ``main`` runs into a temporary directory; the tests check that its numbers carry
its lesson with margins measured over seeds 0-2 (never a wall-clock time) and that its pictures
exist. The ``lab`` preset is checked against the course lab's own configuration.
"""

import json
import math

import numpy as np
import pytest
import torch
from example_runner import assert_pictures, run_example

from ddpm import make_betas, make_config
from ddpm.cli import main as cli
from ddpm.validate import validate


# ------------------------------------------------------------------ the lab preset
def test_lab_preset_holds_the_labs_settings():
    cfg = make_config("lab")
    validate(cfg)
    assert cfg.preset == "lab" and cfg.data.name == "mnist" and cfg.data.image_size == 32
    d = cfg.diffusion
    assert (d.T, d.schedule, d.beta_start, d.beta_end, d.target, d.loss) == (500, "linear", 1e-4, 0.02, "eps", "l2")
    alphas = 1 - make_betas(d.schedule, d.T, d.beta_start, d.beta_end)
    # Task 4: alpha_t decreases linearly from 0.9999 to 0.98 over T = 500 steps, ending near pure noise
    assert math.isclose(alphas[0], 0.9999) and math.isclose(alphas[-1], 0.98)
    assert np.allclose(np.diff(alphas), np.diff(alphas)[0])
    assert np.prod(alphas) < 0.01
    t = cfg.train
    assert (t.batch_size, t.lr, t.optimizer, t.decay, t.warmup, t.grad_clip) == (64, 1e-4, "adam", "constant", 0, None)
    assert t.steps == 100 * math.ceil(3000 / 64)  # the 100 epochs of 3,000 digits behind FID 86.4
    assert cfg.model.kind == "diffusers"


def test_lab_preset_builds_the_labs_unet2dmodel():
    pytest.importorskip("diffusers")
    from ddpm.runs import build_network

    with torch.device("meta"):  # 114M parameters: shapes only, no memory
        net = build_network(make_config("lab"), (1, 32, 32))
    c = net.unet.config
    assert c.block_out_channels == (128, 128, 256, 256, 512, 512) and c.layers_per_block == 2
    assert c.down_block_types == ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D")
    assert c.up_block_types == ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4
    # the rest as UNet2DModel's defaults, which the lab leaves alone
    assert (c.attention_head_dim, c.norm_num_groups, c.norm_eps) == (8, 32, 1e-5)
    assert (c.flip_sin_to_cos, c.freq_shift, c.resnet_time_scale_shift, c.dropout) == (True, 0, "default", 0.0)
    assert (c.sample_size, c.in_channels, c.out_channels) == (32, 1, 1)
    assert sum(p.numel() for p in net.parameters()) == 113_668_609


def test_lab_preset_is_listed_and_trains_from_the_command_line(tmp_path, capsys):
    pytest.importorskip("diffusers")
    assert cli(["presets"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("lab "))
    assert "data=mnist" in line and "diffusers" in line and "T=500" in line and "lr=0.0001" in line
    tiny = ["model.base_channels=8", "model.channel_mults=[1,2]", "model.num_res_blocks=1",
            "model.attention_resolutions=[16]", "model.num_heads=1", "model.num_groups=8", "sample.n=2",
            "sample.steps=5", "train.sample_every=0", "train.checkpoint_every=0"]
    out = tmp_path / "lab"
    args = ["train", "--preset", "lab", "--steps", "2", "--out", str(out), "--quiet"]
    assert cli(args + [a for s in tiny for a in ("--set", s)]) == 0
    saved = (out / "config.toml").read_text()
    assert 'preset = "lab"' in saved and "T = 500" in saved
    assert json.loads((out / "run.json").read_text())["shape"] == [1, 32, 32]
    assert (out / "model.safetensors").is_file()


# ------------------------------------------------------------------ the examples
@pytest.mark.slow
def test_lab_mnist_reports_fid_with_its_floor_and_protocol(tmp_path):
    pytest.importorskip("diffusers")
    n = run_example("lab_mnist", tmp_path)
    s = n["schedule"]
    assert s["T"] == 500 and math.isclose(s["beta_1"], 1e-4) and math.isclose(s["beta_T"], 0.02)
    assert 0.005 < s["alpha_bar_T"] < 0.008
    keep = n["forward"]["sqrt_alpha_bar"]
    assert n["forward"]["t"] == [100, 200, 300, 400, 500] and keep == sorted(keep, reverse=True) and keep[-1] < 0.1
    t = n["training"]
    assert t["digits"] == 3000 and t["per_class"] == 300
    assert t["final_loss"] < t["first_loss"] / 5  # measured 0.76 -> 0.045
    fid, kid, p = n["fid"], n["kid"], n["protocol"]
    assert math.isfinite(fid["value"]) and math.isfinite(fid["floor"])
    assert fid["floor_draws"] == 5 and fid["floor_std"] > 0  # other draws of 64 of the 500 held-out digits
    assert fid["floor"] < fid["value"] / 2  # measured: 216 against a floor of 50 (n = 64)
    assert kid["floor"] < kid["value"]
    assert fid["n"] == p["n"] == 64 and p["n_reference"] == fid["n_reference"] == 256
    assert "inception" in fid["features"]
    assert p["sampler"] == "ancestral" and p["steps"] == 50 and p["weights"] == "ema" and p["clip_denoised"]
    assert p["checkpoint_step"] == t["steps"] and "held-out" in p["floor_source"]
    assert n["lab_fid"]["value"] == 86.4
    assert_pictures(tmp_path, "lab_forward.png", "lab_loss.png", "lab_samples.png")


@pytest.mark.slow
def test_both_time_embeddings_learn_the_spiral(tmp_path):
    n = run_example("time_embeddings", tmp_path)
    ratios = {}
    for kind in ("sinusoidal", "fourier"):
        for sampler in ("ancestral", "dpm++ 20"):
            sw, mmd = n[kind][sampler]["sliced_wasserstein"], n[kind][sampler]["mmd_rbf"]
            # measured over seeds 0-2: sliced W2 1.13-1.61 x floor, MMD 3.1-4.1 x floor
            assert sw["ratio"] < 2.0 and mmd["ratio"] < 8.0, (kind, sampler)
            ratios[kind, sampler] = sw["ratio"]
    for sampler in ("ancestral", "dpm++ 20"):  # the same budget gives the same quality
        assert 1 / 1.5 < ratios["sinusoidal", sampler] / ratios["fourier", sampler] < 1.5
    assert_pictures(tmp_path, "time_embeddings.png")


@pytest.mark.slow
def test_variances_one_network_two_variances_and_ddim(tmp_path):
    n = run_example("variances", tmp_path)
    s = {k: v["sliced_wasserstein"]["ratio"] for k, v in n["settings"].items()}
    mmd = {k: v["mmd_rbf"]["ratio"] for k, v in n["settings"].items()}
    small, large = "sigma^2 = beta-tilde", "sigma^2 = beta"
    # all 200 steps: the two variances give samples of the same quality (measured 1.27-1.47, within 0.06)
    a, b = s[f"ancestral 200, {small}"], s[f"ancestral 200, {large}"]
    assert a < 2.0 and b < 2.0 and abs(a - b) < 0.3
    # 20 respaced steps: both worse than 200; sliced W2 prefers beta (measured 1.87-1.98 vs 2.85-3.16)
    for v in (small, large):
        assert s[f"ancestral 20, {v}"] > s[f"ancestral 200, {v}"] + 0.3
        assert mmd[f"ancestral 20, {v}"] > mmd[f"ancestral 200, {v}"]
    assert s[f"ancestral 20, {large}"] < s[f"ancestral 20, {small}"] - 0.4
    # DDIM: better with more steps, and blind to the variance (eta = 0 draws no noise)
    assert s["DDIM 10, eta = 0"] > s["DDIM 20, eta = 0"] > s["DDIM 50, eta = 0"] and s["DDIM 200, eta = 0"] < 2.0
    assert n["ddim_same_for_both_variances"] is True
    # the bound: finite; beta gives the tighter one for this short-trained model (measured 0.47-0.51 vs 1.01-1.07)
    bound = n["bound"]
    lo, hi = bound["fixed_large"]["nats_per_dim"], bound["fixed_small"]["nats_per_dim"]
    assert math.isfinite(lo) and math.isfinite(hi) and lo < 0.75 * hi
    for v in ("fixed_small", "fixed_large"):
        b = bound[v]
        parts = b["L_0"] + b["L_1_to_L_9"] + b["L_10_to_L_T-1"] + b["L_T"]
        assert math.isclose(parts, b["nats_per_dim"], rel_tol=1e-6, abs_tol=1e-9)
    assert math.isclose(bound["fixed_small"]["L_0"], bound["fixed_large"]["L_0"])  # same decoder variance at t = 1
    assert_pictures(tmp_path, "variances.png")
