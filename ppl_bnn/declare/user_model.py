"""A user's own NumPyro model, named on the command line as ``path/to/file.py:function``.

``ppl-bnn hmc --model=my_models.py:regression --dataset_name=data.npz ...`` loads the
function ``regression`` from ``my_models.py``; it must be a NumPyro model callable as
``model(x, y=None)``. The file is imported as a module of its own (its folder is not put
on ``sys.path``), once per process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["load_model", "model_file_digest"]


def _split(spec: str) -> tuple[Path, str]:
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise ValueError(f"--model={spec!r}: expected path/to/file.py:function")
    if not path.endswith(".py"):
        raise ValueError(f"--model={spec!r}: {path} is not a .py file")
    return Path(path), name


def load_model(spec: str) -> Callable:
    """The NumPyro model named by ``spec`` (``"file.py:function"``).

    Raises a one-line ``ValueError``/``FileNotFoundError`` when the file is missing, does
    not import, lacks the function, or the function cannot be called as ``model(x, y)``.
    """
    path, name = _split(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--model={spec}: file {path} does not exist")
    module_name = (
        "ppl_bnn_user_model_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    )
    module = sys.modules.get(module_name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ValueError(f"--model={spec}: cannot import {path}")
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - report any import failure in one line
            raise ValueError(
                f"--model={spec}: importing {path} failed: {type(e).__name__}: {e}"
            ) from None
        sys.modules[module_name] = module
    fn = getattr(module, name, None)
    if not callable(fn):
        found = sorted(n for n, v in vars(module).items() if inspect.isfunction(v))
        raise ValueError(
            f"--model={spec}: {path} has no function {name!r} (functions: {', '.join(found)})"
        )
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise ValueError(
            f"--model={spec}: {name}{inspect.signature(fn)} cannot be called as model(x, y)"
        ) from None
    return fn


def model_file_digest(spec: str) -> str:
    """SHA-256 of the model file, recorded with a run so that resuming under an edited
    model is noticed."""
    return hashlib.sha256(_split(spec)[0].read_bytes()).hexdigest()
