"""ChEES-HMC: one step size and one jittered trajectory length adapted across chains.

Hoffman, Radul & Sountsov (2021) run many HMC chains side by side, all with the same
step size and the same trajectory length ``T``; each iteration every chain integrates
``ceil(u T / eps)`` leapfrog steps, ``u`` a jitter in ``(1 - jitter, 1]`` drawn from the
iteration counter (a Halton sequence, the same for every chain, so vmapped chains wait
for no longer one). During the warmup the step size follows dual averaging on the
harmonic mean of the chains' acceptance probabilities (target 0.651), and ``log T``
climbs the gradient of the ChEES criterion (the Change in the Estimator of the Expected
Square, ``E[(|x' - E x'|^2 - |x - E x|^2)^2]``) estimated across chains, with Adam. The
update itself is BlackJAX's (``blackjax.adaptation.chees_adaptation.base``); the kernel is
BlackJAX's ``dynamic_hmc``. After the warmup, the step size and ``T`` are the running
averages of the adapted ones.

What this module adds is the shape a checkpointing driver needs: :func:`build_chees`
returns per-iteration functions (every piece of adaptation state is a NamedTuple of
arrays, so a run stopped between two iterations resumes bit for bit), the data batch is a
traced argument, and an optional diagonal mass matrix is estimated from the pooled
chains over the third quarter of the warmup (Welford; regularised as Stan does), after
which the adaptation restarts for the last quarter with that metric. BlackJAX's
slow-direction trajectory floor (a ``d x d`` covariance) is left out: a network's ``d``
is too large for it.

``gradient_dtype`` integrates with gradients in reduced precision; the Metropolis test
uses the accurate log density at the end point (one forward pass per trajectory), so the
chain stays exact (:mod:`ppl_bnn.inference.precision`).

References:
    Hoffman, M. D., Radul, A. and Sountsov, P. (2021). An Adaptive MCMC Scheme for
    Setting Trajectory Lengths in Hamiltonian Monte Carlo. AISTATS, PMLR 130.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from blackjax.adaptation import chees_adaptation
from blackjax.adaptation.mass_matrix import WelfordAlgorithmState, welford_algorithm
from blackjax.mcmc import dynamic_hmc, integrators, trajectory
from blackjax.mcmc.hmc import HMCInfo, flip_momentum, hmc_energy
from blackjax.mcmc.proposal import safe_energy_diff, static_binomial_sampling
from jax.flatten_util import ravel_pytree

from ppl_bnn.inference.precision import check_gradient_dtype, in_dtype
from ppl_bnn.types import Array, ArrayTree, PRNGKey

__all__ = ["ChEES", "ChEESWarmupState", "build_chees", "build_kernel", "jitter"]

#: bits of the Halton sequence of the jitter (period 2**20 iterations)
HALTON_BITS = 20
TARGET_ACCEPT = chees_adaptation.OPTIMAL_TARGET_ACCEPTANCE_RATE


class ChEESWarmupState(NamedTuple):
    """The cross-chain adaptation state: BlackJAX's ``ChEESAdaptationState``, the pooled
    Welford estimator of the positions' variance, and the inverse mass matrix in use."""

    chees: Any
    welford: WelfordAlgorithmState
    inverse_mass_matrix: Array


class ChEES(NamedTuple):
    """The functions of :func:`build_chees` (see there)."""

    init: Callable
    warmup_step: Callable
    final: Callable
    step: Callable


def jitter(counter: Array, amount: float) -> Array:
    """``1 - amount + amount * h`` for ``h`` the Halton point of ``counter``."""
    h = dynamic_hmc.halton_sequence(jnp.asarray(counter, jnp.int32), HALTON_BITS)
    return (1.0 - amount) + amount * h


