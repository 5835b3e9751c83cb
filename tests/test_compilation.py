"""torch.compile of the network (ddpm.compilation): the same training and samples as eager
PyTorch up to floating-point order, exact resume, checkpoints under the module's own names.
On the CPU the modes compile with Inductor's C++ backend; CUDA graphs (reduce-overhead) need a
GPU and are measured by benchmarks/train_throughput.py."""

import os
import subprocess
import sys
import tempfile

import pytest
import torch
from safetensors.torch import load_file

from ddpm.compilation import COMPILE_MODES, Compiled, compile_network, resolve_compile, uses_cuda_graphs
from ddpm.config import make_config, parse_override, apply_overrides
from ddpm.errors import ConfigError
from ddpm.nets.unet import build_unet
from ddpm.precision import autocast
from ddpm.samplers import sample

from test_trainer import assert_same_weights, make


def test_compiled_training_follows_eager_resumes_exactly_and_saves_the_modules_names(tmp_path):
    eager = make(steps=8).run()
    full = make(run_dir=tmp_path / "a", steps=8, compile="default").run()
    for a, b in zip(eager.model.state_dict().values(), full.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert set(load_file(tmp_path / "a" / "model.safetensors")) == set(eager.model.state_dict())
    make(run_dir=tmp_path / "b", steps=8, compile="default").run(max_steps=3)
    second = make(seed=7, run_dir=tmp_path / "b", steps=8, compile="default").resume()
    assert second.step == 3
    second.run()
    assert_same_weights(full, second)


def test_compiled_unet_gets_the_eager_gradients_on_the_cpu_in_bf16():
    """Regression: with F.interpolate's up-sampling, Inductor's CPU backend read the up-sampling's
    gradient before computing it, and every layer below it trained with a zero gradient (the mnist
    preset trained 6,433 compiled bf16 steps to classifier FID 181)."""
    torch.manual_seed(0)
    # two levels, attention, labels, and a 7x7 input that is reflect-padded: each has its own backward
    net = build_unet("digits", 1, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                     attention_resolutions=(4,), num_classes=3)
    for p in net.parameters():  # no zero-initialised layer: a gradient reaches every parameter
        torch.nn.init.normal_(p, std=0.2)
    x, t, y = torch.randn(8, 1, 7, 7), torch.randint(0, 1000, (8,)).float(), torch.tensor([0, 1, 2, 3] * 2)

    def gradient(model):
        net.zero_grad(set_to_none=True)
        with autocast("bf16", torch.device("cpu")):
            model(x, t, y).float().square().mean().backward()
        return torch.cat([p.grad.flatten() for p in net.parameters()])

    eager, compiled = gradient(net), gradient(compile_network(net, "default"))
    assert (compiled - eager).norm() < 0.02 * eager.norm()  # bf16 rounding: measured 0.003


def test_a_network_compiled_at_a_second_image_size_compiles_anew():
    """Regression: a U-Net compiled after one of another image size in the same process (a test
    suite, a notebook) was recompiled with dynamic sizes, which Inductor's CPU backend failed to
    lower ("cannot determine truth value of Relational"); compilation now keeps shapes static."""
    for side in (7, 12):
        torch.manual_seed(0)
        net = build_unet("digits", 1, base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,))
        x, t = torch.randn(4, 1, side, side), torch.randint(0, 1000, (4,)).float()
        with autocast("bf16", torch.device("cpu")):
            compile_network(net, "default")(x, t).float().square().mean().backward()
        assert all(p.grad is not None for p in net.parameters())


def test_compiled_sampling_draws_the_eager_samples_and_leaves_the_network_as_it_was():
    tr = make(steps=5).run()
    net = tr.ema
    was = net.training
    common = dict(sampler="dpm++2m", steps=8, batch_size=16)
    eager = sample(tr.process, net, (2,), range(16), **common).x
    compiled = sample(tr.process, net, (2,), range(16), compile="default", **common).x
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    assert net.training == was
    assert Compiled(net, "default", torch.device("cpu")).training == net.training


