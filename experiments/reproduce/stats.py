"""Per-test-point metrics and their bootstrap over test points."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .context import Context


def _bootstrap_mean(values: np.ndarray, B: int, seed: int) -> tuple[float, float, float, float]:
    """Mean, bootstrap standard error and 95% interval of the mean over test points."""
    rng = np.random.default_rng(seed)
    v = np.asarray(values, np.float64)
    idx = rng.integers(0, len(v), (B, len(v)))
    means = v[idx].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(v.mean()), float(means.std()), float(lo), float(hi)


def _point_nll(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))


def _point_acc(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (probs.argmax(-1) == y).astype(np.float64)


def _table(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"columns": columns, "rows": rows}


def _metrics(ctx: Context, probs: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    from ppl_bnn.evaluation.metrics import ece

    B = ctx.p.num_bootstrap
    acc, acc_se, _, _ = _bootstrap_mean(_point_acc(probs, y), B, seed)
    nll, nll_se, _, _ = _bootstrap_mean(_point_nll(probs, y), B, seed)
    return {
        "accuracy": acc,
        "accuracy_se": acc_se,
        "nll": nll,
        "nll_se": nll_se,
        "ece": float(ece(probs, y)),
    }


def _diff(ctx, a: np.ndarray, b: np.ndarray, seed: int) -> dict[str, float]:
    m, se, lo, hi = _bootstrap_mean(a - b, ctx.p.num_bootstrap, seed)
    return {"diff": m, "se": se, "ci_low": lo, "ci_high": hi}
