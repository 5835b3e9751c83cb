"""Where evaluation keeps what it computes once: classifiers and reference features.

``$DDPM_CACHE`` when set, else ``~/.cache/ddpm``. Files are named by everything that
determines their contents and written atomically, so a cache entry is either complete
and right or absent.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("DDPM_CACHE") or Path.home() / ".cache" / "ddpm")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def fingerprint(*arrays) -> str:
    """A short SHA-256 of arrays' shapes, dtypes and bytes: names a data set's exact contents."""
    digest = hashlib.sha256()
    for a in arrays:
        if a is None:
            digest.update(b"none")
            continue
        a = np.ascontiguousarray(np.asarray(a))
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]


def safe_name(text: str) -> str:
    """A file-name-safe form of a data set's name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "data"


def save_npz_atomic(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
