"""Microcanonical samplers, per chain: MAMS (Metropolis-adjusted, exact) and MCLMC
(unadjusted, asymptotically biased).

Both move a position with unit-speed (isokinetic) dynamics whose momentum is turned by
the gradient of the log density (Steeg & Galstyan 2021; Robnik et al. 2023), integrated
by BlackJAX's ``isokinetic_mclachlan``.

* **MAMS** (Robnik, Cohn-Gordon & Seljak 2025, arXiv:2503.01707): a fresh uniform
  direction, ``n`` steps of the dynamics, then a Metropolis-Hastings test on the change
  of ``log p`` plus the integrator's kinetic energy change (the log Jacobian of the
  momentum map). ``n`` is drawn around ``L / step_size`` from the iteration counter
  (a Halton sequence, shared by vmapped chains, so that they run trajectories of
  similar length). Exact for any step size.
* **MCLMC** (Robnik, De Luca, Silverstein & Seljak 2023): one step of the dynamics per
  iteration with a partial momentum refreshment of decoherence length ``L``, no
  Metropolis test. Its draws are **asymptotically biased** (the bias shrinks with the
  step size; BlackJAX tunes the step size for an energy error variance of ``5e-4`` per
  dimension). Never a default.

Every kernel is in BlackJAX's shape: ``init(position, batch, ...)`` and ``step(rng_key,
state, batch, *numbers) -> (state, info)`` for one chain, with the data batch and every
tuned number (step size, ``L``, inverse mass matrix) traced arguments; a driver vmaps
them over chains. The tuning is BlackJAX's (``adjusted_mclmc_find_L_and_step_size``,
``mclmc_find_L_and_step_size``): one compiled routine per chain that returns the tuned
state and parameters (:func:`build_mams_tuner`, :func:`build_mclmc_tuner`).

``gradient_dtype`` (MAMS only) integrates the dynamics with gradients in reduced
precision and keeps the Metropolis test on the accurate log density (one more forward
pass per trajectory): the chain stays exact (:mod:`ppl_bnn.inference.precision`).

References:
    Robnik, J., Cohn-Gordon, R. and Seljak, U. (2025). Metropolis Adjusted Microcanonical
    Hamiltonian Monte Carlo. arXiv:2503.01707.
    Robnik, J., De Luca, G. B., Silverstein, E. and Seljak, U. (2023). Microcanonical
    Hamiltonian Monte Carlo. JMLR 24(311).
    Steeg, G. V. and Galstyan, A. (2021). Hamiltonian Dynamics with Non-Newtonian Momentum
    for Rapid Sampling. NeurIPS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.adaptation.mclmc_adaptation import MCLMCAdaptationState
from blackjax.mcmc import integrators
from blackjax.mcmc.adjusted_mclmc import rescale
from blackjax.mcmc.dynamic_hmc import halton_sequence
from blackjax.mcmc.proposal import static_binomial_sampling
from blackjax.util import generate_unit_vector, pytree_size

from ppl_bnn.inference.precision import check_gradient_dtype, in_dtype
from ppl_bnn.types import Array, ArrayTree, PRNGKey

__all__ = [
    "MAMSInfo",
    "MAMSState",
    "MCLMCState",
    "Tuned",
    "build_mams",
    "build_mams_tuner",
    "build_mclmc",
    "build_mclmc_tuner",
    "check_dimension",
    "num_integration_steps",
]

#: bits of the Halton sequence that draws MAMS's trajectory lengths (period 2**20)
HALTON_BITS = 20


class MAMSState(NamedTuple):
    """One MAMS chain: position, accurate log density, the (possibly reduced-precision)
    gradient the dynamics use, and the iteration counter that draws the trajectory
    length."""

    position: ArrayTree
    logdensity: Array
    logdensity_grad: ArrayTree
    counter: Array


class MAMSInfo(NamedTuple):
    """What one MAMS iteration reports (the fields BlackJAX's tuner reads among them)."""

    acceptance_rate: Array
    is_accepted: Array
    is_divergent: Array
    energy: Array  # the energy change (error) of the proposal, as BlackJAX's tuner reads it
    num_integration_steps: Array


#: one MCLMC chain: position, momentum, logdensity, logdensity_grad
MCLMCState: type = integrators.IntegratorState


class Tuned(NamedTuple):
    """What a tuner returns for one chain: its state after the tuning, the step size,
    ``L``, the diagonal inverse mass matrix and the integrator steps the tuning spent."""

    state: NamedTuple
    step_size: Array
    L: Array
    inverse_mass_matrix: Array
    num_tuning_steps: Array


def check_dimension(position: ArrayTree) -> None:
    """Microcanonical dynamics need at least two dimensions (a one-line ``ValueError``)."""
    if pytree_size(position) < 2:
        raise ValueError(
            "mams and mclmc need a model with at least 2 unconstrained parameters "
            f"(this one has {pytree_size(position)}): use nuts"
        )


def num_integration_steps(counter: Array, avg_num_steps: Array) -> Array:
    """``ceil(h * rescale(avg))``, at least 1, for ``h`` the Halton point of ``counter``:
    quasi-random trajectory lengths of mean about ``avg_num_steps`` (BlackJAX's
    ``rescale``)."""
    h = halton_sequence(jnp.asarray(counter, jnp.int32), HALTON_BITS)
    return jnp.maximum(jnp.ceil(h * rescale(avg_num_steps)), 1).astype(jnp.int32)


# ------------------------------------------------------------------------ MAMS
def build_mams(
    logdensity: Callable,
    *,
    gradient_dtype: str | None = None,
    divergence_threshold: float = 1000.0,
    max_num_steps: int | None = None,
    integrator: Callable = integrators.isokinetic_mclachlan,
) -> blackjax.base.SamplingAlgorithm:
    """MAMS for one chain: ``init(position, batch) -> MAMSState`` and ``step(rng_key,
    state, batch, step_size, avg_num_steps, inverse_mass_matrix) -> (MAMSState,
    MAMSInfo)``.

    Args:
        logdensity: ``logdensity(position, batch)`` (e.g. ``problem.logdensity``).
        gradient_dtype: integrate with gradients computed in this dtype (``"bfloat16"``,
            ...; default: the positions' own); the Metropolis test then uses
            ``logdensity`` at full precision, one extra forward pass per trajectory.
        divergence_threshold: an energy error above it marks the proposal divergent.
        max_num_steps: at most this many integration steps per proposal (default: no
            bound). The number of steps depends only on the iteration counter, so the
            bound keeps the chain exact; it matters in the tuning, where BlackJAX holds
            ``L`` while the step size falls, so that ``L / step_size`` can reach millions
            of steps per proposal.
        integrator: a BlackJAX isokinetic integrator.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> mams = build_mams(lambda p, batch: -0.5 * jnp.sum(p["x"] ** 2))
        >>> state = mams.init({"x": jnp.ones(3)}, None)
        >>> state, info = mams.step(jax.random.key(0), state, None, 0.5, 4.0, jnp.ones(3))
        >>> bool(0 <= info.acceptance_rate <= 1)
        True
    """
    check_gradient_dtype(gradient_dtype)
    dynamics = in_dtype(logdensity, gradient_dtype)
    exact = gradient_dtype is None
    value_and_grad = jax.value_and_grad(dynamics)

    def init(position: ArrayTree, batch) -> MAMSState:
        value, grad = value_and_grad(position, batch)
        if not exact:
            value = logdensity(position, batch)
        return MAMSState(position, value, grad, jnp.zeros((), jnp.int32))

    def step(
        rng_key: PRNGKey, state: MAMSState, batch, step_size, avg_num_steps, inverse_mass_matrix
    ) -> tuple[MAMSState, MAMSInfo]:
        key_momentum, key_accept = jax.random.split(rng_key)
        n = num_integration_steps(state.counter, avg_num_steps)
        if max_num_steps is not None:
            n = jnp.minimum(n, max_num_steps)
        one_step = integrator(lambda p: dynamics(p, batch), inverse_mass_matrix)
        start = integrators.IntegratorState(
            state.position,
            generate_unit_vector(key_momentum, state.position),
            state.logdensity,
            state.logdensity_grad,
        )

        def body(_, carry):
            s, kinetic = carry
            s, change = one_step(s, step_size)
            return s, kinetic + change

        end, kinetic = jax.lax.fori_loop(0, n, body, (start, jnp.zeros_like(state.logdensity)))
        value = end.logdensity if exact else logdensity(end.position, batch)
        delta = value - state.logdensity - kinetic
        delta = jnp.where(jnp.isnan(delta), -jnp.inf, delta)
        counter = state.counter + 1
        proposal = MAMSState(end.position, value, end.logdensity_grad, counter)
        new, (accepted, p_accept, _) = static_binomial_sampling(
            key_accept, delta, state._replace(counter=counter), proposal
        )
        info = MAMSInfo(p_accept, accepted, -delta > divergence_threshold, -delta, n)
        return new, info

    return blackjax.base.SamplingAlgorithm(init, step)  # type: ignore[arg-type]


def build_mams_tuner(
    mams: blackjax.base.SamplingAlgorithm,
    num_warmup: int,
    *,
    target_accept: float = 0.9,
    diagonal_preconditioning: bool = True,
    avg_num_steps: float = 2.0,
) -> Callable:
    """BlackJAX's ``adjusted_mclmc_find_L_and_step_size`` for one chain of ``mams``:
    ``tune(rng_key, state, batch, initial_step_size) -> Tuned``.

    The tuning runs about ``num_warmup`` iterations: two dual-averaging passes on the step
    size towards ``target_accept`` (a third of ``num_warmup`` each, the first followed by
    a third during which the diagonal inverse mass matrix is estimated). ``L`` ends at
    ``avg_num_steps`` times the step size (BlackJAX's trajectory rule,
    ``target_num_integration_steps``). A non-finite ``initial_step_size`` starts from
    BlackJAX's own guess (``0.2 sqrt(d)``).
    """
    frac = 1.0 / 3.0

    def tune(rng_key: PRNGKey, state: MAMSState, batch, initial_step_size) -> Tuned:
        dim = pytree_size(state.position)
        guess = 0.2 * jnp.sqrt(dim)
        eps = jnp.where(jnp.isfinite(initial_step_size), initial_step_size, guess)
        params = MCLMCAdaptationState(avg_num_steps * eps, eps, jnp.ones((dim,)))

        def kernel(
            rng_key, state, logdensity_fn, step_size, inverse_mass_matrix, integration_steps_params
        ):
            del logdensity_fn  # the kernel holds its own (with the data batch)
            (avg,) = integration_steps_params
            return mams.step(rng_key, state, batch, step_size, avg, inverse_mass_matrix)

        state, params, spent = blackjax.adjusted_mclmc_find_L_and_step_size(
            mclmc_kernel=kernel,
            logdensity_fn=None,
            num_steps=num_warmup,
            state=state,
            rng_key=rng_key,
            target=target_accept,
            frac_tune1=frac,
            frac_tune2=frac,
            frac_tune3=0.0,
            diagonal_preconditioning=diagonal_preconditioning,
            params=params,
            target_num_integration_steps=avg_num_steps,
        )
        return Tuned(state, params.step_size, params.L, params.inverse_mass_matrix, spent)

    return tune


# ----------------------------------------------------------------------- MCLMC
def build_mclmc(
    logdensity: Callable, *, integrator: Callable = integrators.isokinetic_mclachlan
) -> blackjax.base.SamplingAlgorithm:
    """Unadjusted MCLMC for one chain (asymptotically biased: no Metropolis test):
    ``init(position, batch, rng_key) -> MCLMCState`` (a uniform initial direction) and
    ``step(rng_key, state, batch, step_size, L, inverse_mass_matrix) -> (MCLMCState,
    MCLMCInfo)``, BlackJAX's ``mclmc`` kernel with the data batch traced."""
    kernel = blackjax.mcmc.mclmc.build_kernel(integrator=integrator)

    def init(position: ArrayTree, batch, rng_key: PRNGKey):
        return blackjax.mcmc.mclmc.init(position, lambda p: logdensity(p, batch), rng_key)

    def step(rng_key: PRNGKey, state, batch, step_size, L, inverse_mass_matrix):
        return kernel(
            rng_key, state, lambda p: logdensity(p, batch), inverse_mass_matrix, L, step_size
        )

    return blackjax.base.SamplingAlgorithm(init, step)  # type: ignore[arg-type]


def build_mclmc_tuner(
    mclmc: blackjax.base.SamplingAlgorithm,
    num_warmup: int,
    *,
    diagonal_preconditioning: bool = True,
    desired_energy_var: float = 5e-4,
) -> Callable:
    """BlackJAX's ``mclmc_find_L_and_step_size`` for one chain of ``mclmc``:
    ``tune(rng_key, state, batch, initial_step_size) -> Tuned``.

    About ``num_warmup`` steps: 30% tune the step size for an energy error variance of
    ``desired_energy_var`` per dimension, 40% also estimate the diagonal inverse mass
    matrix (and retune the step size with it), 30% set ``L`` from the autocorrelation
    (effective sample size) of the draws. A non-finite ``initial_step_size`` starts from
    BlackJAX's guess (``0.25 sqrt(d)``).
    """

    def tune(rng_key: PRNGKey, state, batch, initial_step_size) -> Tuned:
        dim = pytree_size(state.position)
        eps = jnp.where(jnp.isfinite(initial_step_size), initial_step_size, 0.25 * jnp.sqrt(dim))
        params = MCLMCAdaptationState(jnp.sqrt(dim), eps, jnp.ones((dim,)))

        def kernel(rng_key, state, logdensity_fn, inverse_mass_matrix, L, step_size):
            del logdensity_fn
            return mclmc.step(rng_key, state, batch, step_size, L, inverse_mass_matrix)

        state, params, spent = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel,
            num_steps=num_warmup,
            state=state,
            rng_key=rng_key,
            logdensity_fn=lambda p: 0.0,  # unused: the kernel holds its own
            frac_tune1=0.3,
            frac_tune2=0.3,
            frac_tune3=0.3,
            desired_energy_var=desired_energy_var,
            diagonal_preconditioning=diagonal_preconditioning,
            params=params,
        )
        return Tuned(
            state, params.step_size, params.L, params.inverse_mass_matrix, jnp.asarray(spent)
        )

    return tune
