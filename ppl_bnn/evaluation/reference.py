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

A reference is an HMC run directory (its post-burn-in draws, every chain), a ``.npy``
file: class probabilities ``(n_test, C)``; for regression ``(n_test, 2)`` means and stds
or ``(n_test, S)`` predictive samples (``S != 2``), a ``.csv`` of class probabilities (comma
separated, one row per test point), or ``hmc-reference:<task>``: the HMC predictive
probabilities the competition published (``ppl-bnn download hmc-reference``; tasks
``cifar10``, ResNet-20-FRN, and ``imdb``, CNN-LSTM), read from
``~/.ppl_bnn/hmc_reference/<task>/probs.csv``. Their rows follow the TFDS test split's
order; a run is scored against them on the same dataset (``--dataset_name=cifar10``). Both
published tasks are classification, so they are scored by agreement and total variation
(the competition used W2 only for its regression tasks).

The **HMC-vs-HMC floor** (:func:`half_vs_half`) is the same distance between two halves of
an HMC run's chains: how far two independent HMC estimates of the same predictive
distribution are apart, i.e. the Monte Carlo noise a method's distance to HMC cannot be
told apart from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ppl_bnn.data import Dataset
from ppl_bnn.evaluation import metrics

__all__ = [
    "HMC_REFERENCE_PREFIX",
    "Reference",
    "bayes_average",
    "compare_to_reference",
    "half_vs_half",
    "load_reference",
    "mixture_samples",
    "per_point_distances",
    "run_predictions",
    "run_predictions_by_chain",
]

NUM_PREDICTIVE_SAMPLES = 1000

#: ``--reference=hmc-reference:<task>``: the published HMC predictive probabilities
HMC_REFERENCE_PREFIX = "hmc-reference:"


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
    from ppl_bnn.store.rundir import RunDir

    rd = RunDir(run_dir)
    draws = [d["predictions"] for _, d in rd.load_draws() if not bool(d["burn_in"])]
    if not draws:
        raise ValueError(f"{run_dir} has no saved draws after burn-in to compare against")
    return np.concatenate([np.asarray(d, np.float64) for d in draws], axis=0)


def run_predictions_by_chain(run_dir: str | os.PathLike) -> np.ndarray:
    """``(chains, draws, n, k)``: the post-burn-in draws of a run directory, chain by chain."""
    from ppl_bnn.store.rundir import RunDir

    rd = RunDir(run_dir)
    draws = [d["predictions"] for _, d in rd.load_draws() if not bool(d["burn_in"])]
    if not draws:
        raise ValueError(f"{run_dir} has no saved draws after burn-in to compare against")
    return np.stack([np.asarray(d, np.float64) for d in draws], axis=1)


def bayes_average(members: np.ndarray, task: str) -> np.ndarray:
    """Average of member predictions ``(m, n, k)``: probabilities, or the Gaussian mixture's
    mean and standard deviation (:func:`ppl_bnn.evaluation.bma.average`, the one BMA)."""
    from ppl_bnn.evaluation.bma import average

    return average(members, task)


def load_reference(path: str | os.PathLike, dataset: Dataset) -> Reference:
    """Read ``--reference``: an HMC run directory or a ``.npy`` file (see the module doc)."""
    n = dataset.x_test.shape[0]
    if str(path).startswith(HMC_REFERENCE_PREFIX):
        path = _hmc_reference_file(str(path)[len(HMC_REFERENCE_PREFIX) :])
    path = Path(path)
    if path.suffix == ".csv" and path.is_file():
        ref = _load_probs_csv(path, dataset)
    elif path.is_dir():
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


def _hmc_reference_file(task: str) -> Path:
    from ppl_bnn.data.download import hmc_reference_dir

    f = hmc_reference_dir() / task / "probs.csv"
    if not f.is_file():
        raise FileNotFoundError(
            f"--reference={HMC_REFERENCE_PREFIX}{task}: no {f}; run `ppl-bnn download "
            f"hmc-reference {task}` first (or set PPL_BNN_DATA to the folder holding "
            "hmc_reference/)"
        )
    return f


def _load_probs_csv(path: Path, dataset: Dataset) -> Reference:
    """Class probabilities ``(n_test, C)``, comma separated (the competition's format)."""
    if dataset.task != "classification":
        raise ValueError(f"--reference={path}: a .csv of class probabilities needs a classifier")
    probs = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if probs.min() < 0 or np.abs(probs.sum(1) - 1).max() > 1e-3:
        raise ValueError(f"--reference={path}: rows are not probability vectors (sum to 1)")
    return Reference(probs, probs[None])


def per_point_distances(
    members: np.ndarray,
    reference: Reference,
    dataset: Dataset,
    *,
    seed: int = 0,
    num_samples: int = NUM_PREDICTIVE_SAMPLES,
) -> dict[str, np.ndarray]:
    """The distances of :func:`compare_to_reference` test point by test point (their means
    are its values): ``agreement`` (0/1) and ``total_variation``, or ``w2`` (original units,
    the same samples as :func:`compare_to_reference` draws)."""
    members = np.asarray(members, np.float64)
    if dataset.task == "classification":
        probs, ref = members.mean(0), reference.predictions
        return {
            "agreement": (np.argmax(probs, -1) == np.argmax(ref, -1)).astype(np.float64),
            "total_variation": 0.5 * np.sum(np.abs(probs - ref), -1),
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
    w2 = [metrics.wasserstein2(a[None], b[None]) for a, b in zip(ours, theirs, strict=True)]
    return {"w2": np.asarray(w2)}


def half_vs_half(
    by_chain: np.ndarray, dataset: Dataset, *, seed: int = 0
) -> tuple[dict[str, np.ndarray], str] | None:
    """The HMC-vs-HMC floor: per-point distances between the Bayesian model averages of
    the first and the second half of the chains (``by_chain``: ``(chains, draws, n, k)``).

    With one chain, the first and second half of its draws are compared instead (a weaker
    floor: consecutive draws are correlated). Returns ``(per-point distances, how the
    halves were made)``, or ``None`` when there are too few chains and draws.
    """
    chains, draws = by_chain.shape[:2]
    if chains >= 2:
        h = chains // 2
        a, b = by_chain[:h], by_chain[h : 2 * h]
        how = (
            "chain 1 against chain 2" if h == 1 else f"chains 1-{h} against chains {h + 1}-{2 * h}"
        )
    elif draws >= 2:
        h = draws // 2
        a, b = by_chain[:, :h], by_chain[:, h : 2 * h]
        how = f"draws 1-{h} against draws {h + 1}-{2 * h} of the one chain"
    else:
        return None
    a = a.reshape(-1, *by_chain.shape[2:])
    b = b.reshape(-1, *by_chain.shape[2:])
    ref = Reference(bayes_average(b, dataset.task), b)
    return per_point_distances(a, ref, dataset, seed=seed), how


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
