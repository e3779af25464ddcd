"""One folder per run: config, command, checkpoints, metrics, TensorBoard events, draws.

Layout::

    RUN_DIR/
      config.json         resolved configuration (written with the first checkpoint)
      command.sh          the command line that started the run (every start appended,
                          with that start's first checkpoint)
      checkpoints/        checkpoint_000123.npz: the resume state, the latest ``keep``
                          (default 2) kept (``CheckpointStore``)
      samples/            sample_000123.npz: the site values (latent, constrained, and
                          deterministic) of every kept post-burn-in draw, and
                          stats_000123.npz its sampler statistics (and per-row log
                          likelihood, when kept), plain numpy (``SampleStore``)
      metrics.jsonl       one JSON object per iteration/evaluation
      tensorboard/        TensorBoard event files (the same scalars)
      draws/              draw_000123.npz: function-space draws (and parameter coordinates)
      summary.json        final metrics, machine readable

A ``RunDir`` whose path is empty (``None`` or ``""``) is a run in memory: nothing is
written, metrics records are kept in memory, and there is nothing to resume from.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ppl_bnn.driver.checkpoint import (
    CheckpointStore,
    atomic_write,
    latest_checkpoint,
    remove_orphans,
)
from ppl_bnn.driver.samples import SampleStore

__all__ = ["ConsoleTable", "RunDir", "open_run_dir"]


def _jsonable(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class RunDir:
    """A run directory. Creating one never deletes or overwrites what a previous run wrote,
    except metrics lines past the checkpoint a resumed run restarts from (recomputed
    identically).

    Nothing is written before the first checkpoint of a call: ``start`` only checks the
    folder, and ``config.json`` and the command line are written with the first
    checkpoint, so a run that fails before it leaves no stale configuration behind.
    """

    # set for a run on disk; a run in memory (path None) never reaches the code using them
    path: Path
    store: CheckpointStore
    samples: SampleStore

    def __init__(
        self,
        path: str | os.PathLike | None,
        *,
        tensorboard: bool = True,
        primary: bool | None = None,
        keep_checkpoints: int = 2,
        keep_samples: int = 1,
        defaults: dict[str, Any] | None = None,
    ):
        # in a multi-process run only the primary process (index 0) writes
        self._primary = primary
        # a setting missing from an older run's config.json ran with its default
        self.defaults = dict(defaults or {})
        self.path = Path(path) if path is not None and str(path) else None  # type: ignore[assignment]
        self.in_memory = self.path is None
        self.store = self.samples = None  # type: ignore[assignment]
        if not self.in_memory:
            self.checkpoints = self.path / "checkpoints"
            self.draws = self.path / "draws"
            self.metrics_file = self.path / "metrics.jsonl"
            # both remove the orphaned temporary files of a killed write
            self.store = CheckpointStore(self.checkpoints, keep_checkpoints, writer=self.primary)
            self.samples = SampleStore(
                self.path / "samples", thin=keep_samples, writer=self.primary
            )
            if self.primary:  # and those of the run dir's own files (draws, metrics, ...)
                for folder in (self.path, self.draws):
                    remove_orphans(folder)
        self._tensorboard = tensorboard and not self.in_memory
        self._writer: Any = None
        self._records: list[dict[str, Any]] = []
        self._pending: tuple[dict[str, Any], list[str]] | None = None

    @property
    def primary(self) -> bool:
        """Whether this process writes (default: process 0 of a multi-process run)."""
        if self._primary is None:
            from ppl_bnn.density.distributed import is_primary

            self._primary = is_primary()
        return self._primary

    @property
    def writes(self) -> bool:
        """Whether this process writes files (the primary process of an on-disk run)."""
        return not self.in_memory and self.primary

    # ------------------------------------------------------------------ start
    def start(self, config: dict[str, Any], argv: list[str] | None = None) -> None:
        """Check the folder against ``config``; the config and the command line are
        written with the first checkpoint (:meth:`save`).

        A folder holding a different run (another config) is refused, so that one run's
        checkpoints are never resumed under another's settings.
        """
        if self.in_memory:
            return
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"--dir={self.path} exists and is not a directory")
        cfg_file = self.path / "config.json"
        if cfg_file.exists() and latest_checkpoint(self.checkpoints) is not None:
            old = json.loads(cfg_file.read_text())
            ignore = {  # the run's length: a larger one extends it
                "num_iterations",
                "num_samples",
                "num_epochs",
                "tabulate_freq",
                "eval_freq",
                "keep_checkpoints",
                "dir",
                "coordinator_address",
                "num_processes",
                "process_id",
            }
            keys = sorted((set(config) | set(old)) - ignore)
            missing = object()

            def recorded(k):
                value = old.get(k, missing)
                return self.defaults.get(k, missing) if value is missing else value

            diff = [k for k in keys if recorded(k) != config.get(k, missing)]
            if diff:
                raise ValueError(
                    f"--dir={self.path} holds a run with other settings ({', '.join(diff)} "
                    "differ); use a new --dir"
                )
        self._pending = (config, sys.argv if argv is None else argv)

    def _write_start(self) -> None:
        """Write ``config.json`` (unless a checkpointed run already has one) and append
        the command line; called with this call's first checkpoint."""
        if self._pending is None:
            return
        config, argv = self._pending
        self._pending = None
        cfg_file = self.path / "config.json"
        if not cfg_file.exists() or latest_checkpoint(self.checkpoints) is None:
            data = json.dumps(config, indent=2, default=_jsonable).encode()
            atomic_write(cfg_file, lambda f: f.write(data))
        with open(self.path / "command.sh", "a") as f:
            f.write(" ".join(shlex.quote(a) for a in argv) + "\n")

    def _mkdir(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ checkpoints
    def save(self, step: int, state: Any) -> Path | None:
        """Write the checkpoint of ``step`` (and, the first time, the config), then flush
        TensorBoard so that its scalars are as durable as the checkpoint."""
        if not self.writes:
            return None
        self._mkdir()
        # config first: a checkpoint never exists without the config it was made with
        self._write_start()
        out = self.store.save(step, state)
        if self._writer is not None:
            self._writer.flush()
        return out

    def latest(self) -> tuple[int, Any] | None:
        """``(step, state)`` of the latest checkpoint, or ``None`` for a fresh run."""
        if self.in_memory:
            return None
        restored = self.store.restore()  # falls back to the previous valid one, in one line
        if restored is None:
            return None
        return int(restored[1]["step"]), restored[1]

    # ---------------------------------------------------------------- samples
    def append_sample(
        self,
        step: int,
        values: dict[str, np.ndarray],
        stats: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        """Keep the site values ``(chain, ...)`` of a posterior draw and its ``stats``
        (``{"sample_stats": ..., "log_likelihood": ...}``)."""
        if self.writes:
            self.samples.append(step, values, stats)

    def truncate_samples(self, last_step: int) -> None:
        if self.writes:
            self.samples.truncate(last_step)

    def read_samples(self) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """``(steps, site -> (chain, draw, ...))`` of the stored draws, or ``None``."""
        if self.in_memory or not self.samples.steps():
            return None
        return self.samples.read()

    def read_sample_stats(self, steps) -> dict[str, dict[str, np.ndarray]]:
        """group -> name -> ``(chain, draw, ...)`` stored with the draws of ``steps``."""
        return {} if self.in_memory else self.samples.read_stats(steps)

    def read_predictions(self, steps) -> np.ndarray | None:
        """The test predictions of the draws of ``steps`` ``(chain, draw, n, k)``, or
        ``None`` when one is missing."""
        if self.in_memory:
            return None
        preds = []
        for step in steps:
            path = self.draw_path(int(step))
            if not path.is_file():
                return None
            with np.load(path, allow_pickle=False) as f:
                if "predictions" not in f.files:
                    return None
                preds.append(f["predictions"])
        return np.stack(preds, axis=1) if preds else None

    # ---------------------------------------------------------------- metrics
    def truncate_metrics(self, last_step: int) -> None:
        """Drop metrics lines after ``last_step`` (before a resumed run rewrites them);
        ``0`` drops every line a run that never checkpointed left behind."""
        self._records = [r for r in self._records if r.get("step", 0) <= last_step]
        if not self.writes or not self.metrics_file.exists():
            return
        lines = self.metrics_file.read_text().splitlines()
        records = self._parse(lines, tolerate_last=True)
        keep = [ln for ln, r in zip(lines, records, strict=True) if r is not None]
        keep = [ln for ln in keep if json.loads(ln).get("step", 0) <= last_step]
        if len(keep) != len(lines):
            data = "".join(ln + "\n" for ln in keep).encode()
            atomic_write(self.metrics_file, lambda f: f.write(data))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one metrics record (and its scalars to TensorBoard)."""
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        if self.in_memory:
            self._records.append(record)
            return
        if not self.primary:
            return
        self._mkdir()
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard:
            if self._writer is None:
                from tensorboardX import SummaryWriter

                # events are flushed with every checkpoint (``save``), by the writer's own
                # thread every 10 s, and at close(); flushing after every record costs
                # ~0.4 s an iteration
                self._writer = SummaryWriter(str(self.path / "tensorboard"), flush_secs=10)
            for k, v in metrics.items():
                if isinstance(v, int | float | np.number) and not isinstance(v, bool):
                    self._writer.add_scalar(k, float(v), step)

    def read_metrics(self) -> list[dict[str, Any]]:
        if self.in_memory:
            return list(self._records)
        if not self.metrics_file.exists():
            return []
        records = self._parse(self.metrics_file.read_text().splitlines(), tolerate_last=False)
        return [r for r in records if r is not None]

    def _parse(self, lines: list[str], *, tolerate_last: bool) -> list[dict | None]:
        """Each line's record (``None`` for a blank one). A torn line is a one-line error
        naming the file and the line, except a torn last line when ``tolerate_last``:
        a run killed while appending it had not checkpointed that step, so it is dropped."""
        out: list[dict | None] = []
        for i, ln in enumerate(lines):
            if not ln.strip():
                out.append(None)
                continue
            try:
                out.append(json.loads(ln))
            except json.JSONDecodeError as e:
                if tolerate_last and i == len(lines) - 1:
                    out.append(None)
                    continue
                raise ValueError(
                    f"{self.metrics_file}: line {i + 1} is not a JSON record ({e.msg}): "
                    "the file was cut or edited; restore it or use a new --dir"
                ) from None
        return out

    # ------------------------------------------------------------------ draws
    def draw_path(self, step: int) -> Path:
        return self.draws / f"draw_{step:06d}.npz"

    def save_draw(self, step: int, **arrays: np.ndarray) -> None:
        if not self.writes:
            return
        self.draws.mkdir(parents=True, exist_ok=True)
        atomic_write(self.draw_path(step), lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]

    def load_draws(self) -> list[tuple[int, dict[str, np.ndarray]]]:
        out: list[tuple[int, dict[str, np.ndarray]]] = []
        if self.in_memory:
            return out
        for p in sorted(self.draws.glob("draw_*.npz")):
            with np.load(p) as f:
                out.append((int(p.stem.split("_")[1]), {k: f[k] for k in f.files}))
        return out

    def write_array(self, name: str, array: np.ndarray) -> Path | None:
        """``RUN_DIR/name`` (``.npy``), atomically; an identical file is left untouched."""
        if not self.writes:
            return None
        path = self.path / name
        buffer = io.BytesIO()
        np.save(buffer, array)
        data = buffer.getvalue()
        if not (path.is_file() and path.read_bytes() == data):
            atomic_write(path, lambda f: f.write(data))
        return path

    # ---------------------------------------------------------------- summary
    def write_summary(self, summary: dict[str, Any]) -> Path | None:
        if not self.writes:
            return None
        path = self.path / "summary.json"
        data = json.dumps(summary, indent=2, default=_jsonable).encode()
        atomic_write(path, lambda f: f.write(data))
        return path

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def open_run_dir(cfg) -> RunDir:
    """The :class:`RunDir` of a config (``dir``, ``keep_checkpoints``, ``keep_samples``)."""
    defaults = {
        f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING
    }
    return RunDir(
        cfg.dir,
        keep_checkpoints=getattr(cfg, "keep_checkpoints", 2),
        keep_samples=getattr(cfg, "keep_samples", 1),
        defaults=defaults,
    )


class ConsoleTable:
    """A fixed-width console table whose header repeats every ``header_every`` rows."""

    def __init__(self, columns: list[str], header_every: int = 40, write=print):
        self.columns = columns
        self.header_every = max(1, header_every)
        self.width = max(10, *(len(c) for c in columns))
        self.rows = 0
        self.write = write

    def _fmt(self, v) -> str:
        if isinstance(v, bool | np.bool_):
            return str(bool(v))
        if isinstance(v, int | np.integer):
            return str(v)
        if isinstance(v, float | np.floating):
            return f"{v:.4g}"
        return str(v)

    def row(self, values: dict[str, Any]) -> None:
        if self.rows % self.header_every == 0:
            line = " ".join(c.rjust(self.width) for c in self.columns)
            self.write(line + "\n" + "-" * len(line))
        self.write(" ".join(self._fmt(values.get(c, "")).rjust(self.width) for c in self.columns))
        self.rows += 1
