"""MAP estimation by stochastic gradient ascent (SGD with momentum), and deep ensembles.

The original's SGD (Izmailov et al. 2021, ``run_sgd.py``): optax ``trace`` (heavy-ball
momentum, ``m <- momentum_decay * m + g``) followed by a cosine step-size schedule, applied
with a *positive* step size to ``g``, the gradient of the minibatch estimate of the log
posterior (:mod:`ppl_bnn.inference.minibatch`). That is ascent on ``N * mean log lik + log
prior`` (divided by the temperature): the gradient has full-data scale, so step sizes are
tiny (``1e-6`` to ``3e-7`` on CIFAR).

A deep ensemble (Lakshminarayanan et al. 2017) is several such runs from different seeds;
the driver vectorises them (``jax.vmap`` over a stack of states).

Example:
    >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
    >>> from ppl_bnn.density.logdensity import LogDensity
    >>> from ppl_bnn.density.sharding import make_mesh, shard_batch
    >>> def model(x, y=None):  # Bayesian linear regression
    ...     w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    ...     with numpyro.plate("data", x.shape[0]):
    ...         numpyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)
    >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    >>> y = (x @ np.array([1.0, -1.0, 0.5])).astype(np.float32)
    >>> mesh = make_mesh()
    >>> ld = LogDensity(model, mesh, (x[:2], y[:2]))
    >>> batch = shard_batch(mesh, x, y)
    >>> from ppl_bnn.inference import minibatch, optimize, schedules
    >>> estimate = minibatch.logdensity_estimator(ld, num_examples=64)
    >>> opt = optimize.optimizer(schedules.cosine(1e-3, 100), momentum_decay=0.9)
    >>> step = jax.jit(optimize.build_kernel(estimate, opt))
    >>> state = optimize.init(ld.init(jax.random.key(0)), opt)
    >>> for i in range(100):
    ...     index = minibatch.epoch_indices(jax.random.key(i), 64, 16)[0]   # 16 random rows
    ...     state, info = step(state, minibatch.gather(x, y, index))
    >>> np.round(state.position["w"], 1)      # the MAP (prior N(0, 1), noise 0.5)
    Array([ 1. , -1. ,  0.5], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ppl_bnn.methods import option_name
from ppl_bnn.types import Array, ArrayTree

__all__ = ["SGDInfo", "SGDState", "build_kernel", "init", "optimizer"]


class SGDState(NamedTuple):
    """The parameters and the optimizer's state (momentum, step count)."""

    position: ArrayTree
    opt_state: optax.OptState


class SGDInfo(NamedTuple):
    """What one step reports: the minibatch estimate of the log posterior before the step
    (``nan`` unless the kernel was built with ``report_logdensity=True``)."""

    logdensity: Array


def optimizer(schedule: optax.Schedule, momentum_decay: float) -> optax.GradientTransformation:
    """The original's update: ``trace(momentum_decay)`` then ``scale_by_schedule``.

    The result is *added* to the parameters (ascent on the log posterior).
    """
    if not 0.0 <= momentum_decay < 1.0:
        raise ValueError(
            f"{option_name('momentum_decay')} must lie in [0, 1), got {momentum_decay}"
        )
    return optax.chain(
        optax.trace(decay=momentum_decay, nesterov=False), optax.scale_by_schedule(schedule)
    )


def init(position: ArrayTree, opt: optax.GradientTransformation) -> SGDState:
    return SGDState(position, opt.init(position))


def build_kernel(
    logdensity_estimator: Callable[[ArrayTree, object], Array],
    opt: optax.GradientTransformation,
    *,
    report_logdensity: bool = False,
) -> Callable[[SGDState, object], tuple[SGDState, SGDInfo]]:
    """``step(state, minibatch) -> (state, info)``: one ascent step (no randomness).

    ``report_logdensity`` also returns the estimate itself; carrying it out of a scan
    costs ~10% of an epoch on CPU (measured), so it is off unless asked for.
    """
    if report_logdensity:
        value_and_grad = jax.value_and_grad(logdensity_estimator)
    else:
        grad_fn = jax.grad(logdensity_estimator)
        value_and_grad = lambda p, mb: (jnp.nan, grad_fn(p, mb))  # noqa: E731

    def step(state: SGDState, minibatch) -> tuple[SGDState, SGDInfo]:
        value, grad = value_and_grad(state.position, minibatch)
        updates, opt_state = opt.update(grad, state.opt_state, state.position)
        return SGDState(optax.apply_updates(state.position, updates), opt_state), SGDInfo(value)

    return step
