"""The in-memory dataset every backend consumes, and the registry of dataset names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["DATASETS", "Dataset", "check_dataset", "register_dataset"]


@dataclass(frozen=True)
class Dataset:
    """A train/test split in memory.

    ``task`` is ``"classification"`` (integer labels, ``num_classes`` set) or
    ``"regression"`` (standardised float targets; ``y_scale`` and ``y_mean`` map them back).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str
    num_classes: int | None = None
    y_scale: float = 1.0
    y_mean: float = 0.0

    @property
    def num_outputs(self) -> int:
        if self.task == "classification":
            assert self.num_classes is not None
            return self.num_classes
        return 2

    def subset_train(self, n: int | None) -> Dataset:
        """Keep the first ``n`` training examples (``--subset_train_to``)."""
        if n is None:
            return self
        if not 0 < n <= len(self.x_train):
            raise ValueError(
                f"--subset_train_to={n} but {self.name} has {len(self.x_train)} training examples"
            )
        return replace(self, x_train=self.x_train[:n], y_train=self.y_train[:n])


def check_dataset(ds: Dataset, source: str | None = None) -> Dataset:
    """Return ``ds`` if it is usable, else raise a one-line ``ValueError`` naming ``source``.

    Checked: inputs and targets have matching lengths and the same per-example shape in
    both splits, every input (and regression target) is finite, a classification task has
    integer labels (floats are refused rather than truncated) of one dimension, all in
    ``0..num_classes-1``, and the training set is not empty. ``source`` names the file or
    dataset in the message (default: ``dataset 'name'``).
    """
    where = source or f"dataset {ds.name!r}"

    def fail(problem: str) -> ValueError:
        return ValueError(f"{where}: {problem}")

    if ds.task not in ("classification", "regression"):
        raise fail(f"task must be 'classification' or 'regression', got {ds.task!r}")
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if len(x) != len(y):
            raise fail(f"x_{split} has {len(x)} rows but y_{split} has {len(y)}")
    if len(ds.x_train) == 0:
        raise fail("the training set is empty")
    if len(ds.x_test) and ds.x_test.shape[1:] != ds.x_train.shape[1:]:
        raise fail(
            f"x_test rows have shape {ds.x_test.shape[1:]}, x_train rows {ds.x_train.shape[1:]}"
        )
    arrays = ["x_train", "x_test"] + (["y_train", "y_test"] if ds.task == "regression" else [])
    for name in arrays:
        _check_finite(getattr(ds, name), name, fail)
    if ds.task == "classification":
        _check_labels(ds, fail)
    return ds


def _check_finite(a: np.ndarray, name: str, fail: Callable[[str], ValueError]) -> None:
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise fail(f"{name} has dtype {a.dtype}, not numbers")
    if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        value = a[tuple(bad)]
        raise fail(f"{name} holds {value} at index {tuple(int(i) for i in bad)} (must be finite)")


def _check_labels(ds: Dataset, fail: Callable[[str], ValueError]) -> None:
    k = ds.num_classes
    if k is None or k < 2:
        raise fail(f"a classification task needs num_classes >= 2, got {k}")
    for name in ("y_train", "y_test"):
        y = getattr(ds, name)
        if not np.issubdtype(y.dtype, np.integer):
            raise fail(
                f"{name} has dtype {y.dtype}: class labels must be integers 0..{k - 1} "
                "(float labels are not truncated; convert them with y.astype(int) if whole)"
            )
        if y.ndim != 1:
            raise fail(f"{name} has shape {y.shape}: class labels must be one per row")
        if len(y) and (y.min() < 0 or y.max() >= k):
            bad = int(y[(y < 0) | (y >= k)][0])
            raise fail(f"{name} holds label {bad}, outside 0..{k - 1} (num_classes={k})")


# name -> loader(data_dir=..., uci_split=...); filled by ppl_bnn.data.builtin and .tfds
DATASETS: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str, loader: Callable[..., Dataset]) -> None:
    """Make ``loader(data_dir=..., uci_split=...)`` available as ``--dataset_name=name``."""
    DATASETS[name] = loader
