"""Rank-normalised split R-hat and bulk ESS for every scalar quantity at once.

Both follow Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021), "Rank-normalization,
folding, and localization: An improved R-hat for assessing convergence of MCMC",
*Bayesian Analysis* 16(2), 667-718 (doi:10.1214/20-BA1221): split every chain in two,
replace the draws by the normal scores of their pooled ranks, then take

* R-hat: the larger of the split R-hat of the normal scores (bulk) and of the normal
  scores of the draws folded about their median (tail);
* bulk ESS: the ESS of the normal scores, with Geyer's (1992, "Practical Markov chain
  Monte Carlo", *Statistical Science* 7(4)) initial positive and initial monotone
  sequence estimators of the autocorrelation time (autocovariances by FFT).

The figures are those of ArviZ (``arviz_stats.base.array_stats.rhat(method="rank")`` and
``.ess(method="bulk")``) up to rounding, edge cases included, but computed on whole
arrays rather than one scalar quantity at a time, which on a network's tens of thousands
of weights turns minutes into well under a second:

* fewer than 4 draws per chain, or (R-hat) fewer than 2 chains: NaN;
* a quantity with a NaN draw: NaN (infinite draws are ranked like any other value);
* an odd number of draws: the middle draw is left out when the chains are split;
* a constant quantity: R-hat NaN, ESS the number of draws kept after splitting;
* chains that are each constant, at different values: R-hat infinite;
* the autocorrelation time is floored at ``1 / log10(number of draws)``;
* float32 draws are ranked and scored in float32, as ArviZ does; draws of other types
  (integers, float16) are read as float64 (ArviZ would score float16 draws in float16).

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(4, 500, 3))  # (chain, draw, quantity)
    >>> bool((rhat(x) < 1.01).all()), ess_bulk(x).shape
    (True, (3,))
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import fft, special

__all__ = ["ess_bulk", "rhat"]

_BLOM = 3 / 8  # the offset of Blom's (1958) normal scores, as in the paper
_CHUNK = 1 << 16  # values per batch: keeps the sorts and FFTs in cache
_MIN_DRAWS = 4


def rhat(x: ArrayLike) -> NDArray[np.float64]:
    """Rank-normalised split R-hat (max of bulk and folded tail) of every quantity.

    Args:
        x: draws shaped ``(chain, draw, *quantity)``.

    Returns:
        R-hat shaped ``quantity``; NaN with fewer than 2 chains or 4 draws per chain.
    """
    a, shape = _quantities_first(x)
    out = np.full(a.shape[0], np.nan)
    if a.shape[1] >= 2 and a.shape[2] >= _MIN_DRAWS:
        for lo, hi, part in _batches(a):
            out[lo:hi] = _rhat_rank(part)
    return out.reshape(shape)


def ess_bulk(x: ArrayLike) -> NDArray[np.float64]:
    """Bulk effective sample size (of the rank-normalised split chains) of every quantity.

    Args:
        x: draws shaped ``(chain, draw, *quantity)``.

    Returns:
        ESS shaped ``quantity``; NaN with fewer than 4 draws per chain.
    """
    a, shape = _quantities_first(x)
    out = np.full(a.shape[0], np.nan)
    if a.shape[1] >= 1 and a.shape[2] >= _MIN_DRAWS:
        for lo, hi, part in _batches(a):
            with np.errstate(all="ignore"):
                ess = _ess(_z_scale(_split(part)))
            out[lo:hi] = np.where(_has_nan(part), np.nan, ess)
    return out.reshape(shape)


def _quantities_first(x: ArrayLike) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(quantity, chain, draw)`` view of ``x`` (floating point) and the quantity shape."""
    a = np.asarray(x)
    if a.ndim < 2:
        raise ValueError(f"draws must be shaped (chain, draw, ...), got shape {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    shape = a.shape[2:]
    a = a.reshape(*a.shape[:2], math.prod(shape))
    return np.moveaxis(a, -1, 0), shape


def _batches(a: np.ndarray):
    """``(lo, hi, a[lo:hi])`` in batches of about :data:`_CHUNK` values, each copied so
    that every quantity's draws lie together (the ranks and FFTs run along rows)."""
    step = max(1, _CHUNK // max(1, a.shape[1] * a.shape[2]))
    for lo in range(0, a.shape[0], step):
        hi = min(lo + step, a.shape[0])
        yield lo, hi, np.ascontiguousarray(a[lo:hi])


def _has_nan(a: np.ndarray) -> np.ndarray:
    return np.isnan(a).any(axis=(1, 2))


def _split(a: np.ndarray) -> np.ndarray:
    """``(q, 2 * chain, draw // 2)``: first halves, then second halves (middle draw out)."""
    half = a.shape[2] // 2
    return np.concatenate((a[:, :, :half], a[:, :, a.shape[2] - half :]), axis=1)


def _z_scale(a: np.ndarray) -> np.ndarray:
    """Normal scores of the ranks of each quantity's draws ``(q, chain, draw)``, pooled
    over chains, as float64."""
    flat = a.reshape(a.shape[0], -1)
    order, ordered = _sort_rows(flat)
    z = _scores_at(order, ordered, _score_table(flat.shape[1], flat.dtype))
    return z.reshape(a.shape).astype(np.float64, copy=False)


def _score_table(size: int, dtype: np.dtype) -> np.ndarray:
    """``Phi^-1((r - 3/8) / (S + 1/4))`` (Blom's offset, as in the paper) for every
    average rank ``r = k / 2`` of ``S = size`` draws, at index ``k``.

    Average ranks are multiples of 1/2, so this table holds every score there can be,
    each computed as ArviZ computes it: in the draws' precision (``rankdata`` keeps
    float32), so float32 draws get float32-rounded scores.
    """
    halves = (np.arange(2 * size + 1) / 2).astype(dtype)
    return special.ndtri((halves - _BLOM) / (size - 2 * _BLOM + 1))


def _sort_rows(
    flat: np.ndarray, kind: Literal["quicksort", "stable"] = "quicksort"
) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(flat, axis=1, kind=kind)
    return order, np.take_along_axis(flat, order, axis=1)


def _scores_at(order: np.ndarray, ordered: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[2 r]`` for the average rank ``r`` (from 1; tied values share their mean
    rank, as ``scipy.stats.rankdata(method="average")`` has it) of every entry of rows
    that ``order`` sorts into ``ordered``; rows with a NaN get NaN."""
    rows, size = ordered.shape
    starts = np.ones((rows, size), bool)
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=starts[:, 1:])
    if starts.all():  # no ties: the sorted rows' ranks are 1..S
        scores = np.broadcast_to(table[2 : 2 * size + 1 : 2], (rows, size))
    else:
        ends = np.ones((rows, size), bool)
        ends[:, :-1] = starts[:, 1:]
        position = np.arange(size)
        first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
        last = np.minimum.accumulate(np.where(ends, position, size)[:, ::-1], axis=1)[:, ::-1]
        scores = table[first + last + 2]
    z = np.empty((rows, size), table.dtype)
    np.put_along_axis(z, order, scores, axis=1)
    z[np.isnan(ordered[:, -1])] = np.nan  # argsort puts NaN last
    return z


def _split_rhat(z: np.ndarray) -> np.ndarray:
    """Gelman-Rubin potential scale reduction of ``(q, chain, draw)``, in float64."""
    z = z.astype(np.float64, copy=False)
    n = z.shape[2]
    between = n * np.var(np.mean(z, axis=2), axis=1, ddof=1)
    within = np.mean(np.var(z, axis=2, ddof=1), axis=1)
    return np.sqrt((between / within + n - 1) / n)


def _rhat_rank(a: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        split = _split(a)
        flat = split.reshape(split.shape[0], -1)
        size, half = flat.shape[1], flat.shape[1] // 2  # size is even: 2 chains a chain
        table = _score_table(size, flat.dtype)
        order, ordered = _sort_rows(flat)
        bulk = _split_rhat(_scores_at(order, ordered, table).reshape(split.shape))
        # The tail folds the draws about their median, in the draws' dtype as ArviZ does
        # (so that ties fall alike). Folded in sorted order they are two ascending runs
        # (below the median, reversed, and above it), which a stable sort merges in
        # linear time; the scores then go back to the draws' places.
        folded = np.abs(ordered - np.median(ordered, axis=1, keepdims=True))
        runs = np.concatenate((folded[:, :half][:, ::-1], folded[:, half:]), axis=1)
        run_order, run_sorted = _sort_rows(runs, kind="stable")
        by_run = _scores_at(run_order, run_sorted, table)
        by_rank = np.concatenate((by_run[:, :half][:, ::-1], by_run[:, half:]), axis=1)
        z_tail = np.empty_like(by_rank)
        np.put_along_axis(z_tail, order, by_rank, axis=1)
        tail = _split_rhat(z_tail.reshape(split.shape))
    # ArviZ takes max(bulk, tail) in Python: a NaN tail gives the bulk, a NaN bulk stays
    worst = np.where(tail > bulk, tail, bulk)
    return np.where(_has_nan(a), np.nan, worst)


def _autocov(z: np.ndarray) -> np.ndarray:
    """Autocovariance of every chain at every lag (biased, divided by the draw count)."""
    n = z.shape[-1]
    size = fft.next_fast_len(2 * n, real=True)
    centred = z - z.mean(axis=-1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=size, axis=-1)
    spectrum *= np.conjugate(spectrum)
    return np.fft.irfft(spectrum, n=size, axis=-1)[..., :n] / n


def _ess(z: np.ndarray) -> np.ndarray:
    """ESS ``chains * draws / tau`` of ``(q, chain, draw)``, as in Vehtari et al. (2021)."""
    chains, n = z.shape[1:]
    total = chains * n
    acov = np.mean(_autocov(z), axis=1)
    mean_var = acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n + np.var(np.mean(z, axis=2), axis=1, ddof=1)
    rho = 1.0 - (mean_var[:, None] - acov) / var_plus[:, None]
    rho[:, 0] = 1.0
    tau = _autocorrelation_time(rho)
    floor = 1 / np.log10(total)
    ess = total / np.where(floor > tau, floor, tau)
    # of the autocorrelations the estimator keeps, only the lag-1 one can be NaN
    ess = np.where(np.isnan(rho[:, 1]), np.nan, ess)
    constant = (z.max(axis=(1, 2)) - z.min(axis=(1, 2))) < np.finfo(float).resolution
    return np.where(constant, float(total), ess)


def _autocorrelation_time(rho: np.ndarray) -> np.ndarray:
    """Geyer's initial positive and monotone sequence estimate of the integrated
    autocorrelation time from the autocorrelations ``rho`` ``(q, lag)``, ``rho[:, 0] = 1``.

    ``tau = -1 + 2 sum_j P_j + rho[2J]``: the pairs ``P_j = rho[2j] + rho[2j+1]`` count
    while they stay positive (``j < J``; at most ``cap`` pairs past the first, the lags
    ArviZ looks at), each replaced by the running minimum of the pairs up to it (the
    monotone sequence); the even lag ``2J`` after them counts when its pair is
    non-negative or it is positive itself.
    """
    lags = rho.shape[1]
    cap = len(range(1, lags - 3, 2))
    even = rho[:, 0 : 2 * cap + 1 : 2]
    pairs = even + rho[:, 1 : 2 * cap + 2 : 2]
    kept = np.logical_and.accumulate(pairs[:, :cap] > 0, axis=1).sum(axis=1)
    monotone = np.minimum.accumulate(pairs, axis=1)
    body = np.where(np.arange(cap + 1) < kept[:, None], monotone, 0.0).sum(axis=1)
    last_pair = np.take_along_axis(pairs, kept[:, None], axis=1)[:, 0]
    last_even = np.take_along_axis(even, kept[:, None], axis=1)[:, 0]
    last = np.where((last_pair >= 0) | (last_even > 0), last_even, 0.0)
    return -1.0 + 2.0 * body + last
