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
      .lock               held by the process writing the run (its PID inside)

A ``RunDir`` whose path is empty (``None`` or ``""``) is a run in memory: nothing is
written, metrics records are kept in memory, and there is nothing to resume from.

Reading never writes: a ``RunDir`` touches the disk only when it writes (a checkpoint, a
metrics line, a draw, a sample, the summary). Its first write takes the folder's lock
(``.lock``; a second process stops with a one-line error naming the holder's PID), checks
that no other process wrote a checkpoint since this one read the folder, and only then
removes the ``.tmp-*`` files a killed write left behind.

One module (about 670 lines) on purpose: the layout above, its atomic writes, resume and
the refusal of a directory written for other data or another config are one format's
reader and writer.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shlex
import socket
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ppl_bnn.methods import option_name
from ppl_bnn.store.checkpoint import (
    CheckpointError,
    CheckpointStore,
    atomic_write,
    latest_checkpoint,
    remove_orphans,
)
from ppl_bnn.store.samples import SampleStore

__all__ = ["ConsoleTable", "RunDir", "RunDirError", "open_run_dir", "read_config"]

LOCK_NAME = ".lock"
# what a run records of its data and model (Problem.fingerprint): compared like any
# setting, but a run directory written before they were recorded is read as recorded
FINGERPRINT = {
    "data_sha256": "data (the training and test arrays)",
    "model_sha256": "model file",
    "model_structure_sha256": "model (its traced sites: names, distributions, shapes)",
    "model_source_sha256": "model function (its source)",
}
# the run's length and where it runs: a larger length extends it
_NOT_COMPARED = {
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
# summary fields that differ on every call: a finished run's summary is not rewritten for them
_VOLATILE_SUMMARY = {"wall_time_call"}


def _dir() -> str:
    """The run directory's option as the caller names it (``--dir``, or ``run_dir``)."""
    return option_name("dir")


class RunDirError(ValueError):
    """A run directory cannot be used as asked (one line: what and where)."""


def read_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """``RUN_DIR/config.json`` as a dict, ``None`` when there is none; a file that is not
    a JSON object is a one-line :class:`RunDirError` naming it."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        return None
    try:
        config = json.loads(cfg_file.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        why = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
        raise RunDirError(
            f"{cfg_file} is not readable JSON ({why}): the file was cut or edited; restore it "
            f"or use a new {_dir()}"
        ) from None
    if not isinstance(config, dict):
        raise RunDirError(f"{cfg_file} is not a JSON object: restore it or use a new {_dir()}")
    return config


def _check_zip(path: Path, what: str, step: int) -> None:
    """A one-line :class:`CheckpointError` when ``path`` is not a whole zip (``.npz``)."""
    try:
        with zipfile.ZipFile(path) as z:
            z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(
            f"corrupt {what} {path}: truncated or altered ({e}); it was written before "
            f"checkpoint {step} and cannot be recomputed: restore it or rerun into a new {_dir()}"
        ) from None


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
        # the lock, once this process writes; the checkpoints it saw when it read the folder
        self._lock: Any = None
        self._seen: list[int] | None = None
        # complete metrics records on disk (counted once, then kept up to date)
        self._num_records: int | None = None
        # the steps of the sample and draw files on disk (listed once, then kept up to date)
        self._file_steps: tuple[set[int], set[int]] | None = None
        if not self.in_memory:
            self.checkpoints = self.path / "checkpoints"
            self.draws = self.path / "draws"
            self.metrics_file = self.path / "metrics.jsonl"
            # nothing is removed here: the orphaned temporary files of a killed write are
            # removed by the writing process once it holds the lock (``_begin``)
            self.store = CheckpointStore(
                self.checkpoints, keep_checkpoints, writer=self.primary, clean=False
            )
            self.samples = SampleStore(
                self.path / "samples", thin=keep_samples, writer=self.primary, clean=False
            )
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
            raise FileExistsError(f"{_dir()}={self.path} exists and is not a directory")
        if latest_checkpoint(self.checkpoints) is not None:
            try:
                old = read_config(self.path)
            except RunDirError as e:
                raise RunDirError(f"{_dir()}={self.path} holds checkpoints, but {e}") from None
            if old is None:
                raise RunDirError(
                    f"{_dir()}={self.path} holds checkpoints but no config.json: the settings "
                    "they were made with are unknown, so they are not resumed; restore "
                    f"config.json or use a new {_dir()}"
                )
            self._compare(old, config)
        self._pending = (config, sys.argv if argv is None else argv)

    def _compare(self, old: dict[str, Any], config: dict[str, Any]) -> None:
        """Refuse ``config`` unless it is the recorded one (the run's length aside)."""
        missing = object()
        unrecorded = [k for k in FINGERPRINT if k in config and k not in old]
        if unrecorded and self.primary:
            print(
                f"ppl-bnn: warning: {self.path}/config.json records no fingerprint of the "
                "data or model (written by an older ppl_bnn): resuming without checking them",
                file=sys.stderr,
            )
        keys = sorted((set(config) | set(old)) - _NOT_COMPARED - set(unrecorded))

        def recorded(k):
            value = old.get(k, missing)
            return self.defaults.get(k, missing) if value is missing else value

        diff = [k for k in keys if recorded(k) != config.get(k, missing)]
        other = [FINGERPRINT[k] for k in diff if k in FINGERPRINT]
        if other:
            raise RunDirError(
                f"{_dir()}={self.path} holds a run on other {' and '.join(dict.fromkeys(other))} "
                f"than this one ({', '.join(k for k in diff if k in FINGERPRINT)} differ): "
                f"its results are not this run's; use a new {_dir()}"
            )
        if diff:
            raise RunDirError(
                f"{_dir()}={self.path} holds a run with other settings ({', '.join(diff)} "
                f"differ); use a new {_dir()}"
            )

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
        self._begin()

    def _begin(self) -> None:
        """Before this process's first write: take the folder's lock, check that no other
        process checkpointed since this one read the folder, remove orphaned ``.tmp-*``
        files. Readers never get here."""
        if self._lock is not None:
            return
        from filelock import FileLock, Timeout

        self.path.mkdir(parents=True, exist_ok=True)
        lock_file = self.path / LOCK_NAME
        lock = FileLock(str(lock_file), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunDirError(
                f"{_dir()}={self.path} is in use by another process ({_holder(lock_file)} holds "
                f"{lock_file}): wait for it to finish, or use another {_dir()}"
            ) from None
        holder = f"{os.getpid()} {socket.gethostname()}\n".encode()
        try:
            with open(lock_file, "r+b") as f:  # who holds it, for the next one
                if f.read() != holder:
                    f.seek(0)
                    f.truncate(0)
                    f.write(holder)
        except OSError:
            pass
        if self._seen is not None and self.store.steps() != self._seen:
            lock.release()
            raise RunDirError(
                f"{_dir()}={self.path}: another process wrote checkpoints to it since this one "
                "read it; run the command again to continue from them"
            )
        self._lock = lock
        for folder in (self.path, self.draws, self.checkpoints, self.samples.folder):
            remove_orphans(folder)

    # ------------------------------------------------------------ checkpoints
    def save(self, step: int, state: Any) -> Path | None:
        """Write the checkpoint of ``step`` (and, the first time, the config), then flush
        TensorBoard so that its scalars are as durable as the checkpoint."""
        if not self.writes:
            return None
        self._mkdir()
        # config first: a checkpoint never exists without the config it was made with
        self._write_start()
        if isinstance(state, dict):  # what was written before it, checked on resume
            state = {**state, "run_files": self._run_files(step)}
        out = self.store.save(step, state)
        if self._writer is not None:
            self._writer.flush()
        return out

    def latest(self) -> tuple[int, Any] | None:
        """``(step, state)`` of the latest checkpoint, or ``None`` for a fresh run."""
        if self.in_memory:
            return None
        self._seen = self.store.steps()
        restored = self.store.restore()  # falls back to the previous valid one, in one line
        if restored is None:
            return None
        step, state = int(restored[1]["step"]), restored[1]
        recorded = state.pop("run_files", None) if isinstance(state, dict) else None
        if self.writes:
            self._check_run_files(step, recorded)
        return step, state

    def _run_files(self, step: int) -> dict[str, int]:
        """The count of metrics records, stored draws and draw files up to ``step``."""
        if self._file_steps is None:
            self._file_steps = (set(self.samples.steps()), {s for s, _ in self._draw_files()})
        samples, draws = self._file_steps
        return {
            "metrics_records": self._records_on_disk(),
            "samples": sum(1 for s in samples if s <= step),
            "draws": sum(1 for s in draws if s <= step),
        }

    def _records_on_disk(self) -> int:
        if self._num_records is None:
            self._num_records = sum(1 for _ in self._complete_records())
        return self._num_records

    def _complete_records(self) -> list[dict]:
        if not self.metrics_file.exists():
            return []
        lines = self.metrics_file.read_text().splitlines()
        return [r for r in self._parse(lines, tolerate_last=True) if r is not None]

    def _draw_files(self) -> list[tuple[int, Path]]:
        if not self.draws.is_dir():
            return []
        out = []
        for p in self.draws.glob("draw_*.npz"):
            step = p.stem[len("draw_") :]
            if step.isdigit() and p.name == self.draw_path(int(step)).name:
                out.append((int(step), p))
        return sorted(out)

    def _check_run_files(self, step: int, recorded: Any) -> None:
        """The files written before checkpoint ``step`` are there and whole (a resumed
        run's summary and draws are made of them); a one-line error otherwise."""
        expect = recorded if isinstance(recorded, dict) else {}
        kept = [r for r in self._complete_records() if r.get("step", 0) <= step]
        want = expect.get("metrics_records")
        if isinstance(want, int) and len(kept) < want:
            what = (
                "is missing"
                if not self.metrics_file.exists()
                else (f"holds {len(kept)} of the {want} records")
            )
            raise RunDirError(
                f"{self.metrics_file} {what} written up to checkpoint {step} (deleted, cut or "
                "edited): the run's metrics and summary would change; restore it or rerun "
                f"into a new {_dir()}"
            )
        samples = [s for s in self.samples.steps() if s <= step]
        draws = [(s, p) for s, p in self._draw_files() if s <= step]
        for what, have, key in (
            ("samples", len(samples), "samples"),
            ("draws", len(draws), "draws"),
        ):
            want = expect.get(key)
            if isinstance(want, int) and have < want:
                raise RunDirError(
                    f"{self.path / what} holds {have} of the {want} files written up to "
                    f"checkpoint {step} (deleted): they cannot be recomputed; restore them or "
                    f"rerun into a new {_dir()}"
                )
        for s in samples:
            _check_zip(self.samples.path(s), "sample file", step)
            if self.samples.stats_path(s).exists():
                _check_zip(self.samples.stats_path(s), "sample statistics file", step)
        for _, p in draws:
            _check_zip(p, "draw file", step)

    # ---------------------------------------------------------------- samples
    def append_sample(
        self,
        step: int,
        values: dict[str, np.ndarray],
        stats: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        """Keep the site values ``(chain, ...)`` of a posterior draw and its ``stats``
        (``{"sample_stats": ..., "log_likelihood": ...}``)."""
        if self.writes and self.samples.wants(step):
            self._mkdir()
            self.samples.append(step, values, stats)
            if self._file_steps is not None:
                self._file_steps[0].add(step)

    def truncate_samples(self, last_step: int) -> None:
        if not self.writes or not self.samples.folder.is_dir():
            return
        later = any(s > last_step for s in self.samples.steps())
        later = later or any(
            int(p.stem.split("_")[1]) > last_step
            for p in self.samples.folder.glob("stats_*.npz")
            if p.stem.split("_")[1].isdigit()
        )
        if later:
            self._begin()
            self.samples.truncate(last_step)
            self._file_steps = None

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
            arrays = _read_draw(path)
            if "predictions" not in arrays:
                return None
            preds.append(arrays["predictions"])
        return np.stack(preds, axis=1) if preds else None

    # ---------------------------------------------------------------- metrics
    def truncate_metrics(self, last_step: int) -> None:
        """Drop metrics lines after ``last_step`` (before a resumed run rewrites them);
        ``0`` drops every line a run that never checkpointed left behind."""
        self._records = [r for r in self._records if r.get("step", 0) <= last_step]
        if not self.writes or not self.metrics_file.exists():
            self._num_records = 0
            return
        lines = self.metrics_file.read_text().splitlines()
        records = self._parse(lines, tolerate_last=True)
        keep = [ln for ln, r in zip(lines, records, strict=True) if r is not None]
        keep = [ln for ln in keep if json.loads(ln).get("step", 0) <= last_step]
        if len(keep) != len(lines):
            self._begin()
            data = "".join(ln + "\n" for ln in keep).encode()
            atomic_write(self.metrics_file, lambda f: f.write(data))
        self._num_records = len(keep)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one metrics record (and its scalars to TensorBoard)."""
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        if self.in_memory:
            self._records.append(record)
            return
        if not self.primary:
            return
        self._mkdir()
        count = self._records_on_disk()
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._num_records = count + 1
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
                    f"the file was cut or edited; restore it or use a new {_dir()}"
                ) from None
        return out

    # ------------------------------------------------------------------ draws
    def draw_path(self, step: int) -> Path:
        return self.draws / f"draw_{step:06d}.npz"

    def save_draw(self, step: int, **arrays: np.ndarray) -> None:
        if not self.writes:
            return
        self._mkdir()
        self.draws.mkdir(parents=True, exist_ok=True)
        atomic_write(self.draw_path(step), lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
        if self._file_steps is not None:
            self._file_steps[1].add(step)

    def load_draws(self) -> list[tuple[int, dict[str, np.ndarray]]]:
        """``(step, name -> array)`` of every draw file; a corrupt one is a one-line
        :class:`CheckpointError` naming it."""
        if self.in_memory:
            return []
        return [(step, _read_draw(p)) for step, p in self._draw_files()]

    def write_array(self, name: str, array: np.ndarray) -> Path | None:
        """``RUN_DIR/name`` (``.npy``), atomically; an identical file is left untouched."""
        if not self.writes:
            return None
        path = self.path / name
        buffer = io.BytesIO()
        np.save(buffer, array)
        data = buffer.getvalue()
        if not (path.is_file() and path.read_bytes() == data):
            self._mkdir()
            atomic_write(path, lambda f: f.write(data))
        return path

    # ---------------------------------------------------------------- summary
    def write_summary(self, summary: dict[str, Any]) -> Path | None:
        if not self.writes:
            return None
        path = self.path / "summary.json"
        data = json.dumps(summary, indent=2, default=_jsonable).encode()
        if not _same_summary(path, data):  # a finished run run again: left as it is
            self._mkdir()
            atomic_write(path, lambda f: f.write(data))
        return path

    def close(self) -> None:
        """Flush TensorBoard and release the lock."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _holder(lock_file: Path) -> str:
    """``PID 123 on host`` as the lock's holder wrote it, or what is known."""
    try:
        pid, _, host = lock_file.read_text().strip().partition(" ")
    except OSError:
        return "a process"
    if not pid.isdigit():
        return "a process"
    here = socket.gethostname()
    return f"PID {pid}" + (f" on {host}" if host and host != here else "")


def _same_summary(path: Path, data: bytes) -> bool:
    """Whether ``path`` holds the summary ``data`` (fields that change on every call aside)."""
    try:
        old = path.read_bytes()
    except OSError:
        return False
    if old == data:
        return True
    try:
        a, b = json.loads(old), json.loads(data)
    except ValueError:
        return False
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return False
    drop = lambda d: {k: v for k, v in d.items() if k not in _VOLATILE_SUMMARY}  # noqa: E731
    return drop(a) == drop(b)


def _read_draw(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a draw file, read without pickle; one line naming a corrupt one."""
    from ppl_bnn.store.samples import read_arrays

    try:
        return read_arrays(path)
    except CheckpointError as e:
        raise CheckpointError(str(e).replace("sample file", "draw file")) from None


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
