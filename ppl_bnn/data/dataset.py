"""The in-memory dataset every backend consumes, and the registry of dataset names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["DATASETS", "Dataset", "register_dataset"]


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
        return self.num_classes if self.task == "classification" else 2

    def subset_train(self, n: int | None) -> Dataset:
        """Keep the first ``n`` training examples (``--subset_train_to``)."""
        if n is None:
            return self
        if not 0 < n <= len(self.x_train):
            raise ValueError(
                f"--subset_train_to={n} but {self.name} has {len(self.x_train)} training examples"
            )
        return replace(self, x_train=self.x_train[:n], y_train=self.y_train[:n])


# name -> loader(data_dir=..., uci_split=...); filled by ppl_bnn.data.builtin and .tfds
DATASETS: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str, loader: Callable[..., Dataset]) -> None:
    """Make ``loader(data_dir=..., uci_split=...)`` available as ``--dataset_name=name``."""
    DATASETS[name] = loader
