"""Property-based fuzzing: the configuration parser and every data loader, fed random and
corrupted input, either succeed or raise the project's own error type, never anything else."""

import dataclasses
import os
import gzip
import io
import struct
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ddpm.config import SECTIONS, Config, apply_overrides, load_config, make_config, parse_override
from ddpm.data import load_dataset
from ddpm.config import DataConfig
from ddpm.errors import ConfigError, DataError
from ddpm.validate import validate

pytestmark = pytest.mark.filterwarnings("ignore:skipped:UserWarning")  # good files beside the fuzzed one
FUZZ = settings(max_examples=int(os.environ.get("DDPM_FUZZ_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

FIELDS = [f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(getattr(Config(), s))] + ["seed", "preset"]
VALUES = st.one_of(
    st.text(max_size=12), st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True).map(repr),
    st.sampled_from(["none", "true", "[1,2,2]", "[[1,0],[0,1]]", "{a=1}", "1e400", "-0", "''", "[", "nan", "inf"]),
)


@FUZZ
@given(key=st.one_of(st.sampled_from(FIELDS), st.text(max_size=15)), value=VALUES)
def test_overrides_parse_or_raise_config_errors(key, value):
    cfg = make_config(data="moons")
    try:
        k, v = parse_override(f"{key}={value}")
        apply_overrides(cfg, {k: v})
        validate(cfg)
    except ConfigError:
        pass


@FUZZ
@given(text=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.sampled_from([b"[train]\nsteps = 'x'", b"data = 3", b"[model]\nwidth = -1",
                                       b"[sample]\nsteps = 1e9", b"seed = [1]", b"[optim]\n"])))
def test_config_files_load_or_raise_config_errors(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.toml"
        path.write_bytes(text)
        try:
            validate(load_config(path))
        except ConfigError:
            pass


# ------------------------------------------------------------------ data loaders
def valid_files(folder: Path) -> dict[str, bytes]:
    """One small valid file of each format, as bytes keyed by the name it must carry."""
    x = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8), dtype=np.uint8)
    out = {}
    buf = io.BytesIO()
    np.save(buf, x)
    out["a.npy"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, x=x, y=np.arange(6))
    out["a.npz"] = buf.getvalue()
    out["train-images-idx3-ubyte"] = struct.pack(">HBBIII", 0, 8, 3, 6, 8, 8) + x.tobytes()
    out["train-images-idx3-ubyte.gz"] = gzip.compress(out["train-images-idx3-ubyte"])
    buf = io.BytesIO()
    Image.fromarray(x[0]).save(buf, format="PNG")
    out["img.png"] = buf.getvalue()
    buf = io.BytesIO()
    record = np.concatenate([[3], np.zeros(3072, np.uint8)]).astype(np.uint8).tobytes()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)]:
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(record)
            tar.addfile(info, io.BytesIO(record))
    out["cifar-10-binary.tar.gz"] = buf.getvalue()
    return out


VALID = valid_files(Path("."))


def load_bytes(name: str, data: bytes):
    with tempfile.TemporaryDirectory() as d:
        if name.endswith(".png"):
            folder = Path(d) / "images"
            folder.mkdir()
            (folder / name).write_bytes(data)
            (folder / "good.png").write_bytes(VALID["img.png"])
            target = folder
        else:
            target = Path(d) / name
            target.write_bytes(data)
        try:
            ds = load_dataset(DataConfig(name=str(target)))
        except DataError:
            return None
        assert ds.x.dtype.is_floating_point is False and len(ds) > 0
        return ds


def test_the_valid_files_load():
    for name, data in VALID.items():
        assert load_bytes(name, data) is not None, name


@FUZZ
@given(name=st.sampled_from(sorted(VALID)), data=st.binary(max_size=400))
def test_random_bytes_load_or_raise_data_errors(name, data):
    load_bytes(name, data)


@FUZZ
@given(name=st.sampled_from(sorted(VALID)), cuts=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6),
       truncate=st.one_of(st.none(), st.floats(0, 1)))
def test_corrupted_files_load_or_raise_data_errors(name, cuts, truncate):
    data = bytearray(VALID[name])
    for where, value in cuts:
        data[min(int(where * len(data)), len(data) - 1)] = value
    if truncate is not None:
        data = data[: int(truncate * len(data))]
    load_bytes(name, bytes(data))
