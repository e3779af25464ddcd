"""Atomic checkpoints of a run's state (any pytree of arrays and plain Python values).

A checkpoint is written to a temporary file in the same folder, flushed to disk and then
renamed over its final name, so a crash never leaves a half-written checkpoint behind.
Files start with a magic header and end with a SHA-256 of their body: a truncated or
altered file is reported as corrupt instead of being half-read.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = ["CheckpointError", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

_MAGIC = b"PPLBNN-CKPT-1\n"
_NAME = re.compile(r"checkpoint_(\d+)\.pkl$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt or not a ppl_bnn checkpoint."""


def save_checkpoint(path: str | os.PathLike, state: Any) -> Path:
    """Write ``state`` (arrays are fetched to numpy) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = pickle.dumps(jax.tree.map(np.asarray, jax.device_get(state)), protocol=5)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + body + hashlib.sha256(body).digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> Any:
    """Read a checkpoint written by :func:`save_checkpoint`; raise ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    raw = path.read_bytes()
    if not raw.startswith(_MAGIC) or len(raw) < len(_MAGIC) + 32:
        raise CheckpointError(f"corrupt checkpoint {path}: not a ppl_bnn checkpoint")
    body, digest = raw[len(_MAGIC) : -32], raw[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(
            f"corrupt checkpoint {path}: checksum mismatch (truncated or altered)"
        )
    try:
        return pickle.loads(body)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means corruption
        raise CheckpointError(f"corrupt checkpoint {path}: {e}") from None


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"checkpoint_{step:06d}.pkl"


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``folder``, or ``None``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.search(p.name))]
    return max(found)[1] if found else None
