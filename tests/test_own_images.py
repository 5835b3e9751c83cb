"""A user's own images: H,W sizes, the resize policy, channels from the folder, transparency and
palettes converted with a warning, and the data summary with its small-set warning."""

import warnings

import numpy as np
import pytest
from PIL import Image

from ddpm.config import load_config, make_config, parse_override, save_config
from ddpm.data import load_dataset
from ddpm.data.images import load_image_data
from ddpm.data.summary import SMALL_DATA, small_data_warning, summarize, summary_lines
from ddpm.errors import ConfigError, DataError
from ddpm.validate import validate


def rng_images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def no_warnings(load):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load()


# ---------------------------------------------------------------- data.image_size
@pytest.mark.parametrize("text, size", [
    ("32", 32), ("32,48", [32, 48]), ("32x48", [32, 48]), (" 32 X 48 ", [32, 48]), ("[32,48]", [32, 48]),
    ("[32,32]", 32), ("32x32", 32), ("[24]", 24), ("none", None),
])
def test_image_size_is_one_side_or_height_and_width(text, size, tmp_path):
    cfg = make_config(data="digits", overrides=dict([parse_override(f"data.image_size={text}")]))
    assert cfg.data.image_size == size
    validate(cfg)
    save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg  # [H, W] round-trips through TOML


@pytest.mark.parametrize("text", ["32x", "abc", "[1,2,3]", "3.5", "-1,4", "true", "[]", "32x48x3", "1e400"])
def test_image_sizes_that_are_not_sides_name_the_field_and_the_fix(text):
    with pytest.raises(ConfigError, match=r"data.image_size=.* is invalid: .*H,W or HxW \(e.g. 32,48"):
        make_config(data="digits", overrides=dict([parse_override(f"data.image_size={text}")]))


@pytest.mark.parametrize("size", [[0, 4], -3, [4, -1]])
def test_image_sizes_below_one_are_refused_by_validation(size):
    cfg = make_config(data="digits", overrides={"data.image_size": size})
    with pytest.raises(ConfigError, match="data.image_size=.*positive"):
        validate(cfg)
    with pytest.raises(DataError, match="positive integer"):
        load_image_data("digits", image_size=size)


# ---------------------------------------------------------------- the resize policy
def test_non_square_images_keep_their_aspect_cover_the_target_and_are_centre_cropped(tmp_path):
    """Target 8 x 12 (height x width): each image is scaled by max(8 / h, 12 / w), then the centre is cut."""
    wide = rng_images((8, 24, 3), 1)  # scale 1: columns 6..17 are kept
    tall = rng_images((32, 12, 3), 2)  # scale 1: rows 12..19 are kept
    base = rng_images((8, 12, 3), 3)
    big = np.kron(base, np.ones((2, 2, 1), np.uint8))  # 16 x 24 of 2x2 blocks: a box filter halves it exactly
    square = rng_images((10, 10, 3), 4)  # scale 1.2: bicubic to 12 x 12, rows 2..9 kept
    for name, a in (("a_wide", wide), ("b_tall", tall), ("c_big", big), ("d_square", square)):
        save(tmp_path / f"{name}.png", a)
    cfg = make_config(data=str(tmp_path), overrides=dict([parse_override("data.image_size=8x12")]))
    d = load_dataset(cfg.data)
    assert d.x.shape == (4, 3, 8, 12)
    x = d.x.numpy().transpose(0, 2, 3, 1)
    assert np.array_equal(x[0], wide[:, 6:18])
    assert np.array_equal(x[1], tall[12:20])
    assert np.array_equal(x[2], base)
    enlarged = np.asarray(Image.fromarray(square).resize((12, 12), Image.Resampling.BICUBIC))
    assert np.array_equal(x[3], enlarged[2:10])


def test_arrays_are_fitted_by_the_same_policy(tmp_path):
    x = rng_images((3, 8, 24))
    np.save(tmp_path / "wide.npy", x)
    d = load_image_data(str(tmp_path / "wide.npy"), image_size=(8, 12))
    assert d.x.shape == (3, 1, 8, 12) and np.array_equal(d.x[:, 0].numpy(), x[:, :, 6:18])


def test_images_of_different_sizes_without_image_size_say_how_to_fit_them(tmp_path):
    save(tmp_path / "a.png", rng_images((8, 12)))
    save(tmp_path / "b.png", rng_images((12, 8)))
    with pytest.raises(DataError, match=r"height x width 8x12 a.png, 12x8 b.png.*data.image_size=48,64"):
        load_image_data(str(tmp_path))


