"""Domain shift: a run's Bayesian model average evaluated on CIFAR-10-C.

The paper (Izmailov et al. 2021, Section 8) reports that HMC's Bayesian model average
generalises surprisingly poorly under covariate shift. This module re-evaluates a finished
(or running) run on new inputs: it rebuilds the model from the run's ``config.json``
(:func:`ppl_bnn.declare.problem.build_problem`), reads the run's posterior samples and
averages the predictive probabilities over them, then reports accuracy, NLL and ECE for
every CIFAR-10-C corruption and severity, per severity (mean over corruptions) and per
corruption (mean over severities), with the clean test set as a reference.

Draws: a run keeps its posterior samples in ``RUN_DIR/samples/`` (one plain ``.npz`` per
kept step, the positions of every chain; :class:`~ppl_bnn.store.samples.SampleStore`).
Each post-burn-in iteration is one draw per chain, a rejected proposal included (it
repeats the previous state, and counts again, as standard MCMC averaging does; the
original code skipped rejected states). A run directory without ``samples/`` (written
before samples were kept apart) is read from its checkpoints instead; there, checkpoints
``1..num_burn_in_iterations`` are the burn-in and are left out. Nothing read can run code.

A run of a model file (``--model=file.py:function``) is read only when the reader names the
same model again (``model="file.py:function"``, ``--model=`` on the command line) and the
file's SHA-256 is the one the run recorded: a run directory's ``config.json`` never makes
ppl_bnn import a file. The rebuilt problem's data and model must match the fingerprint the
run recorded (:meth:`~ppl_bnn.declare.problem.Problem.fingerprint`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ppl_bnn.config import CommonConfig
from ppl_bnn.data import Dataset
from ppl_bnn.declare.problem import Problem, build_problem
from ppl_bnn.density.sharding import replicate, shard_batch, to_host
from ppl_bnn.evaluation import metrics
from ppl_bnn.store.checkpoint import CheckpointStore, checkpoint_path, latest_checkpoint
from ppl_bnn.store.rundir import FINGERPRINT, RunDirError, read_config
from ppl_bnn.store.samples import SampleStore, read_positions

__all__ = [
    "RunPredictive",
    "check_model_file",
    "check_fingerprint",
    "evaluate_domain_shift",
    "format_report",
    "run_config",
]

Loader = Callable[[str, int], tuple[np.ndarray, np.ndarray]]


def check_model_file(run_dir: str | Path, saved: dict[str, Any], model: str | None) -> None:
    """Refuse, in one line, to rebuild a run of a model file the reader did not name.

    ``saved`` is the run's ``config.json``; ``model`` the reader's ``--model=file.py:function``
    (or ``None``). A recorded model file is used only when ``model`` names the same function
    and the file's SHA-256 is the recorded ``model_sha256``; nothing is imported here.
    """
    from ppl_bnn.declare.user_model import model_file_digest

    recorded = saved.get("model")
    is_file = isinstance(recorded, str) and recorded.rpartition(":")[0].endswith(".py")
    if not is_file:
        if model:
            raise RunDirError(
                f"--model={model}: {run_dir} was not run with a model file (it records "
                f"model {recorded!r})"
            )
        return
    if not model:
        raise RunDirError(
            f"{Path(run_dir) / 'config.json'} names the model file {recorded}, whose code is "
            f"never run unless you name it: pass --model={recorded} (its SHA-256 must match "
            "the run's) to read this run"
        )
    if model.rpartition(":")[2] != recorded.rpartition(":")[2]:  # type: ignore[union-attr]
        raise RunDirError(f"--model={model} is not the model {recorded} that {run_dir} ran")
    want = saved.get("model_sha256")
    if not isinstance(want, str):
        raise RunDirError(
            f"{Path(run_dir) / 'config.json'} records no SHA-256 of its model file "
            f"{recorded}: it cannot be checked, so it is not run"
        )
    if model_file_digest(model) != want:
        raise RunDirError(
            f"--model={model}: the file's SHA-256 is not the one {run_dir} recorded for "
            f"{recorded} (edited since, or another file): it is not run"
        )


def check_fingerprint(
    run_dir: str | Path, saved: dict[str, Any], problem: Problem, *, data: bool = True
) -> None:
    """Refuse, in one line, a problem whose model (and, with ``data``, data) is not the
    one the run recorded; a key the run did not record (an older run) is not checked."""
    found = problem.fingerprint()
    for key, what in FINGERPRINT.items():
        if key == "data_sha256" and not data:
            continue
        if key in saved and key in found and saved[key] != found[key]:
            raise RunDirError(
                f"{run_dir} was run on other {what} than the one it is read with ({key} "
                "differs): its draws do not belong to it"
            )


def run_config(run_dir: str | Path, *, model: str | None = None, **overrides) -> CommonConfig:
    """The common part of a run's configuration (``RUN_DIR/config.json``).

    Fields that describe the machine rather than the model (``num_devices`` and the
    multi-process flags) are reset, so a run can be evaluated on other hardware;
    ``overrides`` set any field. A run of a model file needs ``model``, the same
    ``file.py:function`` (:func:`check_model_file`).
    """
    saved = read_config(run_dir)
    if saved is None:
        raise FileNotFoundError(f"{run_dir} is not a run directory: no config.json")
    check_model_file(run_dir, saved, model)
    if model:
        overrides = {"model": model, **overrides}
    names = {f.name for f in dataclasses.fields(CommonConfig)}
    machine = {
        "num_devices": None,
        "coordinator_address": None,
        "num_processes": None,
        "process_id": None,
    }
    return CommonConfig(
        **{
            **{k: v for k, v in saved.items() if k in names},
            **machine,
            "dir": str(run_dir),
            **overrides,
        }
    )


class RunPredictive:
    """The posterior predictive of a run: predictions averaged over its draws.

    Args:
        run_dir: a run directory with ``config.json`` and ``samples/`` (or, written by
            an older ppl_bnn, one checkpoint per iteration in ``checkpoints/``).
        include_burn_in: also average the burn-in iterations (a run read from its
            checkpoints only: ``samples/`` holds no burn-in draw, and asking for them
            there is an error).
        thin: keep every ``thin``-th stored draw.
        problem: the rebuilt problem (default: ``build_problem`` of the run's config).
        batch_size: rows predicted per compiled call (default: a whole array at once).
        model: for a run of a model file, the same ``file.py:function``: a file named only
            in the run's ``config.json`` is never imported, and its SHA-256 must match.

    Example:
        >>> from ppl_bnn.evaluation.domain_shift import RunPredictive
        >>> import numpy as np
        >>> import ppl_bnn
        >>> from ppl_bnn import HMCConfig, load_dataset
        >>> cfg = HMCConfig(dir="runs/hmc/digits", dataset_name="digits", subset_train_to=64,
        ...                 num_iterations=3, step_size=3e-4, trajectory_len=1.5e-3)
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # a short run, no console table
        ...     result = ppl_bnn.run("hmc", cfg, progress=False)
        >>> post = RunPredictive("runs/hmc/digits")
        >>> x_new = load_dataset("digits").x_test[:5]
        >>> probs = post.predict(x_new)  # (n, num_classes), averaged over every draw
        >>> probs.shape, np.allclose(probs.sum(-1), 1.0)
        ((5, 10), True)
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        include_burn_in: bool = False,
        thin: int = 1,
        problem: Problem | None = None,
        batch_size: int | None = None,
        dataset: Dataset | None = None,
        model: str | None = None,
    ):
        if thin < 1:
            raise ValueError(f"--thin must be at least 1, got {thin}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"--batch_size must be positive, got {batch_size}")
        self.run_dir = Path(run_dir)
        self.config = run_config(run_dir, model=model)
        saved = read_config(run_dir) or {}
        self.num_burn_in = 0 if include_burn_in else int(saved.get("num_burn_in_iterations", 0))
        self.samples = SampleStore(self.run_dir / "samples", writer=False)
        self.from_samples = bool(self.samples.steps())
        if self.from_samples and include_burn_in and int(saved.get("num_burn_in_iterations", 0)):
            raise ValueError(
                f"--include_burn_in: {self.run_dir}/samples holds post-burn-in draws only "
                "(burn-in positions are not kept)"
            )
        steps = self.samples.steps() if self.from_samples else self._checkpoint_steps()
        self.steps = [s for s in steps if s > self.num_burn_in][::thin]
        if not self.steps:
            raise ValueError(
                f"{self.run_dir} has no post-burn-in draw (burn-in: {self.num_burn_in} "
                f"iterations, stored steps: {len(steps)})"
            )
        self.problem = problem or build_problem(self.config, dataset)
        # the data is checked when rebuilt from the run's config (a given one may differ)
        check_fingerprint(run_dir, saved, self.problem, data=problem is None and dataset is None)
        self.batch_size = batch_size
        ld = self.problem.logdensity
        self.draws = [self._position(s) for s in self.steps]
        self.num_draws = sum(next(iter(d.values())).shape[0] for d in self.draws)
        predict = jax.vmap(ld.predict, in_axes=(0, None))
        self._first = jax.jit(lambda pos, x: predict(pos, x).sum(0))
        self._add = jax.jit(lambda acc, pos, x: acc + predict(pos, x).sum(0))

    def _checkpoint_steps(self) -> list[int]:
        """Steps of the checkpoints on disk (an older run kept one per iteration)."""
        folder = self.run_dir / "checkpoints"
        latest_checkpoint(folder)  # refuses a folder of old pickle checkpoints in one line
        return CheckpointStore(folder, writer=False).steps()

    def _position(self, step: int) -> dict[str, np.ndarray]:
        """The unconstrained positions of every chain at ``step``, stacked ``(chains, ...)``."""
        path = (
            self.samples.path(step)
            if self.from_samples
            else checkpoint_path(self.run_dir / "checkpoints", step)
        )
        return read_positions(path, self.problem.logdensity)

    def predict_many(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Averaged predictive statistics for several input arrays, in one pass over draws.

        Classification: class probabilities ``(n, C)``; regression: the mean over draws
        of each draw's ``[mean, std]`` (use :mod:`ppl_bnn.evaluation.bma` for the moment-matched
        mixture).
        """
        mesh, example = self.problem.mesh, self.problem.dataset.x_test
        for x in inputs:
            if tuple(x.shape[1:]) != tuple(example.shape[1:]):
                raise ValueError(
                    f"inputs of shape {tuple(x.shape[1:])} do not fit this run's "
                    f"model (trained on inputs of shape {tuple(example.shape[1:])})"
                )
        chunks: list[tuple[int, int, Any]] = []  # (input index, rows, sharded x)
        for i, x in enumerate(inputs):
            size = self.batch_size or max(len(x), 1)
            for lo in range(0, len(x), size):
                part = np.asarray(x[lo : lo + size])
                batch = shard_batch(mesh, part, np.zeros(len(part), np.int32))
                chunks.append((i, len(part), batch.x))
        sums: list[Any] = [None] * len(chunks)
        for draw in self.draws:
            position = replicate(mesh, draw)
            for k, (_, _, x) in enumerate(chunks):
                sums[k] = (
                    self._first(position, x) if sums[k] is None else self._add(sums[k], position, x)
                )
            jax.block_until_ready(sums)
        parts: list[list[np.ndarray]] = [[] for _ in inputs]
        for (i, rows, _), total in zip(chunks, sums, strict=True):
            parts[i].append(to_host(total, rows).astype(np.float64) / self.num_draws)
        width = self.problem.dataset.num_outputs
        return [np.concatenate(p) if p else np.zeros((0, width)) for p in parts]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_many([x])[0]


def _default_loader(data_dir) -> Loader:
    from ppl_bnn.data.tfds import load_cifar10_corrupted

    return partial(load_cifar10_corrupted, data_dir=data_dir)


def _mean(records: list[dict[str, Any]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in records])) for k in ("accuracy", "nll", "ece")}


def evaluate_domain_shift(
    run_dir: str | Path,
    *,
    loader: Loader | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    data_dir: str | None = None,
    include_burn_in: bool = False,
    thin: int = 1,
    batch_size: int | None = None,
    output: str | Path | None = None,
    predictive: RunPredictive | None = None,
    progress: Callable[[str], None] | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Accuracy, NLL and ECE of a run's averaged predictions on CIFAR-10-C.

    ``loader(corruption, severity) -> (x, y)`` supplies the shifted test sets (default:
    ``ppl_bnn.data.tfds.load_cifar10_corrupted`` from ``data_dir``); ``corruptions``
    defaults to all 19 of ``CIFAR10_CORRUPTIONS``. Each corruption's severities are
    evaluated together in one pass over the draws. Writes ``domain_shift.json`` and
    ``domain_shift.txt`` to ``output`` (default: the run directory) and returns the report.
    """
    if corruptions is None:
        from ppl_bnn.data.tfds import CIFAR10_CORRUPTIONS

        corruptions = CIFAR10_CORRUPTIONS
    if not corruptions or not severities:
        raise ValueError("no corruption or no severity to evaluate")
    if any(int(s) < 1 for s in severities):
        raise ValueError(f"severities are 1..5, got {list(severities)}")
    loader = loader or _default_loader(data_dir)
    post = predictive or RunPredictive(
        run_dir, include_burn_in=include_burn_in, thin=thin, batch_size=batch_size, model=model
    )
    ds = post.problem.dataset
    if ds.task != "classification":
        raise ValueError(f"domain shift needs a classification run; {run_dir} is {ds.task}")
    say = progress or (lambda _: None)

    clean = metrics.classification_metrics(post.predict(ds.x_test), ds.y_test)
    results = []
    for corruption in corruptions:
        sets = [loader(corruption, int(s)) for s in severities]
        probs = post.predict_many([np.asarray(x) for x, _ in sets])
        for s, (_, y), p in zip(severities, sets, probs, strict=True):
            m = metrics.classification_metrics(p, np.asarray(y))
            results.append(
                {"corruption": corruption, "severity": int(s), **m, "num_examples": len(y)}
            )
            say(
                f"{corruption} {s}: accuracy {m['accuracy']:.4f} nll {m['nll']:.4f} "
                f"ece {m['ece']:.4f}"
            )
    report = {
        "run_dir": str(run_dir),
        "dataset": ds.name,
        "num_steps": len(post.steps),
        "num_draws": post.num_draws,
        "burn_in_iterations": post.num_burn_in,
        "clean": clean,
        "per_severity": {
            str(s): _mean([r for r in results if r["severity"] == int(s)]) for s in severities
        },
        "per_corruption": {
            c: _mean([r for r in results if r["corruption"] == c]) for c in corruptions
        },
        "results": results,
    }
    from ppl_bnn.density.distributed import is_primary

    if is_primary():
        folder = Path(output) if output is not None else Path(run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "domain_shift.json").write_text(json.dumps(report, indent=2) + "\n")
        (folder / "domain_shift.txt").write_text(format_report(report))
    return report


def format_report(report: dict[str, Any]) -> str:
    """Two plain-text tables: per severity (mean over corruptions) and per corruption."""

    def table(title: str, rows: list[tuple[str, dict[str, float]]]) -> list[str]:
        width = max(12, *(len(name) for name, _ in rows))
        lines = [f"{title:<{width}} {'accuracy':>9} {'nll':>9} {'ece':>9}"]
        lines.append("-" * len(lines[0]))
        lines += [
            f"{name:<{width}} {m['accuracy']:>9.4f} {m['nll']:>9.4f} {m['ece']:>9.4f}"
            for name, m in rows
        ]
        return lines

    head = [
        f"run: {report['run_dir']}  draws: {report['num_draws']} "
        f"({report['num_steps']} stored steps after {report['burn_in_iterations']} "
        "burn-in iterations)",
        "",
    ]
    sev = [("clean", report["clean"])] + [
        (f"severity {s}", m) for s, m in report["per_severity"].items()
    ]
    cor = list(report["per_corruption"].items())
    return "\n".join(head + table("severity", sev) + [""] + table("corruption", cor)) + "\n"
