"""Checkpoints that cannot run code: arrays in ``.npz``, structure and scalars in JSON.

A checkpoint is one uncompressed ``.npz`` file (a zip of ``.npy`` arrays) with:

* ``__tree__``: the pytree's structure as UTF-8 JSON (stored as a ``uint8`` array): dicts,
  lists, tuples, ``None``, Python numbers and strings inline; NamedTuples by name, restored
  only for the types in :func:`allowed_types`; every array as a reference ``{"array": i}``
  to the member ``i``;
* ``__sha256__``: SHA-256 of the JSON and of every array's dtype, shape and bytes;
* ``0``, ``1``, ...: the arrays, read with ``np.load(..., allow_pickle=False)``.

Nothing in the file is executed or imported when it is read: an unknown type name, an
object array or a member that should not be there makes it a foreign file
(:class:`CheckpointError`). JAX key arrays are stored as their ``uint32`` key data and their
implementation's name, and restored as key arrays; other JAX arrays come back as numpy
arrays of the same dtype and bits; ``numpy`` scalars (``np.float64(1.5)``) as ``numpy``
scalars.

Writes are atomic: a temporary ``.tmp-*`` file in the same folder, flushed and ``fsync``-ed,
then renamed over the final name, so a crash leaves the previous checkpoint whole.

:class:`CheckpointStore` keeps a run's resume state: the latest ``keep`` checkpoints
(``checkpoint_000123.npz``), falling back to the previous valid one when the latest is
corrupt. Checkpoints in the format of an unreleased version (ppl_bnn 0.1: pickles,
``checkpoint_000123.pkl``) are refused in one line naming the file: such a run must be
restarted.

The NamedTuple types a checkpoint may hold are those of the kernels below this package
(:data:`STATE_MODULES`), of BlackJAX, NumPyro and optax, and those of the modules the layers
above register by name (:func:`register_state_modules`: the drivers' run states); this
module imports nothing from those layers itself.

One module (about 600 lines) on purpose: the codec, its type allow-list, the hash check
and the atomic rotating store are one file format, and its guarantees (nothing runs on
load, a damaged file falls back to the previous checkpoint, one-line errors) are tested
together; apart, a reader could change without its writer.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = [
    "CheckpointError",
    "CheckpointStore",
    "allowed_types",
    "atomic_write",
    "checkpoint_path",
    "latest_checkpoint",
    "load_checkpoint",
    "register_state_modules",
    "register_type",
    "remove_orphans",
    "save_checkpoint",
]

FORMAT = "ppl_bnn-checkpoint"
VERSION = 2
_TREE, _DIGEST = "__tree__", "__sha256__"
_NAME = re.compile(r"checkpoint_(\d{6,})\.npz")
_OLD_NAME = re.compile(r"checkpoint_(\d{6,})\.pkl")
_OLD_MAGIC = b"PPLBNN-CKPT-1\n"  # ppl_bnn 0.1 (unreleased): a pickle, refused
_ZIP_MAGIC = b"PK\x03\x04"
TMP_PREFIX = ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, foreign or not a ppl_bnn checkpoint."""


# ------------------------------------------------------------------ allowed types
# the modules below the store whose NamedTuples (sampler states) checkpoints may hold
STATE_MODULES = (
    "ppl_bnn.inference.hmc",
    "ppl_bnn.inference.nuts",
    "ppl_bnn.inference.optimize",
    "ppl_bnn.inference.sgmcmc",
    "ppl_bnn.inference.warmup",
)
# the modules of the layers above that registered theirs (register_state_modules)
_REGISTERED_MODULES: list[str] = []


def register_state_modules(*names: str) -> None:
    """Allow the NamedTuples defined in the modules ``names`` in checkpoints.

    The layers above the store call this for the modules of their run states (the
    package ``ppl_bnn`` does for the drivers' and the ensemble's), so that any reader knows
    every state type without the store importing those layers. A module is imported
    when the allowed types are first needed (or now, when they already were).
    """
    new = [name for name in names if name not in _REGISTERED_MODULES]
    _REGISTERED_MODULES.extend(new)
    if _ALLOWED is not None:
        _ALLOWED.update(_module_types(new))


