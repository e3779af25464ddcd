"""Posterior samples on disk: one plain ``.npz`` per kept draw, readable without ppl_bnn.

Layout::

    RUN_DIR/samples/
      sample_000123.npz    one member per site: its value at step 123, shape (chain, ...):
                           every latent site, constrained, and every deterministic site
                           (``numpyro.deterministic``), named as in the model
      stats_000123.npz     what the sampler reported for that draw (``sample_stats/NAME``,
                           ``(chain,)``: acceptance rate, divergence, step size, ...) and,
                           when the run keeps it, the per-row log likelihood
                           (``log_likelihood/SITE``, ``(chain, n_rows)``)

The files hold site values only (no gradients, no mass-matrix accumulators): the resume
state lives in the checkpoints (:class:`~ppl_bnn.store.checkpoint.CheckpointStore`).
Any numpy reads them::

    import numpy as np
    with np.load("runs/a/samples/sample_000123.npz", allow_pickle=False) as f:
        w = f["w"]   # (chain, *site_shape)
    with np.load("runs/a/samples/stats_000123.npz", allow_pickle=False) as f:
        accept = f["sample_stats/acceptance_rate"]   # (chain,)

Thinning keeps the draws whose step is a multiple of ``thin`` (``thin=0`` keeps none), a
rule that a resumed run applies identically. Writes are atomic (a temporary file renamed
over the final name; a draw's statistics before its values), so a killed run never leaves
half a draw, nor a draw without its statistics.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppl_bnn.store.checkpoint import (
    CheckpointError,
    atomic_write,
    load_checkpoint,
    remove_orphans,
)

__all__ = ["SampleStore", "read_arrays", "read_positions", "write_arrays"]

_NAME = re.compile(r"sample_(\d{6,})\.npz")
# the groups of a stats file: member "GROUP/NAME"
STATS_GROUPS = ("sample_stats", "log_likelihood")


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """Write ``arrays`` (name -> array) atomically as an uncompressed ``.npz`` at ``path``.

    Unlike ``np.savez(file, **arrays)`` any name works (``"file"``, ``"a/b"``); object
    arrays are refused, so the file never needs pickle to be read.
    """
    path = Path(path)
    values = {str(k): np.asarray(v) for k, v in arrays.items()}
    for name, value in values.items():
        if value.dtype.kind == "O":
            raise TypeError(f"{name}: object arrays cannot be stored")

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for name, value in values.items():
                with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
    return path


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array in the plain ``.npz`` at ``path``, read without pickle.

    Raises ``CheckpointError`` in one line naming the file: unreadable, truncated, or
    holding Python objects (which would need pickle, and are never loaded).
    """
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as e:
        why = "it holds Python objects (pickles)" if "allow_pickle" in str(e) else str(e)
        raise CheckpointError(f"sample file {path} is not readable: {why}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"corrupt sample file {path}: truncated or altered ({e})") from None


class SampleStore:
    """The posterior samples of a run: ``folder/sample_{step:06d}.npz``, one per kept draw.

    Example:
        >>> import numpy as np
        >>> from ppl_bnn.store.samples import SampleStore
        >>> store = SampleStore("runs/a/samples", thin=2)
        >>> w = np.zeros((4, 3, 4), np.float32)      # (chain, 3, 4)
        >>> store.append(12, {"w": w})               # kept: 12 % 2 == 0
        PosixPath('runs/a/samples/sample_000012.npz')
        >>> store.append(13, {"w": w})               # thinned out
        >>> steps, samples = store.read()
        >>> steps.tolist(), samples["w"].shape       # (chain, draw, 3, 4)
        ([12], (4, 1, 3, 4))

    Call ``append`` for every post-burn-in draw; the store keeps those whose step is a
    multiple of ``thin``. ``writer=False`` (non-primary processes) writes nothing.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        thin: int = 1,
        writer: bool = True,
        clean: bool | None = None,
    ) -> None:
        if thin < 0:
            raise ValueError(f"--keep_samples/thin must be 0 (none) or positive, got {thin}")
        self.folder, self.thin, self.writer = Path(folder), thin, writer
        if writer if clean is None else clean:  # the orphaned .tmp-* files of a killed write
            remove_orphans(self.folder)

    def path(self, step: int) -> Path:
        return self.folder / f"sample_{step:06d}.npz"

    def stats_path(self, step: int) -> Path:
        return self.folder / f"stats_{step:06d}.npz"

    def wants(self, step: int) -> bool:
        """Whether the draw of ``step`` is kept (``step`` a multiple of ``thin``)."""
        return self.thin > 0 and step % self.thin == 0

    def append(
        self,
        step: int,
        positions: Mapping[str, Any],
        stats: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Path | None:
        """Store the draw of ``step`` (site -> ``(chain, ...)``) if kept; its path or ``None``.

        ``stats``: group (``"sample_stats"``, ``"log_likelihood"``) -> name -> ``(chain,
        ...)``, written first, to ``stats_{step}.npz``.
        """
        if not (self.writer and self.wants(step)):
            return None
        flat = {
            f"{group}/{name}": np.asarray(v)
            for group, values in (stats or {}).items()
            for name, v in values.items()
        }
        if flat:
            write_arrays(self.stats_path(step), flat)
        return write_arrays(self.path(step), {k: np.asarray(v) for k, v in positions.items()})

    def steps(self) -> list[int]:
        """The steps of the stored draws, ascending."""
        if not self.folder.is_dir():
            return []
        found = (_NAME.fullmatch(p.name) for p in self.folder.iterdir())
        # only the one name a draw has (sample_000012.npz, not sample_0000012.npz)
        return sorted(
            int(m.group(1)) for m in found if m and m.group(0) == self.path(int(m.group(1))).name
        )

    def truncate(self, last_step: int) -> None:
        """Delete the draws after ``last_step`` (a resumed run writes them again)."""
        if self.writer:
            for step in self.steps():
                if step > last_step:
                    self.path(step).unlink(missing_ok=True)
            for path in self.folder.glob("stats_*.npz") if self.folder.is_dir() else ():
                digits = path.stem.split("_")[1]
                if (
                    digits.isdigit()
                    and path == self.stats_path(int(digits))
                    and int(digits) > last_step
                ):
                    path.unlink(missing_ok=True)

    def read(self, steps: list[int] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(steps, site -> (chain, draw, ...))`` of the stored draws (or of ``steps``).

        Raises ``CheckpointError`` (one line, naming the file) for a missing, corrupt or
        inconsistent draw; ``ValueError`` when there is none.
        """
        steps = self.steps() if steps is None else list(steps)
        if not steps:
            raise ValueError(f"{self.folder} holds no posterior samples")
        draws, first = [], None
        for step in steps:
            path = self.path(step)
            if not path.is_file():
                raise CheckpointError(f"sample file {path} does not exist")
            draw = read_arrays(path)
            layout = {k: v.shape for k, v in draw.items()}
            if first is None:
                first = layout
            elif layout != first:
                raise CheckpointError(
                    f"sample file {path} holds other sites or shapes than {self.path(steps[0])}"
                )
            draws.append(draw)
        assert first is not None
        stacked = {k: np.stack([d[k] for d in draws], axis=1) for k in first}
        return np.asarray(steps), stacked

    def read_stats(self, steps) -> dict[str, dict[str, np.ndarray]]:
        """group -> name -> ``(chain, draw, ...)`` of the statistics of ``steps``.

        Empty when some draw has none (a run written before they were kept); a group or
        name that not every draw holds is left out.
        """
        draws = []
        for step in steps:
            path = self.stats_path(int(step))
            if not path.is_file():
                return {}
            draws.append(read_arrays(path))
        if not draws:
            return {}
        common = set.intersection(*(set(d) for d in draws))
        out: dict[str, dict[str, np.ndarray]] = {}
        for key in sorted(common):
            group, _, name = key.partition("/")
            if group in STATS_GROUPS and name:
                out.setdefault(group, {})[name] = np.stack([d[key] for d in draws], axis=1)
        return out


def read_positions(path: str | os.PathLike, logdensity) -> dict[str, np.ndarray]:
    """The unconstrained positions ``site -> (chain, ...)`` in a sample file or checkpoint.

    ``path`` is a sample file (``sample_000123.npz``: constrained values, unconstrained
    here with the model's bijections) or a checkpoint holding a ``"position"`` (stacked
    over chains or a single position). Only ``logdensity``'s latent sites are returned;
    a missing site or a shape of another model is a one-line ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    if _is_checkpoint(path):
        saved = load_checkpoint(path)
        position = saved.get("position") if isinstance(saved, dict) else None
        if not isinstance(position, dict):
            raise CheckpointError(f"checkpoint {path} holds no parameters ('position')")
        constrained = False
    else:
        position, constrained = read_arrays(path), True
    missing = sorted(set(logdensity.latent_sites) - set(position))
    if missing:
        raise ValueError(f"{path} lacks parameters {missing[:3]} of this model")
    out = {}
    for name in logdensity.latent_sites:
        value, shape = np.asarray(position[name]), tuple(logdensity.shapes[name])
        if value.shape == shape:
            value = value[None]
        elif value.shape[1:] != shape:
            raise ValueError(f"{path}: {name} has shape {value.shape}, expected (chains, *{shape})")
        out[name] = value
    if constrained:
        import jax

        out = jax.tree.map(np.asarray, jax.vmap(logdensity.unconstrain)(out))
    return out


def _is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint rather than a sample file (by its members)."""
    try:
        with zipfile.ZipFile(path) as z:
            return "__tree__.npy" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return True  # not a zip: load_checkpoint says what it is (an old pickle, corrupt)
