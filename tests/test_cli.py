import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ddpm.cli import main

FAST = ["--steps", "60", "--quiet", "--set", "train.log_every=20", "--set", "sample.n=200"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ddpm.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "moons"
    assert main(["train", "--data", "moons", "--out", str(out), *FAST]) == 0
    return out


def test_train_writes_a_self_describing_run(trained):
    for name in ("config.toml", "run.json", "metrics.jsonl", "model.safetensors", "eval.json", "samples.npz",
                 "pictures/forward.png", "pictures/reverse.png", "pictures/samples.png", "pictures/loss.png",
                 "pictures/reverse.gif"):
        assert (trained / name).is_file(), name
    report = json.loads((trained / "eval.json").read_text())
    assert report["data"] == "moons" and report["n"] == 200
    assert {"sliced_wasserstein", "mmd_rbf", "wasserstein2"} <= set(report)


def test_sample_needs_only_the_run_directory(trained, tmp_path):
    out = tmp_path / "s.npz"
    assert main(["sample", str(trained), "--n", "50", "--out", str(out), "--quiet", "--seed", "3"]) == 0
    with np.load(out) as f:
        a = f["arr_0"]
    assert a.shape == (50, 2) and a.dtype == np.float32
    out2 = tmp_path / "s2.npz"
    assert main(["sample", str(trained), "--n", "10", "--out", str(out2), "--quiet", "--seed", "8",
                 "--batch-size", "3", "--grid", str(tmp_path / "g.png"), "--gif", str(tmp_path / "r.gif")]) == 0
    with np.load(out2) as f:
        assert np.allclose(f["arr_0"], a[5:15], atol=1e-5)  # sample i uses seed SEED+i, whatever the batch
    assert (tmp_path / "g.png").is_file() and (tmp_path / "r.gif").is_file()


def test_evaluate_given_samples(trained, tmp_path):
    out = tmp_path / "s.npz"
    main(["sample", str(trained), "--n", "100", "--out", str(out), "--quiet", "--sampler", "ddim", "--steps", "20"])
    assert main(["evaluate", str(trained), "--samples", str(out)]) == 0
    assert json.loads((trained / "eval.json").read_text())["n"] == 100


def test_forward_picture(tmp_path):
    r = run_cli("forward", "--data", "spiral", "--out", tmp_path / "f.png")
    assert r.returncode == 0 and (tmp_path / "f.png").stat().st_size > 1000


@pytest.mark.parametrize("args,message", [
    (["train", "--data", "swirl", "--out", "{tmp}/r"], "unknown data set 'swirl'"),
    (["train", "--data", "moons", "--set", "train.lrr=1", "--out", "{tmp}/r"], "unknown option 'train.lrr'"),
    (["train", "--data", "moons", "--set", "diffusion.beta_end=1.5", "--out", "{tmp}/r"], "diffusion.beta_end=1.5"),
    (["train", "--data", "moons", "--set", "diffusion.T=0", "--out", "{tmp}/r"], "diffusion.T=0"),
    (["train", "--data", "moons", "--preset", "nope", "--out", "{tmp}/r"], "unknown preset 'nope'"),
    (["train", "--data", "{tmp}/missing.npz", "--out", "{tmp}/r"], "does not exist"),
    (["sample", "{tmp}/nonexistent"], "not a run directory"),
    (["evaluate", "{tmp}/nonexistent"], "not a run directory"),
    (["train", "--resume", "{tmp}/nonexistent"], "not a run directory"),
])
def test_errors_are_one_line_without_traceback(tmp_path, args, message):
    r = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_wrong_option_is_rejected_by_the_parser():
    r = run_cli("train", "--epochs", "3")
    assert r.returncode == 2 and "unrecognized arguments: --epochs" in r.stderr


def test_existing_run_is_never_overwritten(trained):
    before = (trained / "model.safetensors").read_bytes()
    r = run_cli("train", "--data", "moons", "--out", trained, "--steps", "5")
    assert r.returncode == 1 and "already holds a run" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (trained / "model.safetensors").read_bytes() == before


def test_mismatched_run_directory(trained, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    text = (broken / "config.toml").read_text().replace("width = 128", "width = 64")
    (broken / "config.toml").write_text(text)
    r = run_cli("sample", broken, "--n", "2")
    assert r.returncode == 1 and "do not match its config.toml" in r.stderr


def test_interrupt_saves_a_checkpoint_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "ddpm.cli", "train", "--data", "moons", "--out", str(out),
                             "--steps", "1000000", "--quiet", "--set", "train.log_every=10"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "ddpm train --resume" in err
    ckpts = sorted((out / "checkpoints").glob("step_*"))
    assert len(ckpts) == 1
    step = int(ckpts[0].name.split("_")[1])
    r = run_cli("train", "--resume", out, "--steps", step + 20, "--quiet", "--set", "sample.n=100")
    assert r.returncode == 0, r.stderr
    assert f"trained {step + 20} steps" in r.stdout
    assert (out / "model.safetensors").is_file()


def test_evaluate_bound_from_the_command_line(trained, capsys):
    assert main(["evaluate", str(trained), "--bpd", "--bpd-only", "--bpd-steps", "10", "--bpd-n", "40",
                 "--quiet"]) == 0
    bound = json.loads((trained / "bpd.json").read_text())["bpd"]
    assert bound["unit"] == "nats/dim" and bound["n"] == 40 and bound["steps"] == 10
    assert "negative log-likelihood bound" in capsys.readouterr().out
    r = run_cli("evaluate", trained, "--bpd", "--bpd-steps", "9999")  # refused before any work
    assert r.returncode == 1 and "--bpd-steps 9999" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_exact_likelihood_beside_the_bound(trained, capsys):
    assert main(["evaluate", str(trained), "--nll", "--nll-n", "100", "--nll-steps", "20", "--quiet"]) == 0
    nll = json.loads((trained / "nll.json").read_text())["nll"]
    bound = json.loads((trained / "bpd.json").read_text())["bpd"]
    assert nll["unit"] == bound["unit"] == "nats/dim" and nll["n"] == bound["n"] == 100
    assert np.isfinite(nll["value"]) and np.isfinite(bound["value"])
    out = capsys.readouterr().out
    assert "probability-flow ODE" in out and "negative log-likelihood bound" in out


@pytest.mark.parametrize("sampler,extra", [("dpm++", []), ("heun", ["--churn", "1.0"]),
                                           ("ddim", ["--spacing", "trailing"]), ("euler", ["--spacing", "linspace"])])
def test_sample_with_each_sampler(trained, tmp_path, sampler, extra):
    out = tmp_path / "s.npz"
    assert main(["sample", str(trained), "--n", "20", "--out", str(out), "--quiet", "--sampler", sampler,
                 "--steps", "8", *extra]) == 0
    assert np.load(out)["arr_0"].shape == (20, 2)


def test_bad_sampler_options_are_refused_before_work(trained, tmp_path):
    r = run_cli("sample", trained, "--sampler", "ancestral", "--spacing", "karras", "--out", tmp_path / "s.npz")
    assert r.returncode == 1 and "sample.spacing" in r.stderr and not (tmp_path / "s.npz").exists()
    r = run_cli("sample", trained, "--sampler", "heun", "--churn", "-1", "--out", tmp_path / "s.npz")
    assert r.returncode == 1 and "sample.churn" in r.stderr
    r = run_cli("sample", trained, "--sampler", "dpm++", "--spacing", "logsnr", "--sigma-max", "1e6", "--out",
                tmp_path / "s.npz")
    assert r.returncode == 1 and "sample.sigma_max" in r.stderr and "within the chain's" in r.stderr
    r = run_cli("sample", trained, "--sampler", "ddim", "--sigma-min", "0.1", "--out", tmp_path / "s.npz")
    assert r.returncode == 1 and "sample.sigma_min" in r.stderr and "karras or logsnr" in r.stderr
    assert not (tmp_path / "s.npz").exists()


def test_sample_on_a_sigma_range(trained, tmp_path):
    out = tmp_path / "s.npz"
    assert main(["sample", str(trained), "--n", "20", "--out", str(out), "--quiet", "--sampler", "dpm++", "--steps",
                 "6", "--spacing", "logsnr", "--sigma-min", "0.1", "--sigma-max", "5"]) == 0
    assert np.load(out)["arr_0"].shape == (20, 2)


def test_dynamic_thresholding_from_the_command_line(trained, tmp_path):
    out = tmp_path / "s.npz"
    assert main(["sample", str(trained), "--n", "10", "--out", str(out), "--quiet", "--sampler", "ddim", "--steps",
                 "5", "--dynamic-threshold", "0.99"]) == 0
    assert np.abs(np.load(out)["arr_0"]).max() <= 1.0 + 1e-6
    r = run_cli("sample", trained, "--dynamic-threshold", "1.5", "--out", tmp_path / "t.npz")
    assert r.returncode == 1 and "sample.dynamic_threshold" in r.stderr and not (tmp_path / "t.npz").exists()


def test_precision_and_compile_reach_the_network(trained, tmp_path):
    def draw(name, *extra):
        out = tmp_path / f"{name}.npz"
        assert main(["sample", str(trained), "--n", "16", "--out", str(out), "--quiet", "--sampler", "ddim",
                     "--steps", "5", *extra]) == 0
        return np.load(out)["arr_0"]

    fp32 = draw("fp32", "--precision", "fp32")
    np.testing.assert_allclose(draw("compiled", "--precision", "fp32", "--compile", "default"), fp32, atol=1e-5)
    bf16 = draw("bf16", "--precision", "bf16")
    assert not np.array_equal(bf16, fp32) and np.abs(bf16 - fp32).max() < 0.2
    r = run_cli("sample", trained, "--compile", "fast", "--out", tmp_path / "c.npz")
    assert r.returncode == 2 and "--compile" in r.stderr and not (tmp_path / "c.npz").exists()
