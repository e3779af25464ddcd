"""Evaluation metrics on predictive distributions (numpy, host side).

Classification predictions are class probabilities ``(n, C)``; regression predictions are
``(n, 2)`` arrays of predictive mean and standard deviation in standardised units, turned
back into original units with ``y_scale``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "accuracy",
    "agreement",
    "calibration_curve",
    "classification_metrics",
    "ece",
    "nll",
    "regression_metrics",
    "total_variation",
    "wasserstein2",
]

_TINY = np.finfo(np.float64).tiny


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of examples whose most probable class is the label."""
    return float(np.mean(np.argmax(probs, -1) == labels))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log predictive probability of the label (clipped at the smallest float)."""
    p = np.take_along_axis(np.asarray(probs, np.float64), labels[:, None].astype(int), -1)[:, 0]
    return float(-np.mean(np.log(np.maximum(p, _TINY))))


def calibration_curve(
    probs: np.ndarray, labels: np.ndarray, num_bins: int = 20, *, equal_mass: bool = True
) -> dict[str, np.ndarray]:
    """Per-bin mean confidence, accuracy and share of examples.

    ``equal_mass=True`` (the original's default) uses adaptive bins holding equally many
    examples; ``False`` uses equal-width bins on [0, 1] (Guo et al. 2017). Every example is
    in exactly one bin (the original dropped examples lying exactly on a bin edge).
    """
    conf = np.max(probs, -1)
    correct = (np.argmax(probs, -1) == labels).astype(np.float64)
    n = len(conf)
    if equal_mass:
        order = np.argsort(conf, kind="stable")
        bin_of = np.empty(n, int)
        bin_of[order] = np.minimum(np.arange(n) * num_bins // max(n, 1), num_bins - 1)
    else:
        bin_of = np.minimum((conf * num_bins).astype(int), num_bins - 1)
    counts = np.bincount(bin_of, minlength=num_bins).astype(np.float64)
    safe = np.maximum(counts, 1)
    return {
        "confidence": np.bincount(bin_of, conf, num_bins) / safe,
        "accuracy": np.bincount(bin_of, correct, num_bins) / safe,
        "proportion": counts / max(n, 1),
    }


def ece(
    probs: np.ndarray, labels: np.ndarray, num_bins: int = 20, *, equal_mass: bool = True
) -> float:
    """Expected calibration error: sum over bins of share * |confidence - accuracy|."""
    c = calibration_curve(probs, labels, num_bins, equal_mass=equal_mass)
    return float(np.sum(c["proportion"] * np.abs(c["confidence"] - c["accuracy"])))


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "ece": ece(probs, labels),
    }


def regression_metrics(pred: np.ndarray, y: np.ndarray, y_scale: float = 1.0) -> dict[str, float]:
    """RMSE and Gaussian NLL in original units (``pred = [mean, std]`` in standardised units)."""
    mean, std = pred[:, 0].astype(np.float64), pred[:, 1].astype(np.float64)
    sq = (mean - y) ** 2
    nll_std = 0.5 * np.mean(sq / std**2 + np.log(2 * np.pi * std**2))
    return {"rmse": float(np.sqrt(np.mean(sq)) * y_scale), "nll": float(nll_std + np.log(y_scale))}


def agreement(probs: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of inputs where the top class matches the reference's (e.g. HMC's)."""
    return float(np.mean(np.argmax(probs, -1) == np.argmax(reference, -1)))


def total_variation(probs: np.ndarray, reference: np.ndarray) -> float:
    """Mean over inputs of the total variation distance ``0.5 * sum_c |p - q|``."""
    return float(np.mean(0.5 * np.sum(np.abs(probs - reference), -1)))


def wasserstein2(samples: np.ndarray, reference: np.ndarray) -> float:
    """Mean over inputs of the 2-Wasserstein distance between 1-D predictive samples.

    ``samples`` and ``reference`` are ``(n_inputs, n_samples)`` (sample counts may differ);
    the distance between two 1-D empirical distributions is computed exactly from their
    quantile functions on the merged grid of probability levels.
    """
    out = []
    for a, b in zip(np.sort(samples, -1), np.sort(reference, -1), strict=True):
        levels = np.union1d(np.arange(1, len(a) + 1) / len(a), np.arange(1, len(b) + 1) / len(b))
        widths = np.diff(np.concatenate([[0.0], levels]))
        qa = a[np.minimum(np.ceil(levels * len(a) - 1e-9).astype(int) - 1, len(a) - 1)]
        qb = b[np.minimum(np.ceil(levels * len(b) - 1e-9).astype(int) - 1, len(b) - 1)]
        out.append(np.sqrt(np.sum(widths * (qa - qb) ** 2)))
    return float(np.mean(out))