# ---------------------------------------------------------------- channels
def gray_folder(folder):
    """Grayscale files of modes L, 1 and I;16, all 6 x 10 (height x width); their 8-bit pixels."""
    a, b = rng_images((6, 10), 1), rng_images((6, 10), 2)
    save(folder / "a.png", a)
    Image.fromarray(b > 127).save(folder / "b.png")  # mode "1"
    Image.fromarray(a.astype(np.uint16) * 257).save(folder / "c.png")  # 16-bit: v * 257 >> 8 == v
    assert [Image.open(folder / n).mode for n in ("a.png", "b.png", "c.png")] == ["L", "1", "I;16"]
    return np.stack([a, np.where(b > 127, 255, 0).astype(np.uint8), a])


def test_a_grayscale_folder_gives_one_channel_a_mixed_one_three(tmp_path):
    gray = gray_folder(tmp_path)
    d = no_warnings(lambda: load_image_data(str(tmp_path)))
    assert d.x.shape == (3, 1, 6, 10) and np.array_equal(d.x[:, 0].numpy(), gray)
    rgb = rng_images((6, 10, 3), 3)
    save(tmp_path / "d.png", rgb)
    mixed = load_image_data(str(tmp_path))
    assert mixed.x.shape == (4, 3, 6, 10)
    assert np.array_equal(mixed.x[:3].numpy(), np.repeat(gray[:, None], 3, axis=1))  # gray replicated
    assert np.array_equal(mixed.x[3].numpy(), rgb.transpose(2, 0, 1))


def test_data_channels_overrides_the_folder(tmp_path):
    gray = gray_folder(tmp_path)
    cfg = make_config(data=str(tmp_path), overrides={"data.channels": 3})
    assert np.array_equal(load_dataset(cfg.data).x.numpy(), np.repeat(gray[:, None], 3, axis=1))
    rgb = rng_images((6, 10, 3), 3)
    save(tmp_path / "d.png", rgb)
    cfg = make_config(data=str(tmp_path), overrides={"data.channels": 1})
    d = load_dataset(cfg.data)
    assert d.x.shape == (4, 1, 6, 10)
    assert np.array_equal(d.x[3, 0].numpy(), np.asarray(Image.fromarray(rgb).convert("L")))


# ---------------------------------------------------------------- transparency and palettes
def composite(colour, alpha, background):
    """round((c a + b (255 - a)) / 255), in floating point (exact halves cannot occur)."""
    c, a = colour.astype(np.float64), alpha.astype(np.float64)[..., None]
    return np.rint((c * a + background * (255 - a)) / 255).astype(np.uint8)


@pytest.mark.parametrize("policy, background, said", [("white", 255, "alpha composited on white"),
                                                      ("black", 0, "alpha composited on black"),
                                                      ("drop", None, "alpha dropped")])
def test_transparent_pixels_follow_data_alpha_with_a_warning_saying_how(tmp_path, policy, background, said):
    rgba = rng_images((6, 10, 4), 5)
    rgba[0, :, 3], rgba[1, :, 3] = 0, 255  # fully transparent and fully opaque rows among partial ones
    la = rng_images((6, 10, 2), 6)
    save(tmp_path / "a.png", rgba, "RGBA")
    save(tmp_path / "b.png", la, "LA")
    save(tmp_path / "c.png", rng_images((6, 10, 3), 7))
    cfg = make_config(data=str(tmp_path), overrides={"data.alpha": policy})
    others = [p for p in ("white", "black", "drop") if p != policy]
    with pytest.warns(UserWarning, match=rf"2 of 3 images in .* have transparent pixels \(modes RGBA, LA\): "
                                         rf"{said}; to change this set data.alpha={others[0]} .* or data.alpha={others[1]}"):
        d = load_dataset(cfg.data)
    x = d.x.numpy().transpose(0, 2, 3, 1)
    if background is None:
        expected_rgb, expected_gray = rgba[..., :3], la[..., 0]
    else:
        expected_rgb, expected_gray = composite(rgba[..., :3], rgba[..., 3], background), \
            composite(la[..., :1], la[..., 1], background)[..., 0]
    assert np.array_equal(x[0], expected_rgb)
    assert np.array_equal(x[1], np.repeat(expected_gray[..., None], 3, axis=2))  # LA is gray: replicated


def test_gray_with_alpha_stays_one_channel_and_opaque_alpha_is_silent(tmp_path):
    la, rgba = rng_images((6, 10, 2), 6), rng_images((6, 10, 4), 5)
    la[..., 1], rgba[..., 3] = 255, 255  # alpha channels, every pixel opaque: lossless
    save(tmp_path / "gray" / "a.png", la, "LA")
    save(tmp_path / "colour" / "a.png", rgba, "RGBA")
    gray = no_warnings(lambda: load_image_data(str(tmp_path / "gray")))
    assert gray.x.shape == (1, 1, 6, 10) and np.array_equal(gray.x[0, 0].numpy(), la[..., 0])
    colour = no_warnings(lambda: load_image_data(str(tmp_path / "colour")))
    assert np.array_equal(colour.x[0].numpy(), rgba[..., :3].transpose(2, 0, 1))