def _proposal(logdensity_exact: Callable | None) -> Callable:
    """BlackJAX's ``hmc_proposal`` with the end point's log density recomputed by
    ``logdensity_exact`` (when the trajectory ran on reduced-precision gradients) before
    the energy change and the Metropolis test."""

    def build(
        integrator, kinetic_energy, step_size, num_integration_steps=1, divergence_threshold=1000.0
    ):
        build_trajectory = trajectory.static_integration(integrator)
        energy = hmc_energy(kinetic_energy)

        def generate(rng_key, state: integrators.IntegratorState):
            end = flip_momentum(build_trajectory(state, step_size, num_integration_steps))
            if logdensity_exact is not None:
                end = end._replace(logdensity=logdensity_exact(end.position))
            new_energy = energy(end)
            delta = safe_energy_diff(energy(state), new_energy)
            sampled, (accepted, p_accept, other) = static_binomial_sampling(
                rng_key, delta, state, end
            )
            info = HMCInfo(
                state.momentum,
                p_accept,
                accepted,
                -delta > divergence_threshold,
                new_energy,
                end,
                num_integration_steps,
            )
            return sampled, info, other

        return generate

    return build


def build_kernel(
    logdensity: Callable,
    *,
    jitter_amount: float = 1.0,
    gradient_dtype: str | None = None,
    divergence_threshold: float = 1000.0,
) -> tuple[Callable, Callable]:
    """Jittered HMC for one chain, ``(init, step)``:

    * ``init(position, batch) -> DynamicHMCState`` (its ``random_generator_arg`` the
      iteration counter);
    * ``step(rng_key, state, batch, step_size, trajectory_length, inverse_mass_matrix) ->
      (DynamicHMCState, HMCInfo)``: ``ceil(jitter * trajectory_length / step_size)``
      leapfrog steps, then the Metropolis test.
    """
    check_gradient_dtype(gradient_dtype)
    dynamics = in_dtype(logdensity, gradient_dtype)
    exact = gradient_dtype is None
    value_and_grad = jax.value_and_grad(dynamics)

    def steps(counter, num_steps):
        return jnp.maximum(jnp.ceil(jitter(counter, jitter_amount) * num_steps), 1).astype(
            jnp.int32
        )

    def init(position: ArrayTree, batch) -> dynamic_hmc.DynamicHMCState:
        value, grad = value_and_grad(position, batch)
        if not exact:
            value = logdensity(position, batch)
        return dynamic_hmc.DynamicHMCState(position, value, grad, jnp.zeros((), jnp.int32))

    def step(rng_key: PRNGKey, state, batch, step_size, trajectory_length, inverse_mass_matrix):
        kernel = dynamic_hmc.build_kernel(
            divergence_threshold=divergence_threshold,
            next_random_arg_fn=lambda i: i + 1,
            integration_steps_fn=steps,
            build_proposal=_proposal(None if exact else (lambda p: logdensity(p, batch))),
        )
        return kernel(
            rng_key,
            state,
            lambda p: dynamics(p, batch),
            step_size,
            inverse_mass_matrix,
            integration_steps_params=(trajectory_length / step_size,),
        )

    return init, step


