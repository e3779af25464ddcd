"""One folder per run: config, command, checkpoints, metrics, TensorBoard events, draws.

Layout::

    RUN_DIR/
      config.json         resolved configuration (written once)
      command.sh          the command line that started the run (every start appended)
      checkpoints/        checkpoint_000123.pkl, atomic, one per iteration/epoch
      metrics.jsonl       one JSON object per iteration/evaluation
      tensorboard/        TensorBoard event files (the same scalars)
      draws/              draw_000123.npz: function-space draws (and parameter coordinates)
      summary.json        final metrics, machine readable
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ppl_bnn.driver.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

__all__ = ["ConsoleTable", "RunDir"]


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class RunDir:
    """A run directory. Creating one never deletes or overwrites what a previous run wrote,
    except metrics lines past the checkpoint a resumed run restarts from (recomputed
    identically)."""

    def __init__(
        self, path: str | os.PathLike, *, tensorboard: bool = True, primary: bool | None = None
    ):
        if not str(path):
            raise ValueError("--dir is required: the run directory")
        # in a multi-process run only the primary process (index 0) writes
        self._primary = primary
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.draws = self.path / "draws"
        self.metrics_file = self.path / "metrics.jsonl"
        self._tensorboard = tensorboard
        self._writer = None

    @property
    def primary(self) -> bool:
        """Whether this process writes (default: process 0 of a multi-process run)."""
        if self._primary is None:
            from ppl_bnn.density.distributed import is_primary

            self._primary = is_primary()
        return self._primary

    # ------------------------------------------------------------------ start
    def start(self, config: dict[str, Any], argv: list[str] | None = None) -> None:
        """Create the folder, record the config and the command line.

        A folder holding a different run (another config) is refused, so that one run's
        checkpoints are never resumed under another's settings.
        """
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"--dir={self.path} exists and is not a directory")
        if self.primary:
            self.path.mkdir(parents=True, exist_ok=True)
        cfg_file = self.path / "config.json"
        if cfg_file.exists():
            old = json.loads(cfg_file.read_text())
            ignore = {
                "num_iterations",
                "num_epochs",
                "tabulate_freq",
                "dir",
                "coordinator_address",
                "num_processes",
                "process_id",
            }
            diff = sorted(k for k in config if k not in ignore and old.get(k) != config[k])
            if diff and latest_checkpoint(self.checkpoints) is not None:
                raise ValueError(
                    f"--dir={self.path} holds a run with other settings ({', '.join(diff)} "
                    "differ); use a new --dir"
                )
        elif self.primary:
            _atomic_write(cfg_file, lambda f: f.write(json.dumps(config, indent=2).encode()))
        if not self.primary:
            return
        argv = sys.argv if argv is None else argv
        with open(self.path / "command.sh", "a") as f:
            f.write(" ".join(shlex.quote(a) for a in argv) + "\n")

    # ------------------------------------------------------------ checkpoints
    def save(self, step: int, state: Any) -> Path:
        path = checkpoint_path(self.checkpoints, step)
        return save_checkpoint(path, state) if self.primary else path

    def latest(self) -> tuple[int, Any] | None:
        """``(step, state)`` of the latest checkpoint, or ``None`` for a fresh run."""
        path = latest_checkpoint(self.checkpoints)
        if path is None:
            return None
        state = load_checkpoint(path)
        return state["step"], state

    # ---------------------------------------------------------------- metrics
    def truncate_metrics(self, last_step: int) -> None:
        """Drop metrics lines after ``last_step`` (before a resumed run rewrites them)."""
        if not self.primary or not self.metrics_file.exists():
            return
        lines = self.metrics_file.read_text().splitlines()
        keep = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= last_step]
        if len(keep) != len(lines):
            data = "".join(ln + "\n" for ln in keep).encode()
            _atomic_write(self.metrics_file, lambda f: f.write(data))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one metrics record (and its scalars to TensorBoard)."""
        if not self.primary:
            return
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard:
            if self._writer is None:
                from tensorboardX import SummaryWriter

                # events are flushed by the writer's own thread every 10 s and at close();
                # flushing after every record costs ~0.4 s an iteration
                self._writer = SummaryWriter(str(self.path / "tensorboard"), flush_secs=10)
            for k, v in metrics.items():
                if isinstance(v, int | float | np.number) and not isinstance(v, bool):
                    self._writer.add_scalar(k, float(v), step)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            return []
        return [json.loads(ln) for ln in self.metrics_file.read_text().splitlines() if ln.strip()]

    # ------------------------------------------------------------------ draws
    def save_draw(self, step: int, **arrays: np.ndarray) -> None:
        if not self.primary:
            return
        self.draws.mkdir(exist_ok=True)
        _atomic_write(self.draws / f"draw_{step:06d}.npz", lambda f: np.savez(f, **arrays))

    def load_draws(self) -> list[tuple[int, dict[str, np.ndarray]]]:
        out = []
        for p in sorted(self.draws.glob("draw_*.npz")):
            with np.load(p) as f:
                out.append((int(p.stem.split("_")[1]), {k: f[k] for k in f.files}))
        return out

    # ---------------------------------------------------------------- summary
    def write_summary(self, summary: dict[str, Any]) -> Path:
        path = self.path / "summary.json"
        if not self.primary:
            return path
        data = json.dumps(summary, indent=2, default=_jsonable).encode()
        _atomic_write(path, lambda f: f.write(data))
        return path

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


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
