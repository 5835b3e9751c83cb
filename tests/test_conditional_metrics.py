"""Class-conditional samples measured per class: accuracy under the data set's own classifier and
FID within each class, each beside its floor of real images."""

import json

import numpy as np
import torch

from ddpm.cli import main
from ddpm.config import DataConfig
from ddpm.eval.classifier import load_classifier
from ddpm.eval.conditional import class_accuracy, per_class_fid
from ddpm.eval.reference import load_split


def test_accuracy_of_real_images_is_the_classifier_accuracy_and_wrong_labels_score_low():
    cfg = DataConfig(name="digits")
    clf, test = load_classifier(cfg), load_split(cfg, "test")
    x, y = test.x, test.y.numpy()
    acc = class_accuracy(clf, x, y, x, y)
    predicted = clf.probabilities(x).argmax(1)
    assert acc["value"] == acc["floor"] == float(np.mean(predicted == y)) > 0.9
    assert acc["per_class"][3] == float(np.mean(predicted[y == 3] == 3))
    wrong = class_accuracy(clf, x, (y + 1) % 10, x, y)
    assert wrong["value"] < 0.1 and wrong["floor"] == acc["floor"]


def test_fid_per_class_is_near_its_floor_for_the_right_class_and_far_for_a_wrong_one():
    """Two sets of 60 real threes are exchangeable, so value and floor are draws of one statistic;
    at 60 points in the classifier's 128 dimensions it is noisy (over 20 random splits the ratio
    ran from 0.4 to 2.6, and the cached classifier differs between machines), so "near" is within
    4x either way, while the wrong class is over 50x away."""
    cfg = DataConfig(name="digits")
    clf = load_classifier(cfg)
    train = load_split(cfg, "train")
    ref_f = clf(train.x)
    threes = ref_f[train.y.numpy() == 3]
    samples, floor = threes[:60], threes[60:120]  # two sets of real threes (both inside the reference)
    right = per_class_fid(samples, np.full(60, 3), ref_f, train.y.numpy(), floor, np.full(len(floor), 3), "clf")
    wrong = per_class_fid(samples, np.full(60, 8), ref_f, train.y.numpy(), floor, np.full(len(floor), 8), "clf")
    assert list(right) == ["3"] and right["3"]["n"] == 60 and right["3"]["n_reference"] == int((train.y == 3).sum())
    assert right["3"]["floor"] / 4 < right["3"]["value"] < 4 * right["3"]["floor"]
    assert wrong["8"]["value"] > 50 * right["3"]["value"]


def test_evaluating_a_conditional_run_measures_each_class(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--conditional", "--out", str(out), "--steps", "4", "--quiet",
                 "--set", "model.unet=tiny", "--set", "diffusion.T=20", "--set", "sample.steps=none", "--set", "sample.n=4"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--n", "60", "--features", "classifier", "--guidance", "2", "--steps", "5",
                 "--sampler", "ddim", "--no-memorization", "--quiet"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "eval.json").read_text())
    assert result["protocol"]["guidance"] == 2.0 and "i mod 10" in result["protocol"]["labels"]
    acc = result["classifier"]["accuracy"]
    assert acc["n"] == 60 and len(acc["per_class"]) == 10 and 0 <= acc["value"] <= 1 and acc["floor"] > 0.8
    with np.load(out / "eval_samples.npz") as z:
        assert list(z["arr_1"]) == [i % 10 for i in range(60)]
        images, labels = torch.from_numpy(z["arr_0"]).permute(0, 3, 1, 2), z["arr_1"]
    hits = load_classifier(DataConfig(name="digits")).probabilities(images).argmax(1) == labels
    assert acc["value"] == float(hits.mean())
    assert set(result["classifier"]["fid_per_class"]) == {str(c) for c in range(10)}
    assert "samples of the requested class, per class" in printed and "FID per class" in printed
    assert main(["evaluate", str(out), "--samples", str(out / "eval_samples.npz"), "--guidance", "2"]) == 1
