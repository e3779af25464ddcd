"""Stan's windowed adaptation, one iteration at a time, for HMC and NUTS.

The warmup adapts the step size by dual averaging (Nesterov 2009, as in Hoffman & Gelman
2014, Sec. 3.2.1) towards a target mean acceptance probability, and, per chain, the
inverse mass matrix (diagonal by default, dense on request) as the regularised sample
covariance of expanding, memoryless "slow" windows (Stan Reference Manual, "HMC algorithm
parameters: automatic parameter tuning"; BlackJAX ``window_adaptation``):

    | fast (75) | slow 25 | slow 50 | slow 100 | ...  slow  | fast (50) |

The schedule is BlackJAX's ``build_schedule``, the dual averaging and Welford estimators
are BlackJAX's; what this module adds is the shape a checkpointing driver needs: every
iteration is one jitted call ``step(keys, state, wstate, batch, iteration)`` whose
``iteration`` is traced, and all adaptation state is a NamedTuple of arrays stacked over
chains, so a run stopped between two iterations resumes bit for bit from the flattened
tree.

HMC needs a trajectory length as well. Here it is set in the units the mass matrix
whitens: with ``M^-1`` the posterior covariance, a Gaussian target rotates with period
``2 pi`` in every direction, and a quarter period (``pi / 2``) maps position onto momentum,
i.e. gives independent draws. Every iteration draws ``T = trajectory_length * U(1 - j,
1 + j)`` (jitter ``j = 0.5`` keeps the mean cosine, the lag-one autocorrelation of a
Gaussian coordinate, at 0 and avoids periodic orbits; Neal 2011, Sec. 5.4.5) and runs
``L = ceil(T / eps)`` leapfrog steps, clamped to ``max_num_steps`` (clamps are counted in
``info.is_clamped``; no run stops for it). No per-model number is involved. The jitter
draw is shared by the chains of one iteration: vmapped chains all wait for the longest
trajectory, so independent draws would cost ``E[max L]`` instead of ``E[L]`` per chain.

References:
    Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn Sampler. JMLR 15, 1593-1623.
    Stan Development Team. Stan Reference Manual, Sec. 15.2 (windowed adaptation).
    Neal, R. M. (2011). MCMC using Hamiltonian dynamics. Handbook of MCMC, ch. 5.
    Beskos, A., Pillai, N., Roberts, G., Sanz-Serna, J. and Stuart, A. (2013). Optimal
    tuning of the hybrid Monte Carlo algorithm. Bernoulli 19(5A), 1501-1534.

One module (about 600 lines) on purpose: the schedule, the dual averaging and mass-
matrix updates, the step-size search and the stacked ``init`` / ``step`` /
``transition`` share one adaptation state, which a checkpoint stores and a resumed run
must rebuild exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.mass_matrix import MassMatrixAdaptationState, mass_matrix_adaptation
from blackjax.adaptation.staged_adaptation import build_schedule
from blackjax.adaptation.step_size import (
    DualAveragingAdaptationState,
    dual_averaging_adaptation,
)
from blackjax.mcmc.hmc import HMCState
from jax.flatten_util import ravel_pytree

from ppl_bnn.inference import nuts
from ppl_bnn.inference.hmc import proposal_step
from ppl_bnn.types import Array, PRNGKey

__all__ = [
    "TrajectoryInfo",
    "WindowAdaptation",
    "WindowAdaptationState",
    "build_hmc_kernel",
    "build_window_adaptation",
    "check_dense_mass_fits",
    "initial_positions",
    "shared_uniform",
]

DEFAULT_TRAJECTORY_LENGTH = 0.5 * math.pi
DEFAULT_TARGET_ACCEPT = {"hmc": 0.65, "nuts": 0.8}


# ----------------------------------------------------------------------- HMC kernel
class TrajectoryInfo(NamedTuple):
    """What one HMC iteration with the trajectory-length rule reports, per chain."""

    acceptance_rate: Array
    is_accepted: Array
    is_divergent: Array
    num_integration_steps: Array
    energy: Array
    is_clamped: Array  # the rule asked for more than max_num_steps leapfrog steps
    logdensity: Array


def hmc_one_step(
    logdensity: Callable,
    *,
    trajectory_length: float = DEFAULT_TRAJECTORY_LENGTH,
    jitter: float = 0.5,
    max_num_steps: int = 1024,
    divergence_threshold: float = 1000.0,
    precise_accept: bool = True,
) -> Callable:
    """One-chain HMC step ``step(key, state, batch, step_size, inverse_mass_matrix, u)``.

    ``u`` in ``[0, 1)`` draws the jitter; the stacked kernels share one ``u`` across
    chains (:func:`shared_uniform`), so that chains with similar step sizes run
    trajectories of similar length: vmapped, every chain waits for the longest one.

    ``L = clip(ceil(trajectory_length * U(1 - jitter, 1 + jitter) / step_size), 1,
    max_num_steps)`` leapfrog steps, then a Metropolis-Hastings test (difference-first
    in float32 with a diagonal mass matrix and ``precise_accept``, as
    :func:`ppl_bnn.inference.hmc.build_kernel`).
    """

    def step(key, state, batch, step_size, inverse_mass_matrix, u=None):
        key_len, key_mh = jax.random.split(key)
        if u is None:
            u = jax.random.uniform(key_len, ())
        u = (1.0 - jitter) + 2.0 * jitter * u
        wanted = jnp.ceil(trajectory_length * u / step_size)
        wanted = jnp.where(jnp.isfinite(wanted), wanted, float(max_num_steps) + 1.0)
        num_steps = jnp.clip(wanted, 1, max_num_steps).astype(jnp.int32)
        new_state, info = proposal_step(
            logdensity,
            key_mh,
            state,
            batch,
            step_size,
            inverse_mass_matrix,
            num_steps,
            divergence_threshold=divergence_threshold,
            precise_accept=precise_accept,
        )
        rate = jnp.where(jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0)
        return new_state, TrajectoryInfo(
            acceptance_rate=rate,
            is_accepted=info.is_accepted,
            is_divergent=info.is_divergent,
            num_integration_steps=num_steps,
            energy=info.energy,
            is_clamped=wanted > max_num_steps,
            logdensity=new_state.logdensity,
        )

    return step


def shared_uniform(keys: Array) -> Array:
    """One ``U(0, 1)`` draw per iteration, common to every chain (from the first chain's
    key, folded so that it is independent of that chain's own draws)."""
    return jax.random.uniform(jax.random.fold_in(keys[0], 0x7A11), ())


def build_hmc_kernel(logdensity: Callable, **options) -> Callable:
    """HMC with the trajectory-length rule for a stack of chains, one jitted call.

    ``kernel(keys, state, batch, step_size, inverse_mass_matrix) -> (state,
    TrajectoryInfo)``, the same signature as :func:`ppl_bnn.inference.nuts.build_kernel`;
    ``options`` are those of :func:`hmc_one_step`. The jitter is shared across chains.
    """
    stacked = jax.vmap(hmc_one_step(logdensity, **options), in_axes=(0, 0, None, 0, 0, None))

    @jax.jit
    def kernel(keys, state, batch, step_size, inverse_mass_matrix):
        return stacked(keys, state, batch, step_size, inverse_mass_matrix, shared_uniform(keys))

    return kernel


# --------------------------------------------------------------------- adaptation
class WindowAdaptationState(NamedTuple):
    """Adaptation state, every leaf stacked over chains.

    ``step_size`` and ``inverse_mass_matrix`` are the values the next iteration uses;
    ``da`` is the dual-averaging state, ``mm`` the mass-matrix (Welford) state.
    """

    da: DualAveragingAdaptationState
    mm: MassMatrixAdaptationState
    step_size: Array
    inverse_mass_matrix: Array


class WindowAdaptation(NamedTuple):
    """The functions of :func:`build_window_adaptation` (see there)."""

    init: Callable
    step: Callable
    final: Callable
    find_step_size: Callable
    kernel: Callable
    schedule: np.ndarray  # (num_warmup, 2): stage (0 fast, 1 slow), end of a slow window
    transition: Callable  # one iteration of warmup or of sampling, by its index


def build_window_adaptation(
    num_warmup: int,
    *,
    logdensity: Callable,
    target_accept: float | None = None,
    dense_mass: bool = False,
    kernel: str = "hmc",
    trajectory_length: float = DEFAULT_TRAJECTORY_LENGTH,
    jitter: float = 0.5,
    max_num_steps: int = 1024,
    max_num_doublings: int = 10,
    initial_buffer_size: int = 75,
    first_window_size: int = 25,
    final_buffer_size: int = 50,
    divergence_threshold: float = 1000.0,
    shared_step_size: bool | None = None,
    pooled_mass_matrix: bool | None = None,
) -> WindowAdaptation:
    """Stan's windowed adaptation for HMC (trajectory-length rule) or NUTS, step by step.

    Args:
        num_warmup: number of warmup iterations (the schedule is BlackJAX's
            ``build_schedule``; under 20 iterations only the step size is adapted).
        logdensity: ``logdensity(position, batch)``, e.g. a
            :class:`ppl_bnn.density.logdensity.LogDensity`.
        target_accept: dual averaging's target mean acceptance probability; default
            (``None``) 0.8 for NUTS (Stan's) and 0.65 for HMC, the asymptotically optimal
            acceptance of HMC with a fixed trajectory length (Beskos et al. 2013; Neal
            2011, Sec. 5.4.4). On the digits BNN 0.65 doubles the step size of 0.8 (0.006
            -> 0.012) and so halves the leapfrog steps per trajectory
            (benchmarks/ess_per_second.py).
        dense_mass: adapt a dense ``(d, d)`` inverse mass matrix instead of a diagonal.
        kernel: ``"hmc"`` (:func:`build_hmc_kernel` with ``trajectory_length``,
            ``jitter``, ``max_num_steps``) or ``"nuts"`` (``max_num_doublings``).
        shared_step_size: one step size for all chains, adapted by dual averaging on
            the acceptance rate averaged over chains (each chain keeps its own mass
            matrix). Default (``None``): off, one step size per chain (Stan's), for
            HMC and NUTS. Sharing saves leapfrog steps when chains run vectorised
            (every iteration lasts as long as the longest chain's ``L = T / eps``;
            1.15x the ESS per second on the digits BNN) but is not robust: a chain
            whose mass matrix adapted badly gets a step size tuned for the others,
            accepts nothing and never recovers, while the mean acceptance still meets
            the target (a flat-prior regression on un-standardised data: 2 of 4 chains
            stuck on most seeds, none with one step size per chain).
        pooled_mass_matrix: at the end of each slow window, every chain gets the one
            mass matrix estimated from all chains' draws of the window pooled (their
            within-chain spread plus the spread between their means), as cross-chain
            adaptations (ChEES, MEADS) do; each chain keeps its own step size. Default
            (``None``): on for HMC, off for NUTS (Stan's per-chain estimate). A chain's
            own window underestimates the variance of a direction it crosses slowly;
            HMC's fixed whitened trajectory length then stays too short for it (a
            regression with the data 10^4 times the prior scale: the coefficients'
            variance 13 times too small, bulk ESS about 60), while NUTS lengthens its
            trajectories itself.

    Returns:
        A :class:`WindowAdaptation` whose functions are (all stacked over chains)

        * ``init(state, init_step_size) -> wstate``: ``state`` a stacked ``HMCState``,
          ``init_step_size`` a scalar or ``(chains,)`` (``find_step_size`` gives one);
        * ``step(keys, state, wstate, batch, iteration) -> (state, wstate, info)``: one
          warmup iteration (jitted; ``iteration`` is traced: ``0 .. num_warmup - 1``).
          ``info`` is the inner kernel's (``TrajectoryInfo`` / ``NUTSInfo``); the step
          size that iteration used is the ``wstate.step_size`` passed in;
        * ``final(wstate) -> (step_size, inverse_mass_matrix)``: the tuned values
          (the dual-averaging average of the last window), for ``kernel``;
        * ``find_step_size(keys, state, batch, inverse_mass_matrix=None, momenta=None)
          -> (chains,)``: Stan's heuristic first step size (double or halve until one
          leapfrog step's acceptance crosses ``target_accept``), from momenta drawn with
          ``keys`` (:func:`initial_momenta`) unless ``momenta`` are given;
        * ``kernel(keys, state, batch, step_size, inverse_mass_matrix)``: the sampling
          kernel to run after warmup with ``final``'s values;
        * ``transition(keys, state, wstate, step_size, inverse_mass_matrix, batch,
          iteration)``: iteration ``iteration`` of the whole run, ``step`` during warmup and
          ``kernel`` after it, with the same draws, for the body of one scan over both
          phases (the inner kernel is then compiled once).

    Example:
        >>> from ppl_bnn.inference.hmc import build_init
        >>> from ppl_bnn.inference.warmup import build_window_adaptation, initial_positions
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
        >>> warmup = build_window_adaptation(100, logdensity=ld, kernel="nuts")
        >>> state = build_init(ld)(initial_positions(ld, jax.random.key(0), 4), batch)  # 4 chains
        >>> keys = jax.random.split(jax.random.key(1), 4)
        >>> wstate = warmup.init(state, warmup.find_step_size(keys, state, batch))
        >>> for i in range(100):
        ...     keys_i = jax.random.split(jax.random.fold_in(jax.random.key(2), i), 4)
        ...     state, wstate, info = warmup.step(keys_i, state, wstate, batch, i)
        >>> step_size, inverse_mass_matrix = warmup.final(wstate)
        >>> step_size.shape, inverse_mass_matrix.shape     # per chain: diagonal mass matrix
        ((4,), (4, 3))
    """
    if target_accept is None:
        target_accept = DEFAULT_TARGET_ACCEPT.get(kernel, 0.8)
    if shared_step_size is None:
        shared_step_size = False
    if pooled_mass_matrix is None:
        pooled_mass_matrix = kernel == "hmc"
    if not 0.0 < target_accept < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), not {target_accept}")
    if kernel == "hmc":
        inner = hmc_one_step(
            logdensity,
            trajectory_length=trajectory_length,
            jitter=jitter,
            max_num_steps=max_num_steps,
            divergence_threshold=divergence_threshold,
        )
    elif kernel == "nuts":
        nuts_step = nuts.one_step(
            logdensity,
            max_num_doublings=max_num_doublings,
            divergence_threshold=divergence_threshold,
        )

        def inner(key, state, batch, step_size, inverse_mass_matrix, u):
            del u  # NUTS chooses its own trajectory length
            return nuts_step(key, state, batch, step_size, inverse_mass_matrix)

    else:
        raise ValueError(f"kernel must be 'hmc' or 'nuts', not {kernel!r}")
    if num_warmup < 0:
        raise ValueError(f"num_warmup must be >= 0, not {num_warmup}")
    schedule = np.asarray(
        build_schedule(num_warmup, initial_buffer_size, final_buffer_size, first_window_size)
        if num_warmup
        else np.zeros((0, 2)),
        dtype=np.int32,
    ).reshape(-1, 2)
    stages, window_ends = jnp.asarray(schedule[:, 0]), jnp.asarray(schedule[:, 1] > 0)
    mm_init, mm_update, mm_final = mass_matrix_adaptation(not dense_mass)
    da_init, da_update, da_final = dual_averaging_adaptation(target_accept)

    def init_one(position, step_size):
        dim = ravel_pytree(position)[0].shape[0]
        mm = mm_init(dim)
        da = da_init(step_size)
        return WindowAdaptationState(da, mm, jnp.asarray(step_size), mm.inverse_mass_matrix)

    @jax.jit
    def init(state: HMCState, init_step_size) -> WindowAdaptationState:
        chains = jax.tree.leaves(state.position)[0].shape[0]
        dtype = jax.tree.leaves(state.position)[0].dtype
        if dense_mass:  # at trace time, before anything of size d x d is allocated
            dim = sum(int(np.prod(a.shape[1:])) for a in jax.tree.leaves(state.position))
            check_dense_mass_fits(dim, chains, jnp.dtype(dtype).itemsize)
        eps = jnp.broadcast_to(jnp.asarray(init_step_size, dtype), (chains,))
        if shared_step_size:  # start every chain from the geometric mean
            eps = jnp.broadcast_to(jnp.exp(jnp.mean(jnp.log(eps))), (chains,))
        return _strong(jax.vmap(init_one)(state.position, eps))

    def step_one(key, state, wstate, batch, stage, window_end, u):
        new_state, info = inner(key, state, batch, wstate.step_size, wstate.inverse_mass_matrix, u)
        return new_state, adapt_one(wstate, new_state, info, stage, window_end), info

    def adapt_one(wstate, new_state, info, stage, window_end):
        rate = jnp.where(jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0)
        if shared_step_size:  # identical dual-averaging states, fed the same mean rate
            rate = jax.lax.pmean(rate, "chain")
        da = da_update(wstate.da, rate)
        slow = stage == 1
        updated = mm_update(wstate.mm, new_state.position)
        mm = jax.tree.map(lambda a, b: jnp.where(slow, a, b), updated, wstate.mm)
        # end of a slow window: new mass matrix, dual averaging restarted from the average
        final_mm = mm_final(_pooled(mm, dense_mass) if pooled_mass_matrix else mm)
        restarted = da_init(da_final(da))
        mm = jax.tree.map(lambda a, b: jnp.where(window_end, a, b), final_mm, mm)
        da = jax.tree.map(lambda a, b: jnp.where(window_end, a, b), restarted, da)
        step_size = jnp.exp(da.log_step_size)
        return WindowAdaptationState(da, mm, step_size, mm.inverse_mass_matrix)

    stacked_step = jax.vmap(step_one, in_axes=(0, 0, 0, None, None, None, None), axis_name="chain")
    stacked_adapt = jax.vmap(adapt_one, in_axes=(0, 0, 0, None, None), axis_name="chain")

    def stage_of(iteration):
        i = jnp.clip(jnp.asarray(iteration), 0, max(num_warmup - 1, 0))
        if num_warmup == 0:
            return jnp.asarray(0), jnp.asarray(False)
        return stages[i], window_ends[i]

    @jax.jit
    def step(keys, state, wstate, batch, iteration):
        stage, end = stage_of(iteration)
        u = shared_uniform(keys)
        state, wstate, info = stacked_step(keys, state, wstate, batch, stage, end, u)
        return state, _strong(wstate), info

    def final(wstate: WindowAdaptationState) -> tuple[Array, Array]:
        return jnp.exp(wstate.da.log_step_size_avg), wstate.inverse_mass_matrix

    find_step_size = _build_find_step_size(logdensity, target_accept, dense_mass)
    stacked_inner = jax.vmap(inner, in_axes=(0, 0, None, 0, 0, None))

    @jax.jit
    def sampler(keys, state, batch, step_size, inverse_mass_matrix):
        u = shared_uniform(keys)
        return stacked_inner(keys, state, batch, step_size, inverse_mass_matrix, u)

    def transition(keys, state, wstate, step_size, inverse_mass_matrix, batch, iteration):
        """Iteration ``iteration`` of the whole run, warmup (``< num_warmup``, as ``step``)
        or sampling (as ``kernel`` with ``step_size`` and ``inverse_mass_matrix``), in one
        program: a scan over a run's iterations then holds the inner kernel once. Returns
        ``(state, wstate, step_size, inverse_mass_matrix, info, used)``, the step size and
        inverse mass matrix of the following iterations (``final``'s values once warmup
        ends) and ``used``, the step size this iteration ran with. Not jitted: it is
        meant for the body of a ``jax.lax.scan``."""
        warm = jnp.asarray(iteration) < num_warmup
        stage, end = stage_of(iteration)
        u = shared_uniform(keys)
        used = jnp.where(warm, wstate.step_size, step_size)
        imm = jnp.where(warm, wstate.inverse_mass_matrix, inverse_mass_matrix)
        new_state, info = stacked_inner(keys, state, batch, used, imm, u)
        wstate = jax.lax.cond(
            warm,
            lambda: _strong(stacked_adapt(wstate, new_state, info, stage, end)),
            lambda: wstate,
        )
        last = jnp.asarray(iteration) == num_warmup - 1
        tuned_eps, tuned_imm = final(wstate)
        step_size = jnp.where(last, tuned_eps, step_size)
        inverse_mass_matrix = jnp.where(last, tuned_imm, inverse_mass_matrix)
        return new_state, wstate, step_size, inverse_mass_matrix, info, used

    return WindowAdaptation(init, step, final, find_step_size, sampler, schedule, transition)


