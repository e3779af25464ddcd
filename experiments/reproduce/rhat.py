"""Finding 7: split R-hat in function and weight space, and the posterior surface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .plots import _plot_rhat
from .registry import Finding, register_finding
from .report import fmt
from .stats import _table

if TYPE_CHECKING:
    from .context import Context


def finding_rhat(ctx: Context) -> dict[str, Any]:
    import jax
    from jax.flatten_util import ravel_pytree

    from ppl_bnn.experiments.sampling import split_rhat as _split_rhat

    d, p = ctx.data, ctx.p
    r = ctx.main_hmc
    probs = ctx.slice(r["probs"], "clean")  # (C, S, n, 10)
    f_rhat = _split_rhat(probs.reshape(probs.shape[:2] + (-1,)))
    keep = np.isfinite(f_rhat) & (probs.reshape(probs.shape[:2] + (-1,)).std((0, 1)) > 1e-6)
    f_rhat = f_rhat[keep]
    w_rhat = _split_rhat(r["coords"])
    w_rhat = w_rhat[np.isfinite(w_rhat)]
    thr = 1.1
    numbers: dict[str, Any] = {
        "function_space": {
            "median_rhat": float(np.median(f_rhat)),
            "frac_rhat_gt_threshold": float(np.mean(f_rhat > thr)),
            "count": int(f_rhat.size),
        },
        "weight_space": {
            "median_rhat": float(np.median(w_rhat)),
            "frac_rhat_gt_threshold": float(np.mean(w_rhat > thr)),
            "count": int(w_rhat.size),
        },
        "chains": p.num_chains,
        "draws_per_chain": p.num_samples,
        "criteria": {"rhat_threshold": thr},
    }
    ok = numbers["function_space"]["median_rhat"] < thr < numbers["weight_space"]["median_rhat"]
    # posterior surface through the final states of three chains (T = 1, full training set)
    sampler = r["sampler"]
    finals = jax.tree.map(lambda a: np.asarray(a), r["final_position"])
    flat = [np.asarray(ravel_pytree({k: v[c] for k, v in finals.items()})[0]) for c in range(3)]
    g = p.surface_grid
    ab, lp, marks = _surface(sampler, flat, d["x_train"], d["y_train"], g)
    numbers["surface"] = {
        "grid_size": g,
        "max_log_posterior": float(np.nanmax(lp)),
        "min_log_posterior": float(np.nanmin(lp)),
    }
    _plot_rhat(ctx, f_rhat, w_rhat, ab, lp, marks, thr)
    return {
        "verdict": "reproduced" if ok else "not reproduced at this scale",
        "reason": (
            f"median split-R-hat in function space {fmt(numbers['function_space']['median_rhat'])} "
            f"({fmt(numbers['function_space']['frac_rhat_gt_threshold'])} above {fmt(thr)}), "
            f"in weight "
            f"space {fmt(numbers['weight_space']['median_rhat'])} "
            f"({fmt(numbers['weight_space']['frac_rhat_gt_threshold'])} above {fmt(thr)})"
        ),
        "numbers": numbers,
        "table": _table(
            ["space", "median R-hat", "share above threshold", "count"],
            [
                [
                    "function",
                    numbers["function_space"]["median_rhat"],
                    numbers["function_space"]["frac_rhat_gt_threshold"],
                    numbers["function_space"]["count"],
                ],
                [
                    "weight",
                    numbers["weight_space"]["median_rhat"],
                    numbers["weight_space"]["frac_rhat_gt_threshold"],
                    numbers["weight_space"]["count"],
                ],
            ],
        ),
        "figure": "rhat.png",
    }


def _surface(sampler, flat, x, y, g):
    """Log posterior on the plane through three parameter vectors, as the original
    ``make_posterior_surface_plot.py``: ``theta1 + a (theta2 - theta1) + b v``, with ``v``
    the part of ``theta3 - theta1`` orthogonal to ``theta2 - theta1``; a, b in
    [-0.25, 1.25]. Returns the grid, the values and the three points' coordinates."""
    import jax
    import jax.numpy as jnp

    from ppl_bnn.density.sharding import Batch

    t1, t2, t3 = (np.asarray(f, np.float64) for f in flat)
    u = t2 - t1
    w = t3 - t1
    proj = float(w @ u / (u @ u))
    v = w - proj * u
    ab = np.stack(
        np.meshgrid(np.linspace(-0.25, 1.25, g), np.linspace(-0.25, 1.25, g), indexing="ij"), -1
    )
    ld, unravel = sampler.logdensity, sampler.unravel
    batch = Batch(jnp.asarray(x), jnp.asarray(y), jnp.ones(len(x), jnp.float32), len(x))
    origin, dirs = jnp.asarray(t1, jnp.float32), jnp.asarray(np.stack([u, v]), jnp.float32)
    f = jax.jit(lambda c: jax.lax.map(lambda z: ld(unravel(origin + z @ dirs), batch), c))
    lp = np.asarray(f(jnp.asarray(ab.reshape(-1, 2), jnp.float32))).reshape(g, g)
    marks = np.array([[0.0, 0.0], [1.0, 0.0], [proj, 1.0]])
    return ab, lp, marks


register_finding(
    Finding(
        7,
        "rhat",
        "Function-space R-hat is near 1, weight-space R-hat is not",
        "HMC chains mix in function space (R-hat of the predictions close to 1) while they do "
        "not in weight space (Section 5); the posterior density through three samples",
        finding_rhat,
        ("hmc_cifar10_table3", "surface_imdb"),
    )
)