def _namedtuples(module: Any, *, defined_here: bool) -> list[type]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, tuple)
        and hasattr(value, "_fields")
        and (not defined_here or value.__module__ == module.__name__)
    ]


def _allowed_types() -> dict[str, type]:
    """The NamedTuple types a checkpoint may hold, by ``module.QualName``.

    A NamedTuple in a file is restored only if its name is here; the name is looked up,
    never imported, and restoring one only calls the tuple constructor with arrays and
    plain values. Allowed: the NamedTuples defined in :data:`STATE_MODULES` and in the
    modules given to :func:`register_state_modules`, blackjax's
    ``HMCState`` and window-adaptation states, numpyro's ``SVIState`` and ``ParamShape``
    and optax's optimiser states.
    :func:`register_type` adds one.
    """
    import optax
    from blackjax.adaptation.mass_matrix import MassMatrixAdaptationState, WelfordAlgorithmState
    from blackjax.adaptation.step_size import DualAveragingAdaptationState
    from blackjax.mcmc.hmc import HMCState
    from numpyro.contrib.module import ParamShape
    from numpyro.infer.svi import SVIState

    found: list[type] = [HMCState, SVIState, ParamShape]
    # a window-adapted run's state: readable by every command (any run's positions
    # initialise any other method), not only by one that built a NUTS run first
    found += [MassMatrixAdaptationState, WelfordAlgorithmState, DualAveragingAdaptationState]
    for module in (optax, optax.tree_utils, optax.contrib, optax.schedules):
        found += _namedtuples(module, defined_here=False)  # ScaleByAdamState, TraceState, ...
    allowed = {_type_name(t): t for t in found}
    allowed.update(_module_types([*STATE_MODULES, *_REGISTERED_MODULES]))
    return allowed


def _module_types(names: list[str]) -> dict[str, type]:
    import importlib

    found: list[type] = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional module
            continue
        found += _namedtuples(module, defined_here=True)
    return {_type_name(t): t for t in found}