def _pooled(mm, dense: bool):
    """The Welford state of every chain's window pooled (inside ``vmap(axis_name="chain")``):
    the draws of all chains as one sample, so that the covariance holds the spread within
    the chains and between their means."""
    w = mm.wc_state
    n = jax.lax.psum(w.sample_size, "chain")
    mean = jax.lax.psum(w.sample_size * w.mean, "chain") / jnp.maximum(n, 1)
    d = w.mean - mean
    spread = jnp.outer(d, d) if dense else d * d
    m2 = jax.lax.psum(w.m2 + w.sample_size * spread, "chain")
    return mm._replace(wc_state=w._replace(mean=mean, m2=m2, sample_size=n))


def available_memory_bytes() -> int:
    """Memory the default device can allocate: its ``bytes_limit`` on an accelerator,
    the machine's physical memory on the CPU."""
    import os

    stats = None
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - not every backend reports memory
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_dense_mass_fits(dim: int, num_chains: int, itemsize: int) -> None:
    """Refuse, in one line, a dense mass matrix that cannot fit in memory.

    The adaptation keeps about four ``(d, d)`` matrices per chain (the Welford
    covariance, the inverse mass matrix in the window state and in the sampler state,
    and its Cholesky factor for the momenta); more than half the device's memory is
    refused before anything is allocated.
    """
    need = 4 * num_chains * dim * dim * itemsize
    have = available_memory_bytes()
    if need > have // 2:
        raise ValueError(
            f"dense_mass=True needs about {need / 2**30:.1f} GiB for {num_chains} chain(s) "
            f"of {dim} parameters (four {dim} x {dim} matrices each), more than half of "
            f"the {have / 2**30:.1f} GiB available; use the diagonal mass matrix "
            "(dense_mass=False)"
        )


