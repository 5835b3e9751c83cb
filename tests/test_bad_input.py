"""The bad-input table: each case is a real command on real files; it must print one line on
stderr that names the problem and the fix, exit with the code shown, and change nothing on disk.

``docs/errors.md`` is this table with the messages the commands actually print; the last test
checks that it is up to date (``DDPM_WRITE_DOCS=1 python -m pytest tests/test_bad_input.py``
rewrites it).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ddpm.cli import main
from ddpm.train import checkpoint as ckpt

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
FAST = ["--quiet", "--steps", "20", "--set", "sample.n=10", "--set", "diffusion.T=50"]

#: (case, command with {run}, {damaged}, {nan_run}, {tmp} placeholders, what the message must name, exit code)
CASES = [
    ("unknown option", "train --data moons --set train.speed=3", "unknown option 'train.speed'", 1),
    ("option out of range", "train --data moons --set model.width=-5", "model.width=-5", 1),
    ("an unknown time embedding", "train --data moons --set model.time_embedding=learned", "model.time_embedding", 1),
    ("sampling steps beyond T (found before training)", "train --data moons --set sample.steps=5000", "sample.steps", 1),
    ("negative DDIM eta (found before training)", "train --data moons --set sample.eta=-1", "sample.eta", 1),
    ("learning-rate floor above the rate", "train --data moons --set train.min_lr=1", "train.min_lr", 1),
    ("two forms of the EMA at once", "train --data moons --set train.ema_std=0.1 --set train.ema_halflife_kimg=10",
     "train.ema_std", 1),
    ("a sigma range on the chain's own steps (found before training)",
     "train --data moons --set sample.sampler=ddim --set sample.sigma_min=0.1", "sample.sigma_min", 1),
    ("unknown preset", "train --preset imagenet", "unknown preset", 1),
    ("unknown data set", "train --data swissrol", "unknown data set", 1),
    ("an image size that is neither a side nor H,W", "train --data digits --set data.image_size=32x", "H,W or HxW", 1),
    ("a data path that does not exist", "train --data {tmp}/nowhere/images", "does not exist", 1),
    ("a damaged .tar.gz", "train --data {tmp}/cifar-10-binary.tar.gz", "tar archive", 1),
    ("NaN in an array file", "train --data {tmp}/nan.npy", "NaN", 1),
    ("an object (pickled) array file", "train --data {tmp}/objects.npz", "Python objects", 1),
    ("images too small for the network", "train --data {tmp}/tiny.npz --out {tmp}/new", "cannot take", 1),
    ("compiled training of diffusers' U-Net on the CPU",
     "train --data digits --set model.kind=diffusers --set train.compile=default --set train.device=cpu --out {tmp}/new",
     "train.compile", 1),
    ("an existing run as --out", "train --data moons --out {run}", "already holds a run", 1),
    ("resume changing the network", "train --resume {run} --set model.width=64", "model.width", 1),
    ("resume of something that is not a run", "train --resume {tmp}", "not a run directory", 1),
    ("sample zero images", "sample {run} --n 0", "sample.n", 1),
    ("sample a negative number", "sample {run} --n -3", "sample.n", 1),
    ("sample in batches of zero", "sample {run} --batch-size 0", "sample.batch_size", 1),
    ("more sampling steps than T", "sample {run} --steps 500", "sample.steps", 1),
    ("a sigma range beyond the chain's", "sample {run} --sampler dpm++ --sigma-max 1e6", "sample.sigma_max", 1),
    ("an output folder that is a file", "sample {run} --out {tmp}/tiny.npz/s.npz", "is a file, not a folder", 1),
    ("a checkpoint that does not exist", "sample {run} --checkpoint 999", "no checkpoint at step 999", 1),
    ("damaged weights", "sample {damaged}", "damaged", 1),
    ("weights holding NaN", "sample {nan_run}", "non-finite", 1),
    ("not a run directory", "sample {tmp}", "not a run directory", 1),
    ("evaluate a sample file without --data", "evaluate --samples {tmp}/tiny.npz", "--data", 1),
    ("feature spaces for 2-D data", "evaluate {run} --features inception", "leave out --features", 1),
    ("--bpd-only without --bpd", "evaluate {run} --bpd-only", "add --bpd", 1),
    ("a bad sampler option beside --bpd (found before the bound)", "evaluate {run} --bpd --sigma-max 1e6",
     "sample.sigma_max", 1),
    ("a metrics file for the bound alone", "evaluate {run} --bpd --bpd-only --json {tmp}/bound.json",
     "leave out --json", 1),
    ("report of something that is not a run", "report {tmp}", "not a run directory", 1),
    ("export of a 2-D run to diffusers", "export {run} {tmp}/exported", "only U-Net image runs", 1),
    ("import of a folder that is not a diffusers pipeline", "import {tmp} --out {tmp}/imported",
     "model_index.json is missing", 1),
    ("a command line that argparse rejects", "sample {run} --n three", "invalid int value", 2),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("world")
    run = tmp / "run"
    assert main(["train", "--data", "moons", "--out", str(run), *FAST]) == 0
    damaged = tmp / "damaged"
    shutil.copytree(run, damaged)
    (damaged / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:-64])
    nan_run = tmp / "nan_run"
    shutil.copytree(run, nan_run)
    state = {k: torch.full_like(v, float("nan")) for k, v in load_file(str(run / "model.safetensors")).items()}
    ckpt.atomic_save(state, nan_run / "model.safetensors", ckpt.read_metadata(run / "model.safetensors"))
    (tmp / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b" + bytes(range(200)))
    arr = np.zeros((4, 8, 8), np.float32)
    arr[0, 0, 0] = np.nan
    np.save(tmp / "nan.npy", arr)
    np.savez(tmp / "objects.npz", x=np.array([{"a": 1}, None], dtype=object))
    np.savez(tmp / "tiny.npz", x=np.zeros((8, 1, 1), np.uint8))
    return {"run": run, "damaged": damaged, "nan_run": nan_run, "tmp": tmp}


def files(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


RESULTS = {}  # command -> its completed process, so the document reuses the cases' own runs


def run_case(world, command: str):
    if command not in RESULTS:
        args = [a.format(**world) for a in command.split()]
        RESULTS[command] = subprocess.run([sys.executable, "-m", "ddpm", *args], capture_output=True, text=True,
                                          cwd=world["tmp"], env={**os.environ, "OMP_NUM_THREADS": "1"})
    return RESULTS[command]


def message(r) -> str:
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith(("ddpm: error:", "ddpm "))]
    return lines[-1] if lines else r.stderr.strip()


@pytest.mark.parametrize("case, command, fragment, code", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(world, case, command, fragment, code):
    before = files(world["tmp"])
    RESULTS.pop(command, None)
    r = run_case(world, command)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("ddpm: error:")]
    if code == 1:
        assert len(errors) == 1, r.stderr
    assert fragment in message(r), message(r)
    assert files(world["tmp"]) == before  # nothing created, changed or removed


def rendered_table(world) -> str:
    rows = ["| case | command | message | exit |", "|---|---|---|---|"]
    for case, command, _, code in CASES:
        text = message(run_case(world, command))
        for key, path in world.items():
            text = text.replace(str(path), "{" + key + "}")
        text = re.sub(r"\(relative to [^)]*\)", "(relative to the working folder)", text)
        rows.append(f"| {case} | `ddpm {command}` | {text.replace('|', '/')} | {code} |")
    return "\n".join(rows)


def test_the_errors_document_is_the_table_of_these_cases(world):
    head = DOC.read_text().split("<!-- table -->")[0] if DOC.is_file() else ""
    page = head + "<!-- table -->\n" + rendered_table(world) + "\n"
    if os.environ.get("DDPM_WRITE_DOCS"):
        DOC.write_text(page)
    assert DOC.read_text() == page, "docs/errors.md is out of date: DDPM_WRITE_DOCS=1 python -m pytest tests/test_bad_input.py"