def test_modes_and_old_boolean_configs():
    assert compile_network(torch.nn.Linear(2, 2), "none").__class__ is torch.nn.Linear
    assert not uses_cuda_graphs("reduce-overhead", torch.device("cpu"))
    assert uses_cuda_graphs("reduce-overhead", torch.device("cuda")) and not uses_cuda_graphs("default", torch.device("cuda"))
    cfg = make_config("moons")
    assert cfg.train.compile == cfg.sample.compile == "none"
    for text, mode in (("train.compile=true", "default"), ("train.compile=false", "none"),
                       ("train.compile=reduce-overhead", "reduce-overhead")):
        apply_overrides(cfg, dict([parse_override(text)]))
        assert cfg.train.compile == mode
    assert set(COMPILE_MODES) == {"none", "auto", "default", "reduce-overhead", "max-autotune"}
    for mode in ("fast", "auto"):  # auto is resolved for a device before anything compiles
        with pytest.raises(ConfigError, match=f"compile mode '{mode}'"):
            compile_network(torch.nn.Linear(2, 2), mode)


def test_auto_is_the_fastest_mode_that_is_safe_where_the_run_is():
    from ddpm.nets.diffusers_unet import DiffusersUNet
    assert resolve_compile("auto", "cuda") == "reduce-overhead"
    assert resolve_compile("auto", "cuda", distributed=True) == resolve_compile("auto", "cpu", distributed=True) == "none"
    assert resolve_compile("auto", "mps") == "none"
    assert resolve_compile("auto", "cpu") == "default"  # this machine has Inductor's toolchain (the tests above use it)
    assert resolve_compile("auto", "cpu", torch.nn.Linear(2, 2)) == "default"
    diffusers = DiffusersUNet.__new__(DiffusersUNet)  # its type is all that counts: no network is built
    assert resolve_compile("auto", "cpu", diffusers) == "none" and resolve_compile("auto", "cuda", diffusers) != "none"
    for mode in ("none", "default", "reduce-overhead", "max-autotune"):
        assert resolve_compile(mode, "cpu") == mode
    with pytest.raises(ConfigError, match="compile mode 'fast'"):
        resolve_compile("fast", "cpu")


def test_auto_without_a_cpp_compiler_runs_eagerly_and_says_how_to_compile():
    """No C++ compiler (CXX names none): the trial compilation fails, auto means eager, one warning."""
    code = ("import warnings; warnings.simplefilter('always'); from ddpm.compilation import resolve_compile;"
            "print(resolve_compile('auto', 'cpu'), resolve_compile('auto', 'cpu'))")
    env = {**os.environ, "CXX": "/nonexistent/g++", "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp()}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["none", "none"]
    assert r.stderr.count("compile=auto: torch.compile does not work on this CPU") == 1
    assert "C++ compiler" in r.stderr


@pytest.mark.parametrize("section", ["train", "sample"])
def test_unknown_mode_is_refused_before_anything_runs(section):
    from ddpm.validate import validate

    cfg = make_config("moons")
    apply_overrides(cfg, {f"{section}.compile": "fast"})
    with pytest.raises(ConfigError, match=f"{section}.compile.*reduce-overhead"):
        validate(cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_training_resumes_exactly_and_samples_as_eager(tmp_path):
    common = dict(steps=12, compile="reduce-overhead", device="cuda")
    full = make(run_dir=tmp_path / "a", **common).run()
    make(run_dir=tmp_path / "b", **common).run(max_steps=5)
    second = make(seed=7, run_dir=tmp_path / "b", **common).resume()
    second.run()
    assert_same_weights(full, second)
    eager = make(steps=12, device="cuda").run()
    for a, b in zip(eager.model.state_dict().values(), full.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # a multistep sampler keeps earlier outputs while the graph is replayed: they must survive
    kwargs = dict(sampler="dpm++2m", steps=10, batch_size=32)
    x = sample(full.process, full.ema, (2,), range(32), **kwargs).x
    y = sample(full.process, full.ema, (2,), range(32), compile="reduce-overhead", **kwargs).x
    torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)