def _strong(tree):
    """Every leaf with a fixed (not weak) dtype, so that a state rebuilt from a
    checkpoint's numpy arrays has exactly the avals of the live one (no retrace)."""
    return jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.asarray(a).dtype), tree)


@jax.jit
def initial_momenta(keys, positions, inverse_mass_matrix) -> Any:
    """Momenta ``N(0, M)`` for stacked ``positions`` (one key and one inverse mass matrix
    per chain), as the step-size search draws them.

    Nothing here depends on the model: defined once at module level, it compiles once per
    shape of the positions for every run in the process, instead of inside each run's
    own start-up program (on the CPU the random draws are most of a small model's
    compilation time)."""

    def one(key, position, imm):
        return blackjax.mcmc.metrics.default_metric(imm).sample_momentum(key, position)

    return jax.vmap(one)(keys, positions, inverse_mass_matrix)


def _build_find_step_size(logdensity: Callable, target_accept: float, dense_mass: bool):
    """Stan's ``init_stepsize``: from ``initial`` double (or halve) the step size while one
    leapfrog step's acceptance probability stays above (below) the target.

    The chains search together in one loop over the stack (a chain whose search has ended
    keeps its step size while the others go on), so the program holds the leapfrog step
    once; under ``vmap`` a ``while_loop`` would hold it twice (the first trial and the
    loop's) and batch its condition. ``momenta`` (from :func:`initial_momenta` with the
    same keys, the default) may be drawn beforehand, outside a caller's jitted program."""

    def accept_one(state, momentum, inverse_mass_matrix, eps, batch):
        metric = blackjax.mcmc.metrics.default_metric(inverse_mass_matrix)
        fn = lambda p: logdensity(p, batch)  # noqa: E731
        integrator = blackjax.mcmc.integrators.velocity_verlet(fn, metric.kinetic_energy)
        start = blackjax.mcmc.integrators.IntegratorState(
            state.position, momentum, state.logdensity, state.logdensity_grad
        )
        end = integrator(start, eps)
        h0 = -state.logdensity + metric.kinetic_energy(momentum)
        h1 = -end.logdensity + metric.kinetic_energy(end.momentum)
        p = jnp.exp(jnp.minimum(h0 - h1, 0.0))
        return jnp.where(jnp.isfinite(p), p, 0.0)

    accept = jax.vmap(accept_one, in_axes=(0, 0, 0, 0, None))

    @jax.jit
    def search(momenta, state, batch, inverse_mass_matrix, initial):
        shape = state.logdensity.shape
        eps0 = jnp.broadcast_to(initial, shape)

        def cond(carry):
            return jnp.any(carry[4])

        def body(carry):
            # trial 0 is the initial step size and fixes each chain's direction; then
            # up to 60 doublings (halvings) while the acceptance stays on that side
            eps, n, p, up, active = carry
            trial = jnp.where(n == 0, eps, jnp.where(up, 2.0 * eps, 0.5 * eps))
            p_trial = accept(state, momenta, inverse_mass_matrix, trial, batch)
            up = jnp.where(n == 0, p_trial > target_accept, up)
            eps = jnp.where(active, trial, eps)
            p = jnp.where(active, p_trial, p)
            n = n + active
            active = active & ((p > target_accept) == up) & (n <= 60)
            return eps, n, p, up, active

        ones = jnp.ones(shape, bool)
        carry = (eps0, jnp.zeros(shape, jnp.int32), jnp.zeros(shape, eps0.dtype), ones, ones)
        eps, _, _, up, _ = jax.lax.while_loop(cond, body, carry)
        # going up, the last step size that still met the target
        return jnp.where(up, 0.5 * eps, eps)

    def find_step_size(
        keys, state: HMCState, batch, inverse_mass_matrix=None, initial=1.0, momenta=None
    ):
        flat = jax.vmap(lambda p: ravel_pytree(p)[0])(state.position)
        if inverse_mass_matrix is None:
            inverse_mass_matrix = identity_metric(flat, dense_mass)
        if momenta is None:
            momenta = initial_momenta(keys, state.position, inverse_mass_matrix)
        return search(momenta, state, batch, inverse_mass_matrix, jnp.asarray(initial, flat.dtype))

    return find_step_size