def test_palette_images_are_converted_through_their_palette_with_a_warning(tmp_path):
    rgb = rng_images((6, 10, 3), 8)
    palette = Image.fromarray(rgb).convert("P")
    palette.save(tmp_path / "a.png")
    save(tmp_path / "b.png", rng_images((6, 10), 9))
    with pytest.warns(UserWarning, match=r"1 of 2 images in .* are palette images \(mode P\): converted through "
                                         r"their palette to RGB; set data.channels=1"):
        d = load_image_data(str(tmp_path))
    assert d.x.shape == (2, 3, 6, 10)
    assert np.array_equal(d.x[0].numpy(), np.asarray(palette.convert("RGB")).transpose(2, 0, 1))
    with pytest.warns(UserWarning, match="to grayscale; leave data.channels unset to keep their colours"):
        gray = load_image_data(str(tmp_path), channels=1)
    assert np.array_equal(gray.x[0, 0].numpy(), np.asarray(palette.convert("L")))


def test_a_transparent_palette_colour_is_composited(tmp_path):
    indices = np.arange(60, dtype=np.uint8).reshape(6, 10) % 4
    img = Image.fromarray(indices, "P")
    img.putpalette([10, 20, 30, 200, 100, 0, 0, 0, 255, 90, 90, 90])
    img.save(tmp_path / "a.png", transparency=1)  # palette index 1 is transparent
    with pytest.warns(UserWarning) as record:
        d = load_image_data(str(tmp_path))
    messages = " ".join(str(w.message) for w in record)
    assert "palette images" in messages and "transparent pixels (modes P): alpha composited on white" in messages
    colours = np.array([[10, 20, 30], [255, 255, 255], [0, 0, 255], [90, 90, 90]], np.uint8)
    assert np.array_equal(d.x[0].numpy().transpose(1, 2, 0), colours[indices])


# ---------------------------------------------------------------- the summary
def test_the_summary_counts_sizes_and_modes_and_gives_channel_statistics(tmp_path):
    files = [("a.png", rng_images((20, 30, 3), 1), None), ("b.png", rng_images((20, 30, 3), 2), None),
             ("c.png", rng_images((40, 24), 3), None), ("d.png", rng_images((16, 12, 4), 4), "RGBA")]
    for name, a, mode in files:
        save(tmp_path / "cats" / name, a, mode)
    save(tmp_path / "dogs" / "e.png", rng_images((20, 30, 3), 5))
    with pytest.warns(UserWarning, match="transparent"):
        d = load_image_data(str(tmp_path), image_size=(8, 12))
    s = summarize(d)
    assert s["images"] == 5 and s["shape"] == [3, 8, 12] and s["classes"] == 2 and s["data"] == tmp_path.name
    assert s["source_sizes"] == {"20x30": 3, "40x24": 1, "16x12": 1}
    assert s["source_modes"] == {"RGB": 3, "L": 1, "RGBA": 1}
    pixels = d.x.numpy().astype(np.float64)  # what is trained on, computed here independently
    np.testing.assert_allclose(s["mean"], [pixels[:, c].mean() for c in range(3)], rtol=1e-12)
    np.testing.assert_allclose(s["std"], [pixels[:, c].std() for c in range(3)], rtol=1e-12)
    assert s["channels"] == ["R", "G", "B"] and s["unit"] == "pixel values 0-255"
    text = "\n".join(summary_lines(s))
    assert f"data {tmp_path.name}: 5 images, 2 classes, trained as 3 x 8 x 12 (C x H x W)" in text
    assert "sizes in the source (H x W): 20x30 (3), 40x24 (1), 16x12 (1)" in text
    assert "modes in the source: RGB (3), L (1), RGBA (1)" in text
    assert f"R {s['mean'][0]:.1f} / {s['std'][0]:.1f}" in text


def test_the_summary_of_arrays_and_built_ins(tmp_path):
    np.savez(tmp_path / "x.npz", x=rng_images((7, 5, 9, 3)))
    s = summarize(load_image_data(str(tmp_path / "x.npz"), channels=1))
    assert s["source_sizes"] == {"5x9": 7} and s["source_modes"] == {"RGB": 7} and s["channels"] == ["gray"]
    digits = summarize(load_image_data("digits", image_size=(8, 12)))
    assert digits["source_sizes"] == {"8x8": 1621} and digits["shape"] == [1, 8, 12] and digits["classes"] == 10


def test_small_sets_draw_the_memorisation_warning():
    assert small_data_warning(SMALL_DATA) is None and SMALL_DATA == 5000
    message = small_data_warning(40)
    assert message.startswith("40 training images is few enough (under 5,000)")
    assert "memorise" in message and "`ddpm evaluate RUN`" in message and "memorisation check" in message
