"""Per-channel colour statistics of samples against data: the numbers on known images, in
``evaluate_images`` beside the floor's, on the command line and in the report."""

import html
import json
import re

import numpy as np
import pytest
import torch

from ddpm.cli import _print_eval
from ddpm.config import DataConfig, make_config, save_config
from ddpm.data.summary import channel_statistics
from ddpm.eval.image_metrics import evaluate_images
from ddpm.eval.reference import make_reference
from ddpm.report import write_report


def test_channel_statistics_of_known_images():
    x = np.zeros((4, 3, 16, 16), np.uint8)
    x[:, 0] = 10  # constant: mean 10, std 0
    x[:2, 1] = 255  # half the pixels 0, half 255: mean 127.5, std 127.5
    x[:, 2] = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every value once: std sqrt((256^2 - 1) / 12)
    s = channel_statistics(torch.from_numpy(x))
    np.testing.assert_allclose(s["mean"], [10, 127.5, 127.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(s["std"], [0, 127.5, np.sqrt((256**2 - 1) / 12)], rtol=1e-12, atol=1e-12)


def stats(x: np.ndarray) -> tuple[list, list]:
    """Mean and population std of each channel of uint8 NCHW images, computed directly."""
    f = x.astype(np.float64)
    return [f[:, c].mean() for c in range(f.shape[1])], [f[:, c].std() for c in range(f.shape[1])]


@pytest.fixture
def data_file(tmp_path):
    x = np.random.default_rng(0).integers(40, 200, (30, 3, 6, 9), dtype=np.uint8)  # a user's own array, 6 x 9
    np.savez(tmp_path / "mine.npz", x=x)
    return DataConfig(name=str(tmp_path / "mine.npz")), x


def test_a_colour_shift_is_measured_against_the_data_and_the_floor(data_file):
    cfg, x = data_file
    samples = x[:8].astype(np.int16)
    samples[:, 0] += 20  # redder by 20 levels, nothing else changed
    samples[:, 2] = 128 + (samples[:, 2] - 128) // 2  # blue at about half the contrast
    samples = samples.astype(np.uint8)
    c = evaluate_images(samples.transpose(0, 2, 3, 1), cfg, features=(), check_memorization=False, seed=3)["color"]
    assert c["channels"] == ["R", "G", "B"] and c["unit"] == "pixel values 0-255"
    assert c["n"] == 8 and c["n_reference"] == 30
    s_mean, s_std = stats(samples)
    d_mean, d_std = stats(x)
    np.testing.assert_allclose(c["samples"]["mean"], s_mean, rtol=1e-12)
    np.testing.assert_allclose(c["samples"]["std"], s_std, rtol=1e-12)
    np.testing.assert_allclose(c["data"]["mean"], d_mean, rtol=1e-12)
    np.testing.assert_allclose(c["data"]["std"], d_std, rtol=1e-12)
    np.testing.assert_allclose(c["difference"]["mean"], np.subtract(s_mean, d_mean), atol=1e-9)
    np.testing.assert_allclose(c["difference"]["std"], np.subtract(s_std, d_std), atol=1e-9)
    _, pool, idx = make_reference(cfg, "train", 8, seed=3).floor  # the floor's own 8 real images
    f_mean, f_std = stats(pool.x[idx].numpy())
    np.testing.assert_allclose(c["floor"]["mean"], f_mean, rtol=1e-12)
    np.testing.assert_allclose(c["floor_difference"]["std"], np.subtract(f_std, d_std), atol=1e-9)
    unshifted = stats(x[:8])[0][0] - d_mean[0]  # what these 8 images stray by without the shift
    assert c["difference"]["mean"][0] - unshifted == pytest.approx(20)
    assert c["difference"]["std"][2] < -10 and abs(c["floor_difference"]["mean"][0]) < 10


def test_grayscale_samples_have_one_channel_of_statistics(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (20, 1, 5, 7), dtype=np.uint8)
    np.save(tmp_path / "gray.npy", x)
    c = evaluate_images(torch.from_numpy(x[:6]), DataConfig(name=str(tmp_path / "gray.npy")), features=(),
                        check_memorization=False)["color"]
    assert c["channels"] == ["gray"] and len(c["samples"]["mean"]) == len(c["floor_difference"]["std"]) == 1


COLOR = {"channels": ["R", "G", "B"], "unit": "pixel values 0-255", "n": 8, "n_reference": 30,
         "samples": {"mean": [141.5, 120.25, 119.0], "std": [40.0, 41.0, 22.5]},
         "data": {"mean": [121.5, 120.0, 119.5], "std": [40.5, 41.5, 45.0]},
         "floor": {"mean": [122.0, 121.0, 118.0], "std": [40.0, 42.0, 44.0]},
         "difference": {"mean": [20.0, 0.25, -0.5], "std": [-0.5, -0.5, -22.5]},
         "floor_difference": {"mean": [0.5, 1.0, -1.5], "std": [-0.5, 0.5, -1.0]}}


def test_the_command_line_prints_colour_statistics(capsys):
    _print_eval({"kind": "images", "color": COLOR})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["colour", "(pixel", "values", "0-255)", "R", "G", "B"]
    assert lines[1].split() == ["mean", "samples", "141.50", "120.25", "119.00"]
    assert lines[3].split() == ["samples", "-", "data", "+20.00", "+0.25", "-0.50"]
    assert lines[4].split()[:6] == ["8", "real", "images", "-", "data", "(floor)"]
    assert lines[7].split() == ["samples", "-", "data", "-0.50", "-0.50", "-22.50"]


def table(page: str, table_id: str) -> str:
    """The cells of one table of the page, each followed by "|"."""
    body = re.search(f'<table id="{table_id}">(.*?)</table>', page).group(1)
    return "".join(f"{html.unescape(cell)}|" for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", body))


def test_the_report_shows_colour_statistics_and_the_data_summary(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_config(make_config(data="digits"), run / "config.toml")
    (run / "run.json").write_text(json.dumps({"shape": [3, 32, 48], "num_classes": 0}))
    (run / "eval.json").write_text(json.dumps({"kind": "images", "data": "mine", "color": COLOR}))
    (run / "data.json").write_text(json.dumps({
        "data": "mine", "images": 40, "shape": [3, 32, 48], "classes": 0, "source_sizes": {"480x640": 30, "50x50": 10},
        "source_modes": {"RGB": 36, "P": 4}, "channels": ["R", "G", "B"], "unit": "pixel values 0-255",
        "mean": [121.5, 120.0, 119.5], "std": [40.5, 41.5, 45.0]}))
    page = write_report(run).read_text()
    color = table(page, "color-table")
    assert "|mean|samples − data|20|0.25|-0.5|" in color and "|std|8 real images − data (floor)|-0.5|0.5|-1|" in color
    assert "&quot;floor_difference&quot;" not in page  # its own table, not a JSON dump
    data = table(page, "data-table")
    assert "|source_sizes|480x640 (30), 50x50 (10)|" in data and "|source_modes|RGB (36), P (4)|" in data
    assert "|G|120|41.5|" in table(page, "data-color-table") and 'href="#data"' in page


def test_the_report_of_an_image_run_without_data_json_says_what_makes_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_config(make_config(data="digits"), run / "config.toml")
    (run / "run.json").write_text(json.dumps({"shape": [1, 8, 8], "num_classes": 10}))
    assert "Missing: data.json (summary of the training images) — made by <code>ddpm train" in \
        write_report(run).read_text()