def _type_name(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


_ALLOWED: dict[str, type] | None = None


def allowed_types() -> dict[str, type]:
    """The allowed NamedTuple types by name (built on first use: it imports optax etc.)."""
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = _allowed_types()
    return _ALLOWED


def register_type(t: type) -> type:
    """Allow the NamedTuple type ``t`` in checkpoints (usable as a class decorator)."""
    allowed_types()[_type_name(t)] = t
    return t


# ---------------------------------------------------------------------- encoding
class _Encoder:
    """Turns a pytree into JSON-able nodes and a list of numpy arrays."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []

    def _array(self, value: np.ndarray, **extra: Any) -> dict[str, Any]:
        self.arrays.append(np.asarray(value, order="C"))  # 0-d stays 0-d
        return {"array": len(self.arrays) - 1, **extra}

    def node(self, x: Any) -> Any:
        if isinstance(x, np.generic):  # before float: np.float64 is a float
            return self._array(np.asarray(x), scalar=True)
        if x is None or isinstance(x, bool | str):
            return x
        if isinstance(x, int):
            return x
        if isinstance(x, float):
            return x if math.isfinite(x) else {"float": repr(x)}
        if isinstance(x, dict):
            for k in x:
                if not isinstance(k, str | int) or isinstance(k, bool):
                    raise TypeError(f"checkpoint dict keys must be str or int, got {k!r}")
            return {"dict": [[k, self.node(v)] for k, v in x.items()]}
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            name = _type_name(type(x))
            if name not in allowed_types():
                raise TypeError(
                    f"{name} is not a checkpointable type: add it with "
                    "ppl_bnn.store.checkpoint.register_type"
                )
            return {"namedtuple": name, "fields": [self.node(v) for v in x]}
        if isinstance(x, tuple):
            return {"tuple": [self.node(v) for v in x]}
        if isinstance(x, list):
            return {"list": [self.node(v) for v in x]}
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            impl = str(jax.random.key_impl(x))
            return self._array(np.asarray(jax.random.key_data(x)), key=impl)
        if isinstance(x, np.ndarray | jax.Array):
            value = np.asarray(jax.device_get(x))
            if value.dtype.kind in "OV" or value.dtype.type.__module__ != "numpy":
                if value.dtype.kind == "O":
                    raise TypeError("object arrays cannot be checkpointed")
                # ml_dtypes (bfloat16, float8...): stored as raw bytes with their name
                raw = value.view(np.uint8).reshape(*value.shape, value.dtype.itemsize)
                return self._array(raw, dtype=value.dtype.name)
            return self._array(value)
        raise TypeError(f"cannot checkpoint a value of type {type(x).__name__}")


def _digest(tree_json: bytes, arrays: list[np.ndarray]) -> bytes:
    h = hashlib.sha256(tree_json)
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.asarray(a, order="C").tobytes())
    return h.digest()


def _encode(tree: Any) -> dict[str, np.ndarray]:
    """The ``.npz`` members of ``tree``: its JSON structure, digest and arrays."""
    enc = _Encoder()
    root = enc.node(tree)
    text = json.dumps(
        {"format": FORMAT, "version": VERSION, "tree": root}, allow_nan=False
    ).encode()
    members = {str(i): a for i, a in enumerate(enc.arrays)}
    members[_TREE] = np.frombuffer(text, np.uint8)
    members[_DIGEST] = np.frombuffer(_digest(text, enc.arrays), np.uint8)
    return members


class _Decoder:
    """Rebuilds a pytree from JSON nodes and the arrays; refuses anything unexpected."""

    def __init__(self, path: Path, arrays: list[np.ndarray]) -> None:
        self.path, self.arrays = path, arrays

    def _fail(self, why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {self.path} is not a ppl_bnn checkpoint: {why}")

    def node(self, n: Any) -> Any:
        if n is None or isinstance(n, bool | int | float | str):
            return n
        if isinstance(n, dict) and len(n) >= 1:
            kind = next(iter(n))
            if kind == "dict":
                return {self._key(k): self.node(v) for k, v in n["dict"]}
            if kind == "tuple":
                return tuple(self.node(v) for v in n["tuple"])
            if kind == "list":
                return [self.node(v) for v in n["list"]]
            if kind == "float" and n["float"] in ("nan", "inf", "-inf"):
                return float(n["float"])
            if kind == "namedtuple":
                t = allowed_types().get(n["namedtuple"])
                if t is None:
                    raise self._fail(f"it holds a {n['namedtuple']!r}, not a type ppl_bnn restores")
                return t(*(self.node(v) for v in n["fields"]))
            if kind == "array":
                return self._leaf(n)
        raise self._fail(f"unexpected node {str(n)[:60]!r}")

    def _key(self, k: Any) -> str | int:
        if isinstance(k, str | int) and not isinstance(k, bool):
            return k
        raise self._fail(f"bad dict key {k!r}")

    def _leaf(self, n: dict[str, Any]) -> Any:
        i = n["array"]
        if not isinstance(i, int) or not 0 <= i < len(self.arrays):
            raise self._fail(f"array reference {i!r} out of range")
        value = self.arrays[i]
        if "key" in n:
            return jax.random.wrap_key_data(jax.numpy.asarray(value), impl=str(n["key"]))
        if "dtype" in n:
            dtype = np.dtype(jax.numpy.dtype(str(n["dtype"])))
            return value.reshape(-1).view(dtype).reshape(value.shape[:-1])
        if n.get("scalar"):
            return value[()]
        return value


# ------------------------------------------------------------------ save / load
def atomic_write(path: Path, write: Callable[[io.BufferedWriter], Any]) -> None:
    """``write(file)`` to a temporary file next to ``path``, fsync it, rename it over ``path``.

    A crash at any point leaves ``path`` as it was (or complete); the temporary
    ``.tmp-*`` file is removed on failure (and by :func:`remove_orphans` after a kill).
    An ``OSError`` names ``path`` (not the temporary file), so that a full disk or a
    read-only folder is reported against the file the user knows.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp creates the file 0600: give it the mode any new file gets (the umask)
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:  # a failed write names no file: name the one being written
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut once the folder is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc``), else by setting it back."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | os.PathLike, tree: Any) -> Path:
    """Write ``tree`` (any pytree of arrays and plain values) atomically to ``path``.

    JAX arrays are fetched to the host first. Raises ``TypeError`` for a value that has no
    safe representation (an arbitrary object, a NamedTuple not in :func:`allowed_types`).
    """
    path = Path(path)
    members = _encode(tree)  # before touching the disk: a bad tree writes nothing
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **members))  # type: ignore[arg-type]
    return path