def build_chees(
    logdensity: Callable,
    num_warmup: int,
    *,
    target_accept: float = TARGET_ACCEPT,
    learning_rate: float = 0.025,
    jitter_amount: float = 1.0,
    max_num_steps: int = 1000,
    decay_rate: float = 0.5,
    diagonal_preconditioning: bool = True,
    gradient_dtype: str | None = None,
    divergence_threshold: float = 1000.0,
) -> ChEES:
    """ChEES-HMC for a stack of chains, one iteration per call.

    Args:
        logdensity: ``logdensity(position, batch)``.
        num_warmup: warmup iterations (the schedule of the mass matrix depends on it).
        target_accept: the dual averaging's target for the harmonic mean acceptance.
        learning_rate: Adam's learning rate on ``log T`` (the paper's 0.025).
        jitter_amount: the trajectory length is ``T * U(1 - jitter_amount, 1]``.
        max_num_steps: ``T`` is kept below this many steps.
        decay_rate: weight ``t^-decay_rate`` of the newest value in the running averages
            of ``log eps`` and ``log T``.
        diagonal_preconditioning: estimate a diagonal inverse mass matrix (module
            docstring); otherwise the identity.
        gradient_dtype: integrate with gradients in this dtype (exact: see the module).
        divergence_threshold: an energy error above it marks a divergence.

    Returns:
        A :class:`ChEES` whose functions act on stacked chains (keys ``(chains,)``):

        * ``init(states, step_size) -> ChEESWarmupState``: ``states`` stacked
          ``DynamicHMCState`` (``kernel_init`` vmapped), ``step_size`` a scalar;
        * ``warmup_step(keys, states, wstate, batch, iteration) -> (states, wstate,
          info)``: one adaptive iteration;
        * ``final(wstate) -> (step_size, trajectory_length, inverse_mass_matrix)``;
        * ``step(keys, states, batch, step_size, trajectory_length,
          inverse_mass_matrix) -> (states, info)``: one sampling iteration.

        and ``kernel_init = build_kernel(...)[0]`` gives the per-chain initial states.
    """
    _, one_step = build_kernel(
        logdensity,
        jitter_amount=jitter_amount,
        gradient_dtype=gradient_dtype,
        divergence_threshold=divergence_threshold,
    )
    optim = optax.adam(learning_rate)
    gen = lambda counter: jitter(counter, jitter_amount)  # noqa: E731
    chees_init, chees_update = chees_adaptation.base(
        gen, lambda i: i + 1, optim, target_accept, decay_rate, max_num_steps
    )
    w_init, w_update, w_final = welford_algorithm(is_diagonal_matrix=True)
    window = (num_warmup // 2, (3 * num_warmup) // 4) if diagonal_preconditioning else (0, 0)
    stacked = jax.vmap(one_step, in_axes=(0, 0, None, None, None, None))

    def init(states, step_size) -> ChEESWarmupState:
        dim = ravel_pytree(jax.tree.map(lambda a: a[0], states.position))[0].shape[0]
        dtype = states.logdensity.dtype
        eps = jnp.asarray(step_size, dtype)
        # BlackJAX starts its averages at Python zeros (weak types); its updates return
        # strong ones: cast, so the first warmup step compiles the program of the others
        a = chees_init(jnp.zeros((), jnp.int32), eps)
        a = jax.tree.map(lambda v: jnp.asarray(v, jnp.asarray(v).dtype), a)
        return ChEESWarmupState(a, w_init(dim), jnp.ones((dim,), dtype))

    def warmup_step(keys, states, wstate: ChEESWarmupState, batch, iteration):
        a, imm = wstate.chees, wstate.inverse_mass_matrix
        new, info = stacked(keys, states, batch, a.step_size, a.trajectory_length, imm)
        # BlackJAX's criterion takes (chains, dim) leaves: one flat vector per chain
        ravel = jax.vmap(lambda p: ravel_pytree(p)[0])
        a = chees_update(
            a,
            ravel(info.proposal.position),
            ravel(info.proposal.momentum),
            ravel(states.position),
            info.acceptance_rate,
            info.is_divergent,
            imm,
        )
        flat = ravel(new.position)
        in_window = (iteration >= window[0]) & (iteration < window[1])
        welford = jax.lax.cond(
            in_window,
            lambda w: jax.lax.scan(lambda c, x: (w_update(c, x), None), w, flat)[0],
            lambda w: w,
            wstate.welford,
        )

        def switch(args):
            a, welford = args
            var, count, _ = w_final(welford)
            n = count.astype(var.dtype)
            # Stan's regularisation towards 1e-3, weight 5 / (n + 5)
            imm = (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))
            restarted = chees_init(a.random_generator_arg, a.step_size)
            return restarted._replace(trajectory_length=a.trajectory_length), imm.astype(
                wstate.inverse_mass_matrix.dtype
            )

        a, imm = jax.lax.cond(
            diagonal_preconditioning & (iteration == window[1] - 1) & (window[1] > window[0]),
            switch,
            lambda args: (args[0], wstate.inverse_mass_matrix),
            (a, welford),
        )
        return new, ChEESWarmupState(a, welford, imm), info

    def final(wstate: ChEESWarmupState):
        a = wstate.chees
        eps = jnp.exp(a.log_step_size_moving_average)
        length = jnp.exp(a.log_trajectory_length_moving_average)
        return eps, length, wstate.inverse_mass_matrix

    def step(keys, states, batch, step_size, trajectory_length, inverse_mass_matrix):
        return stacked(keys, states, batch, step_size, trajectory_length, inverse_mass_matrix)

    return ChEES(init, warmup_step, final, step)
