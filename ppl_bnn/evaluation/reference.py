"""How close a method's predictive distribution is to a reference (usually HMC's).

The metrics of the paper's Sec. 9 and of the NeurIPS 2021 approximate-inference
competition (``neurips_bdl_starter_kit/metrics.py``):

* classification: **agreement**, the share of test inputs whose top class matches the
  reference's, and **total variation**, the mean over inputs of ``0.5 sum_c |p - q|``;
* regression: the **2-Wasserstein distance** between the 1-D predictive distributions at
  each test input, averaged over inputs, computed from predictive samples. A run stores a
  Gaussian ``(mean, std)`` per member and input, so samples are drawn from the mixture of
  its members. Also reported: ``w1``, the 1-Wasserstein distance the competition's scorer
  actually computed (``scipy.stats.wasserstein_distance``). Both are in original units.

A reference is an HMC run directory (its post-burn-in draws, every chain) or a ``.npy``
file: class probabilities ``(n_test, C)``; for regression ``(n_test, 2)`` means and stds
or ``(n_test, S)`` predictive samples (``S != 2``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ppl_bnn.data import Dataset
from ppl_bnn.evaluation import metrics

__all__ = [
    "Reference",
    "bayes_average",
    "compare_to_reference",
    "load_reference",
    "mixture_samples",
    "run_predictions",
]

NUM_PREDICTIVE_SAMPLES = 1000


class Reference(NamedTuple):
    """A reference predictive distribution on the test set.

    ``members``: ``(m, n, k)`` per-member predictions (classification probabilities, or
    regression ``[mean, std]``), or ``None``; ``samples``: ``(n, S)`` regression predictive
    samples (standardised units) when the reference was given as samples.
    """

    predictions: np.ndarray
    members: np.ndarray | None = None
    samples: np.ndarray | None = None


def run_predictions(run_dir: str | os.PathLike) -> np.ndarray:
    """``(members, n, k)``: every post-burn-in draw of every chain of a run directory."""
    from ppl_bnn.driver.rundir import RunDir

    rd = RunDir(run_dir)
    draws = [d["predictions"] for _, d in rd.load_draws() if not bool(d["burn_in"])]
    if not draws:
        raise ValueError(f"{run_dir} has no saved draws after burn-in to compare against")
    return np.concatenate([np.asarray(d, np.float64) for d in draws], axis=0)


def bayes_average(members: np.ndarray, task: str) -> np.ndarray:
    """Average of member predictions ``(m, n, k)``: probabilities, or the Gaussian mixture's
    mean and standard deviation (:func:`ppl_bnn.evaluation.bma.average`, the one BMA)."""
    from ppl_bnn.evaluation.bma import average

    return average(members, task)


def load_reference(path: str | os.PathLike, dataset: Dataset) -> Reference:
    """Read ``--reference``: an HMC run directory or a ``.npy`` file (see the module doc)."""
    path = Path(path)
    n = dataset.x_test.shape[0]
    if path.is_dir():
        members = run_predictions(path)
        ref = Reference(bayes_average(members, dataset.task), members)
    elif path.is_file():
        arr = np.load(path)
        if arr.ndim != 2:
            raise ValueError(f"--reference={path}: expected a 2-D array, got shape {arr.shape}")
        if dataset.task == "classification" or arr.shape[1] == 2:
            ref = Reference(arr.astype(np.float64), arr[None].astype(np.float64))
        else:
            ref = Reference(np.stack([arr.mean(1), arr.std(1)], -1), None, arr.astype(np.float64))
    else:
        raise FileNotFoundError(f"--reference={path} is neither a run directory nor a file")
    if ref.predictions.shape[0] != n:
        raise ValueError(
            f"--reference={path} predicts {ref.predictions.shape[0]} test points, "
            f"the dataset has {n}"
        )
    if dataset.task == "classification" and ref.predictions.shape[1] != dataset.num_classes:
        raise ValueError(
            f"--reference={path} has {ref.predictions.shape[1]} classes, "
            f"the dataset {dataset.num_classes}"
        )
    return ref


def mixture_samples(members: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, num_samples)`` draws from the equal-weight mixture of Gaussian members.

    ``members`` is ``(m, n, 2)`` (mean, std per member and input): each sample picks a
    member uniformly at random, then draws from its Gaussian.
    """
    m, n, _ = members.shape
    pick = rng.integers(0, m, size=(n, num_samples))
    mu = np.take_along_axis(members[..., 0].T, pick, 1)
    sd = np.take_along_axis(members[..., 1].T, pick, 1)
    return mu + sd * rng.standard_normal((n, num_samples))


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    return float(np.mean([wasserstein_distance(u, v) for u, v in zip(a, b, strict=True)]))


def compare_to_reference(
    members: np.ndarray,
    reference: Reference,
    dataset: Dataset,
    *,
    seed: int = 0,
    num_samples: int = NUM_PREDICTIVE_SAMPLES,
) -> dict[str, float]:
    """Agreement and total variation (classification) or W2 and W1 (regression).

    ``members`` is ``(m, n, k)``: the method's ensemble members (or posterior draws); their
    average is the method's prediction.
    """
    members = np.asarray(members, np.float64)
    if dataset.task == "classification":
        probs = members.mean(0)
        return {
            "agreement": metrics.agreement(probs, reference.predictions),
            "total_variation": metrics.total_variation(probs, reference.predictions),
        }
    rng = np.random.default_rng(seed)
    ours = mixture_samples(members, num_samples, rng) * dataset.y_scale
    if reference.samples is not None:
        theirs = reference.samples * dataset.y_scale
    else:
        ref_members = (
            reference.members if reference.members is not None else reference.predictions[None]
        )
        theirs = mixture_samples(ref_members, num_samples, rng) * dataset.y_scale
    return {"w2": metrics.wasserstein2(ours, theirs), "w1": _w1(ours, theirs)}
