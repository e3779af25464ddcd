"""Shared evaluation of predictions: metrics by task, parameter coordinates to track."""

from __future__ import annotations

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from ppl_bnn.data import Dataset
from ppl_bnn.evaluation import metrics

__all__ = ["ParamTracker", "evaluate", "headline_columns"]


def evaluate(preds: np.ndarray, dataset: Dataset, split: str) -> dict[str, float]:
    """Metrics of one prediction array on ``split`` ("train" or "test") of ``dataset``."""
    y = dataset.y_train if split == "train" else dataset.y_test
    if dataset.task == "classification":
        return metrics.classification_metrics(preds, y)
    return metrics.regression_metrics(preds, y, dataset.y_scale)


def mean_over_members(per_member: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in per_member])) for k in per_member[0]}


def headline_columns(task: str) -> list[str]:
    if task == "classification":
        return ["train/accuracy", "test/accuracy", "test/nll", "test/ens_accuracy", "test/ens_nll"]
    return ["train/rmse", "test/rmse", "test/nll", "test/ens_rmse", "test/ens_nll"]


class ParamTracker:
    """A fixed random subset of parameter coordinates, for parameter-space diagnostics.

    The subset depends only on the parameter shapes (a fixed seed), so runs of the same
    model track the same coordinates and their chains can be merged.
    """

    def __init__(self, example_position: dict, num: int):
        flat, _ = ravel_pytree(example_position)
        sizes = {k: int(np.size(v)) for k, v in sorted(example_position.items())}
        total = flat.shape[0]
        num = min(num, total)
        self.index = np.sort(np.random.default_rng(0).choice(total, num, replace=False))
        names, offset = [], 0
        bounds = []
        for k, s in sizes.items():
            bounds.append((offset, offset + s, k))
            offset += s
        for i in self.index:
            for lo, hi, k in bounds:
                if lo <= i < hi:
                    shape = np.shape(example_position[k])
                    idx = np.unravel_index(i - lo, shape) if shape else ()
                    names.append(f"{k}[{','.join(map(str, idx))}]")
                    break
        self.names = names
        self._flat = jax.jit(jax.vmap(lambda p: ravel_pytree(p)[0][self.index]))

    def take(self, positions: dict) -> np.ndarray:
        """``(chains, num)`` values of the tracked coordinates of a stack of positions."""
        return np.asarray(self._flat(positions))
