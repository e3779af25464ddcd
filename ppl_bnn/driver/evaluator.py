"""Predictions, metrics and site values of stacks of positions, and the initial-point check.

An :class:`Evaluator` holds the jitted, vectorised maps of one problem (one per
``Problem``: runs sharing it compile once); :func:`site_values` and
:func:`pointwise_log_likelihood` trace the NumPyro model at one position.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ppl_bnn.declare.problem import Problem
from ppl_bnn.density.sharding import to_host
from ppl_bnn.evaluation.predictive import evaluate, mean_over_members

__all__ = [
    "Evaluator",
    "NonFiniteError",
    "check_initial_point",
    "pointwise_log_likelihood",
    "site_values",
]


class Evaluator:
    """Jitted predictions and site values of stacks of positions (host arrays out).

    One per problem: runs sharing a ``Problem`` (``compare``, tests) compile once.
    """

    _cache: dict[int, tuple[Any, Evaluator]] = {}

    def __init__(self, problem: Problem):
        self.problem = problem
        ld = problem.logdensity
        self._predict = jax.jit(jax.vmap(ld.predict, in_axes=(0, None)))
        self._log_prob = jax.jit(jax.vmap(ld, in_axes=(0, None)))
        self._value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(ld), in_axes=(0, None)))
        self._log_prior = jax.jit(jax.vmap(ld.log_prior))
        self._sites = jax.jit(jax.vmap(lambda p: site_values(problem, p)))
        self._constrained = jax.jit(jax.vmap(ld.constrain))
        self._pointwise = jax.jit(jax.vmap(lambda p: pointwise_log_likelihood(problem, p)))

    @classmethod
    def of(cls, problem: Problem) -> Evaluator:
        import weakref

        hit = cls._cache.get(id(problem))
        if hit is None or hit[0]() is not problem:
            for k in [k for k, v in cls._cache.items() if v[0]() is None]:
                del cls._cache[k]
            hit = cls._cache[id(problem)] = (weakref.ref(problem), cls(problem))
        return hit[1]

    def test(self, positions) -> np.ndarray:
        n = self.problem.dataset.x_test.shape[0]
        return to_host(self._predict(positions, self.problem.test.x))[:, :n]  # type: ignore[union-attr]

    def train(self, positions) -> np.ndarray:
        n = self.problem.dataset.x_train.shape[0]
        return to_host(self._predict(positions, self.problem.train.x))[:, :n]

    def log_prob(self, positions) -> np.ndarray:
        """Full-batch tempered log posterior of every member."""
        return np.asarray(self._log_prob(positions, self.problem.train))

    def value_and_grad(self, positions):
        """Full-batch log posterior and its gradient of every member."""
        return jax.device_get(self._value_and_grad(positions, self.problem.train))

    def log_prior(self, positions) -> np.ndarray:
        return np.asarray(self._log_prior(positions))

    def constrained(self, positions) -> dict[str, np.ndarray]:
        """Constrained values of the latent sites (what the sample store keeps)."""
        return jax.device_get(self._constrained(positions))

    def sites(self, positions) -> dict[str, np.ndarray]:
        return jax.device_get(self._sites(positions))

    def pointwise(self, positions) -> dict[str, np.ndarray]:
        return jax.device_get(self._pointwise(positions))

    def metrics(self, train_preds, test_preds, ens_pred) -> dict[str, float]:
        """``train/*`` and ``test/*`` (mean over members) and ``test/ens_*`` of ``ens_pred``."""
        ds = self.problem.dataset
        out: dict[str, float] = {}
        for split, preds in (("train", train_preds), ("test", test_preds)):
            if preds is None:
                continue
            per_member = [evaluate(p, ds, split) for p in preds]
            out.update({f"{split}/{k}": v for k, v in mean_over_members(per_member).items()})
        if ens_pred is not None:
            out.update({f"test/ens_{k}": v for k, v in evaluate(ens_pred, ds, "test").items()})
        return out


def site_values(problem: Problem, position: dict) -> dict:
    """Constrained values of every latent and deterministic site at one position.

    Deterministic sites are evaluated on the first two training rows when they depend on
    the data: only data-free deterministic sites are meaningful as posterior variables.
    """
    from numpyro import handlers

    ld = problem.logdensity
    values = ld.constrain(position)
    model = handlers.substitute(handlers.seed(ld.model, 0), {**ld._params, **values})
    x, y = problem.dataset.x_train, problem.dataset.y_train
    trace = handlers.trace(model).get_trace(x[:2], y[:2])
    n = min(2, x.shape[0])
    for name, site in trace.items():
        if site["type"] == "deterministic":
            v = site["value"]
            if np.ndim(v) and np.shape(v)[0] == n and n != 1:
                continue  # a per-row quantity, not a posterior variable
            values[name] = v
    return values


def pointwise_log_likelihood(problem: Problem, position: dict) -> dict:
    """Observed site -> per-row log likelihood ``(n_train,)`` (untempered scale as traced)."""
    from numpyro import handlers

    ld = problem.logdensity
    model = handlers.substitute(ld.model, {**ld._params, **ld.constrain(position)})
    x, y = problem.dataset.x_train, problem.dataset.y_train
    trace = handlers.trace(model).get_trace(x, y)
    out = {}
    for name in ld.observed_sites:
        site = trace[name]
        lp = site["fn"].log_prob(site["value"])
        out[name] = lp.reshape((x.shape[0], -1)).sum(-1) if np.ndim(lp) else lp[None]
    return out


class NonFiniteError(ValueError):
    """The log density, its gradient or the state is NaN or infinite: the run stops."""


def finite(tree) -> bool:
    """Whether every leaf of ``tree`` is finite."""
    return all(bool(jax.numpy.isfinite(a).all()) for a in jax.tree.leaves(tree))


def check_initial_point(evaluator: Evaluator, positions, state: Any = None) -> None:
    """A one-line :class:`NonFiniteError` when the log density or its gradient is NaN or
    infinite at any member's initial position (NaN or Inf in the data, a model undefined
    there): nothing is written.

    A sampler's ``state`` that carries the full-batch log density and its gradient at
    ``positions`` (``logdensity`` and ``logdensity_grad``, as BlackJAX's states do) is
    checked as it is, without computing them again."""
    ld = evaluator.problem.logdensity
    bad = None
    if not finite(positions):
        bad = "the initial positions are not finite"
    else:
        carried = [getattr(state, k, None) for k in ("logdensity", "logdensity_grad")]
        if all(v is not None for v in carried):
            value, grad = jax.device_get(carried)
        else:
            value, grad = evaluator.value_and_grad(positions)
        lp = np.asarray(value)
        if not np.isfinite(lp).all():
            i = int(np.flatnonzero(~np.isfinite(lp))[0])
            bad = f"the log density at the initial point is {lp[i]} (chain {i})"
        else:
            for name in ld.latent_sites:
                g = np.asarray(grad[name])
                if not np.isfinite(g).all():
                    bad = (
                        "the gradient of the log density at the initial point is not "
                        f"finite (site {name!r})"
                    )
                    break
    if bad is not None:
        raise NonFiniteError(
            f"{bad}: check the data (NaN or Inf inputs or targets) and the model; nothing was "
            "written"
        )
