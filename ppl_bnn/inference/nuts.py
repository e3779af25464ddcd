"""Full-batch No-U-Turn Sampler with BlackJAX's kernel, vmapped over chains.

The kernel is BlackJAX's iterative NUTS (Hoffman & Gelman 2014, with the multinomial
trajectory sampling and generalised no-U-turn criterion of Betancourt 2017): each
iteration resamples the momentum and doubles the trajectory, forwards or backwards at
random, until it turns back on itself or reaches ``2 ** max_num_doublings`` leapfrog
steps. It is shaped like :func:`ppl_bnn.inference.hmc.build_kernel`: one call advances a
stack of chains, and the step size and inverse mass matrix (diagonal ``(chains, d)`` or
dense ``(chains, d, d)``) are traced arguments, so changing them never recompiles.

References:
    Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn Sampler: adaptively setting path
    lengths in Hamiltonian Monte Carlo. JMLR 15, 1593-1623.
    Betancourt, M. (2017). A conceptual introduction to Hamiltonian Monte Carlo.
    arXiv:1701.02434.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.mcmc.hmc import HMCState

from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.types import Array

__all__ = ["HMCState", "NUTSInfo", "build_kernel", "one_step"]


class NUTSInfo(NamedTuple):
    """What one NUTS iteration reports, per chain (never fed back into the sampler).

    ``acceptance_rate`` is the mean Metropolis acceptance probability over the whole
    trajectory (what dual averaging adapts on); ``is_accepted`` says whether the chain
    moved; ``energy`` is the Hamiltonian at the start of the trajectory (for E-BFMI);
    ``tree_depth`` is the number of doublings; ``is_turning`` whether the trajectory
    stopped on the no-U-turn criterion rather than on the depth limit or a divergence.
    """

    acceptance_rate: Array
    is_accepted: Array
    is_divergent: Array
    num_integration_steps: Array
    energy: Array
    tree_depth: Array
    is_turning: Array
    logdensity: Array


def one_step(
    logdensity: LogDensity | Callable,
    *,
    max_num_doublings: int = 10,
    divergence_threshold: float = 1000.0,
) -> Callable:
    """The un-vmapped, un-jitted one-chain step
    ``step(key, state, batch, step_size, inverse_mass_matrix) -> (state, NUTSInfo)``
    (for composing inside other jitted code, e.g. the window adaptation)."""
    bj_kernel = blackjax.mcmc.nuts.build_kernel(divergence_threshold=divergence_threshold)

    def step(key, state, batch, step_size, inverse_mass_matrix):
        new_state, info = bj_kernel(
            key,
            state,
            lambda p: logdensity(p, batch),
            step_size,
            inverse_mass_matrix,
            max_num_doublings,
        )
        moved = jnp.logical_not(
            jnp.all(
                jnp.stack(
                    [
                        jnp.all(a == b)
                        for a, b in zip(
                            jax.tree.leaves(new_state.position),
                            jax.tree.leaves(state.position),
                            strict=True,
                        )
                    ]
                )
            )
        )
        return new_state, NUTSInfo(
            acceptance_rate=info.acceptance_rate,
            is_accepted=moved,
            is_divergent=info.is_divergent,
            num_integration_steps=info.num_integration_steps,
            energy=info.energy,
            tree_depth=info.num_trajectory_expansions,
            is_turning=info.is_turning,
            logdensity=new_state.logdensity,
        )

    return step


def build_kernel(
    logdensity: LogDensity | Callable,
    *,
    max_num_doublings: int = 10,
    divergence_threshold: float = 1000.0,
) -> Callable:
    """One NUTS iteration for a stack of chains, as a single jitted call.

    ``kernel(keys, state, batch, step_size, inverse_mass_matrix) -> (state, NUTSInfo)``
    with one key and step size per chain (``(chains,)``), a per-chain inverse mass
    matrix (``(chains, d)`` diagonal or ``(chains, d, d)`` dense, over the flattened
    position in ``ravel_pytree`` order) and ``state`` a BlackJAX ``HMCState`` stacked
    over chains (``ppl_bnn.inference.hmc.build_init`` makes one). ``logdensity`` is
    called as ``logdensity(position, batch)`` (a :class:`LogDensity` is the full-batch
    log posterior). ``max_num_doublings`` and ``divergence_threshold`` change the graph
    and are fixed here; every number passed to ``kernel`` is traced.

    Example:
        >>> import jax.numpy as jnp
        >>> from ppl_bnn.inference.hmc import build_init
        >>> from ppl_bnn.inference.nuts import build_kernel
        >>> from ppl_bnn.inference.warmup import initial_positions
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
        >>> kernel = build_kernel(ld)
        >>> state = build_init(ld)(initial_positions(ld, jax.random.key(0), 4), batch)  # 4 chains
        >>> keys = jax.random.split(jax.random.key(1), 4)
        >>> state, info = kernel(keys, state, batch, jnp.full((4,), 0.1), jnp.ones((4, 3)))
        >>> info.acceptance_rate.shape
        (4,)
    """
    step = one_step(
        logdensity,
        max_num_doublings=max_num_doublings,
        divergence_threshold=divergence_threshold,
    )
    return jax.jit(jax.vmap(step, in_axes=(0, 0, None, 0, 0)))


def info_from_batch(info: NUTSInfo) -> dict[str, Array]:
    """``sample_stats`` entries (ArviZ names) of one stacked iteration's info."""
    return {
        "acceptance_rate": info.acceptance_rate,
        "diverging": info.is_divergent,
        "n_steps": info.num_integration_steps,
        "tree_depth": info.tree_depth,
        "energy": info.energy,
        "lp": info.logdensity,
    }


def position_size(position) -> int:
    """Number of scalar coordinates of one chain's position pytree."""
    return int(sum(jnp.size(a) for a in jax.tree.leaves(position)))