def identity_metric(flat: Array, dense: bool) -> Array:
    """The identity inverse mass matrix of stacked flat positions ``(chains, d)``:
    ``(chains, d)`` ones, or ``(chains, d, d)`` identities when ``dense`` (refused in one
    line when they cannot fit in memory)."""
    if not dense:
        return jnp.ones_like(flat)
    chains, dim = flat.shape
    check_dense_mass_fits(dim, chains, flat.dtype.itemsize)
    return jnp.broadcast_to(jnp.eye(dim, dtype=flat.dtype), (chains, dim, dim))


# ------------------------------------------------------------------ initialisation
def initial_positions(
    logdensity,
    rng_key: PRNGKey,
    num_chains: int,
    *,
    strategy: str = "median",
    batch=None,
    num_steps: int = 200,
    learning_rate: float = 0.01,
) -> dict:
    """Unconstrained starting positions ``(num_chains, ...)`` for a ``LogDensity``.

    * ``"median"`` (default): every site at the median of 15 prior draws (NumPyro's
      ``init_to_median``; a different draw per chain), except network weights of a
      ``ppl_bnn`` BNN (``model.net``), which keep the Flax initialisers;
    * ``"uniform"``: ``LogDensity.init`` (uniform in ``(-2, 2)`` unconstrained, Flax
      initialisers for network weights);
    * ``"optimize"``: ``"median"`` followed by ``num_steps`` Adam steps on the full-batch
      log density (``batch`` required); chains stay apart through their start points.
    """
    if strategy not in ("median", "uniform", "optimize"):
        raise ValueError(f"strategy must be 'median', 'uniform' or 'optimize', not {strategy!r}")
    keys = jax.random.split(rng_key, num_chains)
    if strategy == "uniform":
        per_chain = [logdensity.init(k) for k in keys]
    else:
        per_chain = [logdensity.init(k, _median_values(logdensity, k)) for k in keys]
    positions = jax.tree.map(lambda *a: jnp.stack(a), *per_chain)
    if strategy == "optimize":
        if batch is None:
            raise ValueError("strategy='optimize' needs the batch")
        positions = _optimize(logdensity, positions, batch, num_steps, learning_rate)
    return positions


