"""Step-size schedules of the original code, as optax schedules (``step -> step size``).

``step`` counts minibatch steps from 0. Every schedule is a pure ``jnp`` function of a
traced step, so one compiled epoch serves every epoch: the schedule never recompiles.

* :func:`cosine` (SGD, VI): ``0.5 * init * (1 + cos(pi * t / total))``.
* :func:`constant_with_cosine_burnin` (SG-MCMC ``constant``): a cosine from ``init`` to
  ``final`` over the burn-in, then ``final``.
* :func:`cyclical` (SG-MCMC ``cyclical``, Zhang et al. 2020, "Cyclical SG-MCMC"):
  ``init`` during the burn-in, then cosine cycles of ``cycle_length`` steps from ``init``
  down to (almost) zero; samples are best taken at the end of a cycle.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import optax

from ppl_bnn.methods import option_name

__all__ = ["constant_with_cosine_burnin", "cosine", "cyclical", "sgmcmc_schedule"]


def cosine(init_step_size: float, total_steps: int) -> optax.Schedule:
    """Cosine decay from ``init_step_size`` to 0 over ``total_steps`` (then 0)."""
    total = max(int(total_steps), 1)

    def schedule(step):
        t = jnp.minimum(step / total, 1.0)
        return 0.5 * init_step_size * (1.0 + jnp.cos(math.pi * t))

    return schedule


def constant_with_cosine_burnin(
    init_step_size: float, final_step_size: float, burnin_steps: int
) -> optax.Schedule:
    """Cosine from ``init`` to ``final`` over ``burnin_steps``, constant ``final`` after."""
    burnin = int(burnin_steps)

    def schedule(step):
        if burnin <= 0:
            return jnp.asarray(final_step_size) + 0.0 * step
        coef = 0.5 * (1.0 + jnp.cos(math.pi * jnp.minimum(step / burnin, 1.0)))
        return coef * init_step_size + (1.0 - coef) * final_step_size

    return schedule


def cyclical(init_step_size: float, burnin_steps: int, cycle_length: int) -> optax.Schedule:
    """``init`` during the burn-in, then ``0.5 init (1 + cos(pi (t' mod C) / C))``.

    ``t' = max(t - burnin - 1, 0)`` and ``C = cycle_length`` steps, as in the original.
    """
    if cycle_length < 1:
        raise ValueError(f"the cycle length must be at least one step, got {cycle_length}")

    def schedule(step):
        t = jnp.maximum(step - burnin_steps - 1, 0)
        cyc = (
            0.5
            * init_step_size
            * (1.0 + jnp.cos(math.pi * jnp.mod(t, cycle_length) / cycle_length))
        )
        return jnp.where(step < burnin_steps, init_step_size, cyc)

    return schedule


def sgmcmc_schedule(
    kind: str,
    *,
    init_step_size: float,
    final_step_size: float | None,
    burnin_steps: int,
    cycle_length: int,
) -> optax.Schedule:
    """The schedule ``--step_size_schedule`` names (``constant`` or ``cyclical``)."""
    if kind == "constant":
        final = init_step_size if final_step_size is None else final_step_size
        return constant_with_cosine_burnin(init_step_size, final, burnin_steps)
    if kind == "cyclical":
        return cyclical(init_step_size, burnin_steps, cycle_length)
    raise ValueError(
        f"unknown {option_name('step_size_schedule')}={kind!r}; choose constant or cyclical"
    )
