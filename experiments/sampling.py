"""The experiments' posterior sampling: :func:`ppl_bnn.infer`, as any user calls it.

``uci-benchmark`` and ``reproduce`` sample their BNNs with :func:`sample_bnn`, which
runs the library's window-adapted NUTS (or HMC) in memory (compiled scans) and returns
the function-space draws, the sampler statistics and the run-end diagnostics; nothing
here is a sampler of its own.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["function_ess", "sample_bnn", "split_rhat"]


def sample_bnn(
    model,
    x,
    y,
    x_eval,
    y_eval,
    *,
    method: str = "nuts",
    num_chains: int,
    num_warmup: int,
    num_samples: int,
    max_num_doublings: int,
    seed: int,
) -> dict[str, Any]:
    """``ppl_bnn.infer(model, x, y, x_test=x_eval, ...)`` and what the experiments read.

    ``max_num_doublings`` bounds NUTS's trees (``method="hmc"`` or ``"chees"``: at most
    ``2**max_num_doublings - 1`` leapfrog steps per trajectory, the same budget; MAMS
    sets its own number of steps). The
    run-end warnings are returned (``"warnings"``), not printed: a benchmark's short
    chains would repeat them for every fit.

    Returns a dict with ``"pred"`` ``(chain, draw, n_eval, k)``, ``"samples"`` (site ->
    ``(chain, draw, ...)``), the mean ``"acceptance_rate"``, ``"divergent_frac"``,
    ``"mean_leapfrog_steps"``, the per-chain ``"step_size"`` and ``"warnings"``.
    """
    import ppl_bnn
    from ppl_bnn.diagnostics import RunWarning

    options: dict[str, Any] = {}
    if method == "nuts":
        options["max_num_doublings"] = max_num_doublings
    elif method in ("hmc", "chees"):
        options["max_num_steps"] = 2**max_num_doublings - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunWarning)
        result = ppl_bnn.infer(
            model,
            x,
            y,
            x_test=x_eval,
            y_test=y_eval,
            method=method,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            seed=seed,
            log_likelihood=False,
            **options,
        )
    stats = result.sample_stats
    mean = lambda k: float(np.mean(stats[k])) if k in stats else float("nan")  # noqa: E731
    return {
        "pred": np.asarray(result.predictions, np.float64),
        "samples": result.samples,
        "acceptance_rate": mean("acceptance_rate"),
        "divergent_frac": mean("diverging"),
        "mean_leapfrog_steps": mean("n_steps"),
        "step_size": np.asarray(stats["step_size"])[:, -1].tolist(),
        "warnings": [d.message for d in result.diagnose()],
    }


def split_rhat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat (ArviZ's, vectorised: :func:`ppl_bnn.diagnostics.fast.rhat`)
    of every quantity of ``(chain, draw, ...)`` draws, shaped like one draw (NaN where it is
    undefined, e.g. a constant)."""
    from ppl_bnn.diagnostics.fast import rhat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant quantities
        return np.asarray(rhat(np.asarray(draws, np.float64)), np.float64)


def function_ess(draws: np.ndarray) -> np.ndarray:
    """Bulk ESS (:func:`ppl_bnn.diagnostics.fast.ess_bulk`) of every quantity of
    ``(chain, draw, ...)`` draws, shaped like one draw."""
    from ppl_bnn.diagnostics.fast import ess_bulk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(ess_bulk(np.asarray(draws, np.float64)), np.float64)