def _median_values(logdensity, key: PRNGKey) -> dict:
    """Constrained values of the non-network latent sites at ``init_to_median``."""
    from numpyro import handlers
    from numpyro.infer.initialization import init_to_median

    has_net = getattr(logdensity.model, "net", None) is not None
    sites = [n for n in logdensity.latent_sites if not (has_net and n.startswith("net/"))]
    if not sites:
        return {}
    model = handlers.substitute(
        handlers.seed(logdensity.model, key), substitute_fn=init_to_median(num_samples=15)
    )
    model = handlers.substitute(model, logdensity._params)
    trace = handlers.trace(model).get_trace(*logdensity._example)
    return {n: trace[n]["value"] for n in sites}


def _optimize(logdensity, positions, batch, num_steps: int, learning_rate: float):
    import optax

    opt = optax.adam(learning_rate)
    loss = lambda p: -logdensity(p, batch)

    def one(position):
        def body(carry, _):
            p, s = carry
            value, grad = jax.value_and_grad(loss)(p)
            grad = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
            updates, s = opt.update(grad, s, p)
            return (optax.apply_updates(p, updates), s), value

        (p, _), _ = jax.lax.scan(body, (position, opt.init(position)), None, length=num_steps)
        return p

    return jax.jit(jax.vmap(one))(positions)