_UNRELEASED = (
    "is in the format of an unreleased ppl_bnn version (0.1: a pickle, which can run code "
    "when read) and is never read: restart the run into a new --dir"
)


def _refuse_pickle(path: Path, *, unreleased: bool) -> CheckpointError:
    if unreleased:
        return CheckpointError(f"checkpoint {path} {_UNRELEASED}")
    return CheckpointError(
        f"checkpoint {path} is a pickle, which can run code when read, so it is never read"
    )


def load_checkpoint(path: str | os.PathLike) -> Any:
    """Read a checkpoint written by :func:`save_checkpoint`; raise ``CheckpointError``.

    The file is checked whole (zip CRCs, the SHA-256 digest, the structure) before
    anything is returned; no code in it can run.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(len(_OLD_MAGIC))
    if head.startswith(_OLD_MAGIC) or head[:1] == b"\x80":
        raise _refuse_pickle(path, unreleased=head.startswith(_OLD_MAGIC))
    if not head.startswith(_ZIP_MAGIC):
        raise CheckpointError(f"corrupt checkpoint {path}: not a ppl_bnn checkpoint")
    members = _read_members(path)
    text = members.pop(_TREE).tobytes()
    digest = members.pop(_DIGEST).tobytes()
    try:
        arrays = [members.pop(str(i)) for i in range(len(members))]
    except KeyError:
        raise CheckpointError(
            f"checkpoint {path} is not a ppl_bnn checkpoint: unexpected members"
        ) from None
    if _digest(text, arrays) != digest:
        raise CheckpointError(
            f"corrupt checkpoint {path}: checksum mismatch (truncated or altered)"
        )
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than any we write
        raise CheckpointError(f"corrupt checkpoint {path}: unreadable structure") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a ppl_bnn checkpoint")
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {header.get('version')}, this ppl_bnn "
            f"reads version {VERSION}: use the ppl_bnn that wrote it"
        )
    try:
        return _Decoder(path, arrays).node(header["tree"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(f"checkpoint {path} is not a ppl_bnn checkpoint: {e}") from None
    except RecursionError:
        raise CheckpointError(
            f"checkpoint {path} is not a ppl_bnn checkpoint: its structure is nested too deep"
        ) from None


def _read_members(path: Path) -> dict[str, np.ndarray]:
    """Every member of the ``.npz`` at ``path``, read without pickle and CRC-checked."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            names = list(npz.files)
            if _TREE not in names or _DIGEST not in names:
                raise CheckpointError(
                    f"checkpoint {path} is not a ppl_bnn checkpoint: no {_TREE} member"
                )
            return {name: npz[name] for name in names}
    except CheckpointError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise CheckpointError(
                f"checkpoint {path} is not a ppl_bnn checkpoint: it holds Python objects "
                "(pickles), which are never loaded"
            ) from None
        raise CheckpointError(f"corrupt checkpoint {path}: truncated or altered ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"corrupt checkpoint {path}: truncated or altered ({e})") from None
    except (MemoryError, OverflowError):  # an array header declaring an impossible shape
        raise CheckpointError(
            f"corrupt checkpoint {path}: an array declares a shape larger than the file holds"
        ) from None


# ------------------------------------------------------------------- the folder
def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    """``folder/checkpoint_000123.npz``: the one name a checkpoint of ``step`` has."""
    return Path(folder) / f"checkpoint_{step:06d}.npz"


def _steps(folder: Path) -> Iterator[tuple[int, Path]]:
    """``(step, path)`` of every file named exactly like a checkpoint in ``folder``."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if (m := _NAME.fullmatch(p.name)) and p.is_file():
            step = int(m.group(1))
            if p.name == checkpoint_path(folder, step).name:  # not checkpoint_0000011.npz
                yield step, p


def _refuse_old_folder(folder: Path) -> None:
    old = sorted(p.name for p in folder.iterdir() if _OLD_NAME.fullmatch(p.name))
    if old:
        raise CheckpointError(f"checkpoint {folder / old[-1]} {_UNRELEASED}")


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``folder``, or ``None``.

    Raises ``CheckpointError`` when the folder holds only checkpoints of the unreleased
    0.1 format (a fresh start would silently discard that run).
    """
    folder = Path(folder)
    found = sorted(_steps(folder))
    if found:
        return found[-1][1]
    if folder.is_dir():
        _refuse_old_folder(folder)
    return None


def remove_orphans(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.tmp-*`` files a killed write left in ``folder``; return them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    orphans = [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX) and p.is_file()]
    for p in orphans:
        p.unlink(missing_ok=True)
    return orphans


def _warn(message: str) -> None:
    print(f"ppl-bnn: warning: {message}", file=sys.stderr)


class CheckpointStore:
    """A run's resume state: the latest ``keep`` checkpoints in ``folder``.

    Example:
        >>> import numpy as np
        >>> from ppl_bnn.store.checkpoint import CheckpointStore
        >>> store = CheckpointStore("runs/a/checkpoints")   # removes orphaned .tmp-* files
        >>> path = store.save(12, {"step": 12, "position": {"w": np.zeros(3)}})
        >>> step, tree = store.restore()                   # or None for a fresh run
        >>> step, tree["position"]["w"].shape
        (12, (3,))

    ``save(step, tree)`` writes ``checkpoint_{step:06d}.npz`` atomically, then deletes the
    older ones beyond ``keep`` and any with a later step (an abandoned future: a restore
    never starts before the latest valid checkpoint). ``restore()`` reads the latest; when
    it is corrupt it reports that in one line (``warn``) and falls back to the previous
    valid one. Only files named exactly ``checkpoint_NNNNNN.npz`` are checkpoints.

    ``writer=False`` (the non-primary processes of a multi-process run) never writes or
    deletes anything: ``save`` does nothing. ``clean`` (default: ``writer``) removes the
    orphaned ``.tmp-*`` files of a killed write now; a :class:`~ppl_bnn.store.rundir.RunDir`
    passes ``False`` and removes them itself once it holds the run directory's lock.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        keep: int = 2,
        *,
        writer: bool = True,
        warn: Callable[[str], None] = _warn,
        clean: bool | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.folder, self.keep, self.writer, self.warn = Path(folder), keep, writer, warn
        if writer if clean is None else clean:
            remove_orphans(self.folder)

    def path(self, step: int) -> Path:
        return checkpoint_path(self.folder, step)

    def steps(self) -> list[int]:
        """The steps of the checkpoints on disk, ascending."""
        return sorted(step for step, _ in _steps(self.folder))

    def save(self, step: int, tree: Any) -> Path:
        path = self.path(step)
        if not self.writer:
            return path
        save_checkpoint(path, tree)
        kept = [s for s in self.steps() if s <= step][-self.keep :]
        for s, p in _steps(self.folder):
            if s not in kept:
                p.unlink(missing_ok=True)
        return path

    def restore(self) -> tuple[int, Any] | None:
        """``(step, tree)`` of the latest valid checkpoint, or ``None`` when there is none.

        Raises ``CheckpointError`` when there are checkpoints but none is valid.
        """
        found = sorted(_steps(self.folder), reverse=True)
        if not found:
            if self.folder.is_dir():
                _refuse_old_folder(self.folder)
            return None
        errors = []
        for step, path in found:
            try:
                tree = load_checkpoint(path)
            except CheckpointError as e:
                errors.append(str(e))
                continue
            if errors:
                self.warn(f"{errors[0]}; resuming from the previous one, {path.name}")
            return step, tree
        raise CheckpointError(
            f"{errors[0]}; no earlier valid checkpoint in {self.folder}: rerun into a new --dir"
        )
