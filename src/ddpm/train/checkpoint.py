"""Checkpoints that hold everything needed to continue training, and load without pickle.

A checkpoint is a directory ``checkpoints/step_XXXXXXXX`` with ``weights.safetensors``
(``model.*`` and ``ema.*`` tensors) and ``state.safetensors`` (optimizer tensors, RNG
states, data order), whose metadata carries the non-tensor state as JSON. It is written
into a temporary directory and renamed into place, so a crash never leaves a partial one.
"""

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from ..errors import RunError

WEIGHTS = "weights.safetensors"
STATE = "state.safetensors"


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    """Write a safetensors file via a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)


def read_metadata(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}


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
    atomic_save(weights, tmp / WEIGHTS, {"step": step})
    atomic_save(state_tensors, tmp / STATE, state_meta)
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


def load_weights(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """Tensors of ``path`` whose names start with ``prefix.``, prefix removed."""
    tensors = load_file(str(path))
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_state(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(ckpt) / STATE
    return load_file(str(path)), read_metadata(path)
