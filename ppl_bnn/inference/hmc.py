"""Full-batch Hamiltonian Monte Carlo with BlackJAX's kernel.

The semantics are those of the original code (Izmailov et al. 2021): every iteration
resamples the momentum and runs ``L = ceil(trajectory_len / step_size)`` leapfrog steps
over the full training set; during the burn-in the proposal is always taken (no
Metropolis-Hastings correction) and not averaged; afterwards the MH test applies. New:
several chains side by side (``vmap``), optional burn-in step-size adaptation
(``eps <- eps * exp(speed * (accept - target))``, the original's rule) and an optional
diagonal mass matrix estimated from the burn-in draws.

One trajectory is one compiled call. The step size, the number of leapfrog steps, the
mass matrix and the MH switch are traced arguments, so none of them recompiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.mcmc.hmc import HMCState
from blackjax.mcmc.proposal import static_binomial_sampling
from jax.flatten_util import ravel_pytree

from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import Batch
from ppl_bnn.methods import option_name
from ppl_bnn.types import Array, PRNGKey

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "HMCInfo",
    "HMCSamples",
    "HMCState",
    "MassMatrixEstimate",
    "build_init",
    "build_kernel",
    "num_leapfrog_steps",
    "proposal_step",
    "sample",
]


class HMCInfo(NamedTuple):
    """What one iteration reports (per chain); never fed back into the sampler.

    ``is_divergent``: the trajectory's energy error is not finite or exceeds the
    divergence threshold; ``energy``: the Hamiltonian of the proposal; ``logdensity``:
    the chain's log density after the step (``proposal_logdensity``: the proposal's;
    ``proposal_finite``: whether the proposal's position is finite, so that a log density
    that is NaN at finite positions, the model's, is told from an overflowing trajectory).
    """

    acceptance_rate: Array
    is_accepted: Array
    is_divergent: Array
    proposal_logdensity: Array
    num_integration_steps: Array
    energy: Array
    logdensity: Array
    proposal_finite: Array | None = None


def num_leapfrog_steps(trajectory_len: float, step_size: float, max_num_leapfrog_steps: int) -> int:
    """``ceil(trajectory_len / step_size)``, refused above ``max_num_leapfrog_steps``."""
    if step_size <= 0 or trajectory_len <= 0:
        raise ValueError(
            f"{option_name('step_size')} ({step_size}) and {option_name('trajectory_len')} "
            f"({trajectory_len}) must be positive"
        )
    ratio = trajectory_len / step_size
    steps = math.ceil(ratio * (1 - 1e-12))  # 1.5 / 3e-5 is 50000.00000000001 in floating point
    if steps > max_num_leapfrog_steps:
        raise ValueError(
            f"trajectory_len / step_size = {steps} leapfrog steps exceeds "
            f"{option_name('max_num_leapfrog_steps')}={max_num_leapfrog_steps}"
        )
    return max(steps, 1)


def build_init(logdensity: LogDensity) -> Callable[[dict, Batch], HMCState]:
    """``init(positions, batch)``: HMC states for a stack of chain positions (jitted)."""

    def one(position, batch):
        value, grad = jax.value_and_grad(logdensity)(position, batch)
        return HMCState(position, value, grad)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def precise_energy_difference(
    logdensity: LogDensity, batch: Batch, inverse_mass_matrix: Array
) -> Callable:
    """``delta(prev, new)``: the energy change of a trajectory, computed difference-first.

    The log density change comes from ``LogDensity.log_density_difference`` (per example
    and per coordinate before summing) and the kinetic energy change from
    ``0.5 * sum((p0 - p1)(p0 + p1) / m)``, so the Metropolis-Hastings test stays accurate in
    float32 when the log density is in the 1e5-1e7 range (see benchmarks/accept_precision.py).
    """

    def delta(prev, new):
        p0, p1 = ravel_pytree(prev.momentum)[0], ravel_pytree(new.momentum)[0]
        kinetic = 0.5 * jnp.sum((p0 - p1) * (p0 + p1) * inverse_mass_matrix)
        return logdensity.log_density_difference(new.position, prev.position, batch) + kinetic

    return delta


def proposal_step(
    logdensity,
    key,
    state: HMCState,
    batch: Batch,
    step_size,
    inverse_mass_matrix,
    num_steps,
    *,
    divergence_threshold: float = 1000.0,
    precise_accept: bool = True,
):
    """One BlackJAX HMC transition of one chain (``num_steps`` leapfrog steps, then the
    Metropolis-Hastings test): ``(state, blackjax HMCInfo)``. The one HMC proposal block
    of the package (:func:`build_kernel`, the trajectory-length rule of
    :func:`ppl_bnn.inference.warmup.hmc_one_step`). With ``precise_accept``, a diagonal
    mass matrix and a log density that has ``log_density_difference``, the test uses
    :func:`precise_energy_difference` instead of the difference of two float32 totals."""
    build_proposal = blackjax.mcmc.hmc.hmc_proposal
    if (
        precise_accept
        and jnp.ndim(inverse_mass_matrix) == 1
        and hasattr(logdensity, "log_density_difference")
    ):
        delta = precise_energy_difference(logdensity, batch, inverse_mass_matrix)

        def sample_proposal(rng_key, delta_energy, prev, new):
            precise = jnp.where(jnp.isfinite(delta_energy), delta(prev, new), delta_energy)
            return static_binomial_sampling(rng_key, precise, prev, new)

        build_proposal = partial(blackjax.mcmc.hmc.hmc_proposal, sample_proposal=sample_proposal)
    kernel = blackjax.mcmc.hmc.build_kernel(
        divergence_threshold=divergence_threshold, build_proposal=build_proposal
    )
    return kernel(
        key, state, lambda p: logdensity(p, batch), step_size, inverse_mass_matrix, num_steps
    )


def build_kernel(
    logdensity: LogDensity,
    *,
    divergence_threshold: float = 1000.0,
    precise_accept: bool = True,
) -> Callable:
    """One HMC iteration for a stack of chains, as a single jitted call.

    ``kernel(keys, state, batch, step_size, inverse_mass_matrix, num_steps, do_mh)`` with
    one key, step size, flat diagonal inverse mass matrix and step count per chain.
    ``do_mh=False`` takes every proposal (the original's burn-in) except a divergent one:
    a proposal whose log density is not finite, or whose energy error is not finite or
    exceeds ``divergence_threshold``, is never taken, with or without the MH test (with
    it, such a proposal has acceptance probability ``exp(-error) < e^-1000`` anyway).
    BlackJAX integrates the trajectory and makes the accept decision; with
    ``precise_accept`` its energy difference is replaced by
    :func:`precise_energy_difference`.
    """

    def one(key, state, batch, step_size, inverse_mass_matrix, num_steps, do_mh):
        new_state, info = proposal_step(
            logdensity,
            key,
            state,
            batch,
            step_size,
            inverse_mass_matrix,
            num_steps,
            divergence_threshold=divergence_threshold,
            precise_accept=precise_accept,
        )
        proposal = HMCState(
            info.proposal.position, info.proposal.logdensity, info.proposal.logdensity_grad
        )
        take = jnp.isfinite(proposal.logdensity) & ~info.is_divergent
        accepted = jnp.where(do_mh, info.is_accepted, take)
        chosen = jax.tree.map(
            lambda mh, raw, old: jnp.where(do_mh, mh, jnp.where(take, raw, old)),
            new_state,
            proposal,
            state,
        )
        return chosen, HMCInfo(
            info.acceptance_rate,
            accepted,
            info.is_divergent,
            proposal.logdensity,
            jnp.asarray(num_steps),
            info.energy,
            chosen.logdensity,
            jnp.all(jnp.stack([jnp.isfinite(a).all() for a in jax.tree.leaves(proposal.position)])),
        )

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, 0, 0, 0, None)))


class MassMatrixEstimate(NamedTuple):
    """Welford accumulators of the flat position, per chain."""

    count: Array  # type: ignore[assignment]  # a field named like tuple.count
    mean: Array
    m2: Array

    @classmethod
    def zeros(cls, num_chains: int, dim: int, dtype) -> MassMatrixEstimate:
        z = jnp.zeros((num_chains, dim), dtype)
        return cls(jnp.zeros((), dtype), z, z)

    def update(self, flat_positions: Array) -> MassMatrixEstimate:
        count = self.count + 1
        delta = flat_positions - self.mean
        mean = self.mean + delta / count
        return MassMatrixEstimate(count, mean, self.m2 + delta * (flat_positions - mean))

    def inverse_mass_matrix(self) -> Array:
        """Regularised variance estimate (Stan's shrinkage toward 1e-3)."""
        n = self.count
        var = self.m2 / jnp.maximum(n - 1, 1)
        return (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))


def split_keys(key: PRNGKey, num_chains: int) -> tuple[PRNGKey, PRNGKey]:
    """Advance the run key once and derive one key per chain for this iteration."""
    key, step_key = jax.random.split(key)
    return key, jax.random.split(step_key, num_chains)


class HMCSamples(NamedTuple):
    """Draws of :func:`sample`: site values ``(chains, draws, ...)`` and per-draw info."""

    samples: dict
    acceptance_rate: Array | np.ndarray  # (chains, draws)
    is_accepted: Array | np.ndarray  # (chains, draws)


def sample(
    rng_key: PRNGKey,
    model: Callable,
    x,
    y,
    *,
    step_size: float,
    num_leapfrog_steps: int,
    num_samples: int,
    num_burn_in: int = 0,
    num_chains: int = 1,
    mesh=None,
    microbatch_size: int | None = None,
) -> HMCSamples:
    """Full-batch HMC on any NumPyro model ``model(x, y)``, in memory.

    The light-weight entry point for a model written by hand: no run directory, no
    checkpoints (use ``ppl-bnn hmc`` / :func:`ppl_bnn.run_hmc` for long runs). Burn-in
    iterations take every proposal without MH correction and are not returned.

    Example:
        >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
        >>> from ppl_bnn.inference.hmc import sample
        >>> def model(x, y=None):
        ...     w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
        ...     with numpyro.plate("data", x.shape[0]):
        ...         numpyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)
        >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        >>> y = (x @ np.array([1.0, -1.0, 0.5])).astype(np.float32)
        >>> out = sample(jax.random.key(0), model, x, y, step_size=0.02,
        ...              num_leapfrog_steps=10, num_samples=50, num_burn_in=20, num_chains=4)
        >>> out.samples["w"].shape   # (chains, draws, d)
        (4, 50, 3)
        >>> bool(abs(out.samples["w"].mean((0, 1))[0] - 1.0) < 0.2)
        True
    """
    import numpy as np

    from ppl_bnn.density.logdensity import LogDensity
    from ppl_bnn.density.sharding import make_mesh, shard_batch

    mesh = mesh or make_mesh()
    x, y = np.asarray(x), np.asarray(y)
    ld = LogDensity(model, mesh, (x[:2], y[:2]), microbatch_size=microbatch_size)
    batch = shard_batch(mesh, x, y, multiple=microbatch_size or 1)
    key, init_key = jax.random.split(rng_key)
    positions = jax.tree.map(
        lambda *a: jnp.stack(a), *[ld.init(k) for k in jax.random.split(init_key, num_chains)]
    )
    state = build_init(ld)(positions, batch)
    kernel = build_kernel(ld)
    dim = ravel_pytree(jax.tree.map(lambda a: a[0], positions))[0].shape[0]
    dtype = jnp.zeros(()).dtype
    eps = jnp.full((num_chains,), step_size, dtype)
    inv_mass = jnp.ones((num_chains, dim), dtype)
    steps = jnp.full((num_chains,), num_leapfrog_steps)
    constrain = jax.jit(jax.vmap(ld.constrain))
    draws, rates, accepted = [], [], []
    for i in range(num_burn_in + num_samples):
        key, keys = split_keys(key, num_chains)
        do_mh = jnp.asarray(i >= num_burn_in)
        state, info = kernel(keys, state, batch, eps, inv_mass, steps, do_mh)
        jax.block_until_ready(state)  # one trajectory at a time (see sharding notes)
        if i >= num_burn_in:
            draws.append(jax.device_get(constrain(state.position)))
            rates.append(np.asarray(info.acceptance_rate))
            accepted.append(np.asarray(info.is_accepted))
    samples = {k: np.stack([d[k] for d in draws], axis=1) for k in draws[0]} if draws else {}
    return HMCSamples(samples, np.stack(rates, 1), np.stack(accepted, 1))
