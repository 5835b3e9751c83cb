"""Checkpoints that hold everything needed to continue training, and load without pickle.

A checkpoint is a directory ``checkpoints/step_XXXXXXXX`` with ``weights.safetensors``
(``model.*`` and ``ema.*`` tensors) and ``state.safetensors`` (optimizer tensors, RNG
states, data order), whose metadata carries the non-tensor state as JSON. It is written
into a temporary directory and renamed into place, so a crash never leaves a partial one.
Every file carries the SHA-256 of its tensors in its metadata, checked when it is read:
a damaged file is named, never loaded.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..errors import RunError

WEIGHTS = "weights.safetensors"
STATE = "state.safetensors"


CHECKSUM = "sha256"


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    """Write a safetensors file, with the checksum of its tensors, via a temporary file and an atomic
    rename. A failed write (a full disk) removes the temporary file and raises :class:`RunError`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    meta[CHECKSUM] = json.dumps(checksum(tensors))
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:
        tmp.unlink(missing_ok=True)
        raise RunError(f"could not write {path} ({_reason(e)}): free disk space or choose another location") from None


def _reason(e: Exception) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]


def read_metadata(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    except (OSError, SafetensorError, ValueError) as e:
        raise RunError(f"{path} is damaged or not a safetensors file ({_reason(e)}): {_FIX}") from None


_FIX = "delete it to fall back on an older checkpoint, or train again"


def load_verified(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata of a safetensors file, after checking its checksum (files written
    before checksums existed load unchecked). A damaged file raises :class:`RunError` naming it."""
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise RunError(f"{path} is damaged ({_reason(e)}): {_FIX}") from None
    expected = meta.pop(CHECKSUM, None)
    if expected is not None and checksum(tensors) != expected:
        raise RunError(f"{path} is damaged (its contents do not match its checksum): {_FIX}")
    return tensors, meta


def flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer ``state_dict`` -> (tensors, JSON-able rest)."""
    tensors, scalars = {}, {}
    for idx, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: Path, step: int, weights: dict, state_tensors: dict, state_meta: dict, keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically and keep only the newest ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        atomic_save(weights, tmp / WEIGHTS, {"step": step})
        atomic_save(state_tensors, tmp / STATE, state_meta)
    except RunError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / WEIGHTS).is_file() and (p / STATE).is_file())


def latest_checkpoint(run_dir: Path) -> Path:
    found = list_checkpoints(run_dir)
    if not found:
        raise RunError(f"no checkpoint in {Path(run_dir) / 'checkpoints'}: train first with `ddpm train --out {run_dir}`")
    return found[-1]


def load_checkpoint(ckpt: Path) -> tuple[dict, dict, dict]:
    """(weights tensors, state tensors, state metadata) of one checkpoint, both files verified."""
    weights, _ = load_verified(Path(ckpt) / WEIGHTS)
    state, meta = load_verified(Path(ckpt) / STATE)
    return weights, state, meta


def newest_intact_checkpoint(run_dir: Path) -> tuple[Path, tuple[dict, dict, dict], list[str]] | None:
    """The newest checkpoint whose files are intact, its contents, and the reasons the newer ones
    were passed over; None when there is no intact checkpoint."""
    skipped = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path), skipped
        except RunError as e:
            skipped.append(str(e).split(":")[0] if "damaged" in str(e) else str(e))
    if skipped:
        raise RunError(f"every checkpoint in {Path(run_dir) / 'checkpoints'} is damaged ({skipped[0]}): train again")
    return None


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Tensors whose names start with ``prefix.``, prefix removed."""
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_weights(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """Verified tensors of ``path`` whose names start with ``prefix.``, prefix removed."""
    return strip_prefix(load_verified(path)[0], prefix)
