"""Online Bayesian model averaging of predictions.

Classification: the running mean of predictive probabilities. Regression (predictions are
``[mean, std]`` per point): the running moments of the Gaussian mixture, so the averaged
prediction has mean ``E[mu]`` and variance ``E[sigma^2 + mu^2] - E[mu]^2``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "EnsembleState",
    "average",
    "ensemble_init",
    "ensemble_prediction",
    "ensemble_update",
]


class EnsembleState(NamedTuple):
    first: np.ndarray  # running mean of probabilities, or of mu
    second: np.ndarray  # unused (zeros) for classification; running mean of sigma^2 + mu^2
    count: int  # type: ignore[assignment]  # a field named like tuple.count


def ensemble_init(shape: tuple[int, ...]) -> EnsembleState:
    return EnsembleState(np.zeros(shape), np.zeros(shape[:-1]), 0)


def ensemble_update(state: EnsembleState, preds: np.ndarray, task: str) -> EnsembleState:
    """Add a stack of member predictions ``(members, n, k)`` to the average."""
    preds = np.asarray(preds, np.float64)
    n_new = preds.shape[0]
    count = state.count + n_new
    w = n_new / count
    if task == "classification":
        return EnsembleState(state.first + w * (preds.mean(0) - state.first), state.second, count)
    mu, sigma = preds[..., 0], preds[..., 1]
    first = state.first.copy()
    first[..., 0] += w * (mu.mean(0) - first[..., 0])
    second = state.second + w * ((sigma**2 + mu**2).mean(0) - state.second)
    return EnsembleState(first, second, count)


def ensemble_prediction(state: EnsembleState, task: str) -> np.ndarray:
    """The averaged prediction, in the same format as a single member's."""
    if task == "classification":
        return state.first
    mu = state.first[..., 0]
    std = np.sqrt(np.maximum(state.second - mu**2, 1e-30))
    return np.stack([mu, std], -1)


def average(members: np.ndarray, task: str) -> np.ndarray:
    """The Bayesian model average of a stack of member predictions ``(m, n, k)``: the
    prediction of an online average that saw exactly these members."""
    members = np.asarray(members)
    state = ensemble_update(ensemble_init(members.shape[1:]), members, task)
    return ensemble_prediction(state, task)
