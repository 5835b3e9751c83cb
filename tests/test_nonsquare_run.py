"""A user's folder of non-square RGB and grayscale images, end to end through the command line:
``ddpm train`` (data summary, small-set warning), ``ddpm sample`` at the trained height, width and
channel count, ``ddpm evaluate`` with colour statistics; and the U-Net's attention levels for H != W."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.config import ModelConfig
from ddpm.errors import ConfigError
from ddpm.nets import build_model

FAST = ["--quiet", "--set", "model.unet=tiny", "--set", "diffusion.T=20", "--set", "sample.n=4",
        "--set", "train.log_every=2"]


def ddpm(*args):
    return subprocess.run([sys.executable, "-m", "ddpm", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def rng_images(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """14 photos: 8 RGB of 30 x 45 (height x width), 2 RGB of 20 x 30, 4 grayscale of 40 x 24; trained
    at 12 x 18 for 4 steps."""
    root = tmp_path_factory.mktemp("own")
    folder = root / "photos"
    folder.mkdir()
    for i, (h, w) in enumerate([(30, 45)] * 8 + [(20, 30)] * 2):
        Image.fromarray(rng_images((h, w, 3), i)).save(folder / f"rgb{i:02d}.png")
    for i in range(4):
        Image.fromarray(rng_images((40, 24), 100 + i)).save(folder / f"gray{i}.png")
    run = root / "run"
    r = ddpm("train", "--data", folder, "--out", run, "--steps", "4", "--set", "data.image_size=12,18",
             "--set", "train.sample_every=2", *FAST[1:])  # not --quiet: the summary is printed
    assert r.returncode == 0, r.stderr
    return run, r


def test_training_on_a_non_square_mixed_folder(mixed_run):
    run, r = mixed_run
    assert json.loads((run / "run.json").read_text())["shape"] == [3, 12, 18]
    summary = json.loads((run / "data.json").read_text())
    assert summary["images"] == 14 and summary["shape"] == [3, 12, 18]
    assert summary["source_sizes"] == {"30x45": 8, "40x24": 4, "20x30": 2}
    assert summary["source_modes"] == {"RGB": 10, "L": 4}
    assert "data photos: 14 images, no labels, trained as 3 x 12 x 18 (C x H x W)" in r.stdout
    assert "sizes in the source (H x W): 30x45 (8), 40x24 (4), 20x30 (2)" in r.stdout
    assert "per-channel mean / std (pixel values 0-255): R " in r.stdout
    warning = [line for line in r.stderr.splitlines() if line.startswith("ddpm: warning: 14 training images")]
    assert len(warning) == 1 and "`ddpm evaluate RUN`" in warning[0]
    with np.load(run / "samples.npz") as f:
        assert f["arr_0"].shape == (4, 12, 18, 3) and f["arr_0"].dtype == np.uint8
    for name in ("samples/step_00000002.png", "pictures/samples.png", "pictures/reverse.gif", "pictures/forward.png"):
        assert (run / name).is_file(), name


def test_sampling_a_non_square_run_gives_its_height_width_and_channels(mixed_run, tmp_path):
    run, _ = mixed_run
    out = tmp_path / "s.npz"
    r = ddpm("sample", run, "--n", "3", "--steps", "2", "--sampler", "ddim", "--out", out, "--png-dir",
             tmp_path / "png", "--grid", tmp_path / "grid.png", "--quiet")
    assert r.returncode == 0, r.stderr
    with np.load(out) as f:
        arr = f["arr_0"]
    assert arr.shape == (3, 12, 18, 3) and arr.dtype == np.uint8
    with Image.open(tmp_path / "png" / "000001.png") as png:
        assert (png.size, png.mode) == ((18, 12), "RGB")  # Pillow: (width, height)
        assert np.array_equal(np.asarray(png), arr[1])
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.width > grid.height  # two columns of 18-wide images over two rows of 12


def test_a_grayscale_folder_of_one_non_square_size_trains_and_samples_one_channel(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng_images((10, 14), i)).save(folder / f"{i}.png")
    Image.fromarray(rng_images((10, 14), 9).astype(np.uint16) * 257).save(folder / "deep.png")  # 16-bit gray
    r = ddpm("train", "--data", folder, "--out", tmp_path / "run", "--steps", "2", *FAST)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run" / "data.json").read_text())["source_modes"] == {"L": 3, "I;16": 1}
    r = ddpm("sample", tmp_path / "run", "--n", "2", "--steps", "2", "--out", tmp_path / "s.npz", "--quiet")
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "s.npz") as f:
        assert f["arr_0"].shape == (2, 10, 14, 1)


def test_attention_resolutions_count_the_shorter_side():
    """On 16 x 24 images the tiny U-Net's two levels have 16 x 24 and 8 x 12 maps: attention at 8 is the second."""
    net = build_model(ModelConfig(kind="unet", unet="tiny", attention_resolutions=[8]), (3, 16, 24))
    assert [[blk.attn is not None for blk in level.blocks] for level in net.down] == [[False], [True]]
    x = torch.randn(2, 3, 16, 24)
    assert net(x, torch.zeros(2)).shape == x.shape
    with pytest.raises(ConfigError, match="match no level"):  # 12 is a side of the longer edge only
        build_model(ModelConfig(kind="unet", unet="tiny", attention_resolutions=[12]), (3, 16, 24))
    odd = build_model(ModelConfig(kind="unet", unet="tiny"), (1, 15, 22))  # padded to even sides, cropped back
    assert odd(torch.randn(2, 1, 15, 22), torch.zeros(2)).shape == (2, 1, 15, 22)


@pytest.mark.slow
def test_evaluate_measures_the_colours_of_a_non_square_run(mixed_run, tmp_path):
    run, _ = mixed_run
    out = tmp_path / "e.json"
    r = ddpm("evaluate", run, "--n", "6", "--steps", "2", "--json", out, "--quiet")
    assert r.returncode == 0, r.stderr
    color = json.loads(out.read_text())["color"]
    assert color["channels"] == ["R", "G", "B"] and color["n"] == 6 and color["n_reference"] == 14
    assert "colour (pixel values 0-255)" in r.stdout and "samples - data" in r.stdout
    too_many = ddpm("evaluate", run, "--n", "9", "--quiet")  # 14 images: the floor's 9 leave 5 of the 6 needed
    assert too_many.returncode == 1 and "evaluate at most --n 8" in too_many.stderr
