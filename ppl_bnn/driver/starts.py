"""Where MCMC chains start: the strategies of ``init_strategy`` and superchains.

* ``"uniform"``, ``"median"``, ``"optimize"``: :func:`ppl_bnn.inference.warmup.initial_positions`;
* ``"ensemble"``: the members of a finished SGD or deep-ensemble run (``init_from``: its
  run directory, or an in-memory :class:`~ppl_bnn.driver.loop.RunResult`); chain ``i``
  starts at member ``i mod M``. With more chains than members, the chains that share a
  member form a *superchain*: nested R-hat (Margossian et al. 2024) is the convergence
  check that fits them (:func:`nested_rhat`), and the summary records the grouping.
* ``"pathfinder"``: each chain runs BlackJAX's Pathfinder (L-BFGS and its Gaussian
  approximations, Zhang et al. 2022) from its uniform start and starts at one draw of the
  approximation: for small models (L-BFGS keeps ``2 * 10`` vectors of the model's size).

References:
    Margossian, C. C., Hoffman, M. D., Sountsov, P., Riou-Durand, L., Vehtari, A. and
    Gelman, A. (2024). Nested R-hat: assessing the convergence of Markov chain Monte
    Carlo when running many short chains. Bayesian Analysis.
    Zhang, L., Carpenter, B., Gelman, A. and Vehtari, A. (2022). Pathfinder: parallel
    quasi-Newton variational inference. JMLR 23(306).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bnn.declare.problem import Problem

__all__ = [
    "STRATEGIES",
    "check_strategy",
    "ensemble_members",
    "initial_positions",
    "nested_rhat",
    "superchain_ids",
]

STRATEGIES = ("uniform", "median", "optimize", "ensemble", "pathfinder")


def check_strategy(strategy: str, init_from: Any = None) -> None:
    """One-line ``ValueError`` for an unknown strategy or a missing/unused ``init_from``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown init_strategy {strategy!r}; choose {', '.join(STRATEGIES)}")
    if strategy == "ensemble" and init_from is None:
        raise ValueError(
            "init_strategy='ensemble' needs init_from: the run directory (or RunResult) of "
            "a finished sgd or ensemble run"
        )
    if strategy != "ensemble" and init_from is not None:
        raise ValueError("init_from is used with init_strategy='ensemble' only")


def initial_positions(
    problem: Problem, key, num_chains: int, strategy: str, init_from: Any = None
) -> dict:
    """Unconstrained initial positions ``(num_chains, ...)`` (module docstring)."""
    check_strategy(strategy, init_from)
    if strategy == "ensemble":
        members = ensemble_members(problem, init_from)
        m = next(iter(members.values())).shape[0]
        return {k: jnp.asarray(v[np.arange(num_chains) % m]) for k, v in members.items()}
    from ppl_bnn.inference import warmup as warmup_lib

    ld = problem.logdensity
    if strategy == "pathfinder":
        key_start, key_path = jax.random.split(key)
        starts = warmup_lib.initial_positions(ld, key_start, num_chains, strategy="uniform")
        return _pathfinder(ld, problem.train, jax.random.split(key_path, num_chains), starts)
    return warmup_lib.initial_positions(ld, key, num_chains, strategy=strategy, batch=problem.train)


def superchain_ids(num_chains: int, strategy: str, init_from: Any = None, problem=None):
    """``[i mod M]`` for ``num_chains`` chains started from an ensemble of ``M`` members
    when the chains outnumber the members, else ``None`` (no superchains)."""
    if strategy != "ensemble" or problem is None:
        return None
    m = next(iter(ensemble_members(problem, init_from).values())).shape[0]
    return [i % m for i in range(num_chains)] if num_chains > m else None


def ensemble_members(problem: Problem, init_from: Any) -> dict[str, np.ndarray]:
    """The unconstrained positions ``(members, ...)`` of a run's members: a finished run's
    directory (its last checkpoint's ``position``) or an in-memory ``RunResult`` (the last
    draw of each chain, unconstrained). A one-line ``ValueError`` when there is none or
    when they are not this model's parameters."""
    ld = problem.logdensity
    if hasattr(init_from, "samples") and getattr(init_from, "run_dir", None) is None:
        samples = init_from.samples or {}
        missing = [n for n in ld.latent_sites if n not in samples]
        if missing:
            raise ValueError(f"init_from holds no draws of {missing[0]!r}: not this model's run")
        last = {n: np.asarray(samples[n])[:, -1] for n in ld.latent_sites}
        position = jax.device_get(jax.vmap(ld.unconstrain)(last))
    else:
        position = _checkpoint_position(getattr(init_from, "run_dir", None) or init_from)
    out = {}
    for name in ld.latent_sites:
        if name not in position:
            raise ValueError(f"init_from holds no parameter {name!r}: not this model's run")
        v = np.asarray(position[name])
        if v.shape[1:] != tuple(ld.shapes[name]):
            raise ValueError(
                f"init_from: {name} has shape {v.shape[1:]}, this model's is {ld.shapes[name]}"
            )
        out[name] = v.astype(jnp.zeros(()).dtype)
    return out


def _checkpoint_position(run_dir) -> dict:
    import json

    from ppl_bnn.store.checkpoint import load_checkpoint

    path = Path(str(run_dir))
    summary = path / "summary.json"
    if not summary.is_file() or not json.loads(summary.read_text()).get("complete"):
        raise ValueError(f"init_from={run_dir} is not a finished run (no complete summary.json)")
    found = sorted((path / "checkpoints").glob("checkpoint_*.npz"))
    if not found:
        raise ValueError(f"init_from={run_dir} holds no checkpoint")
    saved = load_checkpoint(found[-1])
    position = saved.get("position") if isinstance(saved, dict) else None
    if not isinstance(position, dict):
        raise ValueError(f"init_from={run_dir}: its checkpoint holds no positions")
    return position


def _pathfinder(ld, batch, keys, starts) -> dict:
    import blackjax

    def one(key, start):
        key_fit, key_draw = jax.random.split(key)
        fn = lambda p: ld(p, batch)  # noqa: E731
        state, _ = blackjax.vi.pathfinder.approximate(key_fit, fn, start, num_samples=50)
        draw, _ = blackjax.vi.pathfinder.sample(key_draw, state)  # (draw, log q)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(draw)]))
        # a draw that fell outside the model's domain: the optimiser's end point instead
        return jax.tree.map(lambda d, s: jnp.where(finite, d, s), draw, state.position)

    return jax.jit(jax.vmap(one))(keys, starts)


def nested_rhat(quantities: dict[str, np.ndarray], ids) -> float | None:
    """The largest nested R-hat (ArviZ's ``rhat_nested``) over every coordinate of
    ``quantities`` (name -> ``(chain, draw, ...)``) with superchains ``ids``; ``None``
    when the superchains are not of equal size or there are too few draws."""
    from arviz_stats import rhat_nested

    if ids is None:
        return None
    counts = np.bincount(np.asarray(ids))
    if len(set(counts.tolist())) != 1 or counts[0] < 2:
        return None
    worst = None
    for v in quantities.values():
        a = np.asarray(v, np.float64)
        if a.ndim < 2 or a.shape[1] < 4:
            continue
        flat = a.reshape(a.shape[0], a.shape[1], -1)
        r = np.stack(
            [rhat_nested(flat[..., j], superchain_ids=list(ids)) for j in range(flat.shape[2])]
        )
        r = r[np.isfinite(r)]
        if r.size:
            worst = max(worst or 1.0, float(r.max()))
    return worst
