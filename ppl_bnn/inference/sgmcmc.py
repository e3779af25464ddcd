"""Stochastic-gradient MCMC: SGLD, SGHMC and their RMSprop-preconditioned versions.

Every kernel follows the original's parametrisation (Izmailov et al. 2021,
``core/sgmcmc.py``) so that its flags keep their meaning: with ``g`` the minibatch
gradient of the (tempered) log posterior, step size ``lr`` (``--init_step_size``...),
momentum decay ``beta`` (``--momentum_decay``) and ``xi ~ N(0, I)``::

    m     <- beta * m + sqrt(lr) * g + sqrt(2 (1 - beta)) * xi
    theta <- theta + sqrt(lr) * m

``beta = 0`` is SGLD (Welling & Teh 2011): ``theta += lr * g + sqrt(2 lr) * xi``, run here
by BlackJAX's own kernel (:func:`blackjax.sgld`). ``beta > 0`` is SGHMC (Chen et al. 2014)
with friction ``(1 - beta) / sqrt(lr)`` and a semi-implicit (symplectic Euler) step:
the momentum is updated first and moves the position at once. BlackJAX's ``sghmc``
kernel cannot express it: it redraws the momentum at every call, keeps one minibatch for
all its integration steps, and its explicit Euler step (both updates from the old state)
is only stable for ``lr * lambda_max < 1 - beta`` instead of ``< 2 (1 + beta)``, too small
for the original's recipes.

Temperature: the gradient already carries ``1/T`` (the model's ``handlers.scale``); the
injected noise is not rescaled, so every kernel targets ``p(theta | D)^(1/T)``
(BlackJAX's own ``temperature`` argument is left at 1).

**Preconditioning** (``--preconditioner=RMSprop``; Li et al. 2016, "Preconditioned
Stochastic Gradient Langevin Dynamics for Deep Neural Networks", AAAI): with
``v <- alpha v + (1 - alpha) g^2`` (``alpha = 0.99``, updated before use) and the diagonal
mass ``M = eps + sqrt(v)`` (``eps = 1e-7``)::

    SGLD  (beta = 0): theta <- theta + lr * (g / M + Gamma) + sqrt(2 lr / M) * xi
    SGHMC (beta > 0): m     <- beta m + sqrt(lr) (g + c) + sqrt(2 (1 - beta) M) xi
                      theta <- theta + sqrt(lr) m / M

``M`` depends on ``theta`` through ``g``, which biases the stationary distribution unless
corrected. For SGLD the correction is Li et al.'s ``Gamma_i = d(1/M_i)/d theta_i``
(Eq. 5), which needs the diagonal of the Hessian ``H`` of the log posterior: it is
estimated without bias by Hutchinson's probe ``z * (H z)`` with Rademacher ``z``. For
SGHMC with the position-dependent mass the Hamiltonian gains ``1/2 sum log M_i`` (Girolami
& Calderhead 2011; Ma et al. 2015), and the momentum gets the force
``c = sum_i (m_i^2 / M_i - 1) / (2 M_i) * dM_i/dtheta``, one exact Hessian-vector product.
Both treat ``v`` before this step as fixed, so ``dM_i/dtheta = (1 - alpha) g_i H_i. /
sqrt(v_i)``. They cost one forward-over-reverse pass on top of the gradient; the original
code had no correction (``correction=False``; Li et al. also dropped it in practice,
its effect is of order ``1 - alpha``).

Every ``step(rng_key, state, minibatch, step_size)`` takes the step size as a traced
number, so schedules never recompile. The key is split inside the step only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.util import generate_gaussian_noise

from ppl_bnn.methods import option_name
from ppl_bnn.types import ArrayTree, PRNGKey

__all__ = [
    "PreconditionedState",
    "SGHMCState",
    "SGLDState",
    "SGMCMCAlgorithm",
    "build_algorithm",
    "preconditioned",
    "sghmc",
    "sgld",
]


class SGLDState(NamedTuple):
    position: ArrayTree


class SGHMCState(NamedTuple):
    position: ArrayTree
    momentum: ArrayTree


class PreconditionedState(NamedTuple):
    """Position, momentum (zeros for SGLD) and the RMSprop average of squared gradients."""

    position: ArrayTree
    momentum: ArrayTree
    square_avg: ArrayTree


class SGMCMCAlgorithm(NamedTuple):
    """``init(position) -> state`` and ``step(rng_key, state, minibatch, step_size) -> state``."""

    init: Callable
    step: Callable


def _zeros(tree: ArrayTree) -> ArrayTree:
    return jax.tree.map(jnp.zeros_like, tree)


def sgld(grad_estimator: Callable) -> SGMCMCAlgorithm:
    """SGLD with BlackJAX's kernel: ``theta += lr * g + sqrt(2 lr) * xi``."""
    kernel = blackjax.sgld.build_kernel()

    def step(rng_key: PRNGKey, state: SGLDState, minibatch, step_size) -> SGLDState:
        return SGLDState(kernel(rng_key, state.position, grad_estimator, minibatch, step_size))

    return SGMCMCAlgorithm(SGLDState, step)


def _check_decay(momentum_decay: float) -> None:
    if not 0.0 <= momentum_decay < 1.0:
        raise ValueError(
            f"{option_name('momentum_decay')} must lie in [0, 1), got {momentum_decay}"
        )


def sghmc(grad_estimator: Callable, momentum_decay: float) -> SGMCMCAlgorithm:
    """SGHMC in the original's parametrisation (momentum kept across minibatches)."""
    _check_decay(momentum_decay)
    noise_scale = (2.0 * (1.0 - momentum_decay)) ** 0.5

    def init(position: ArrayTree) -> SGHMCState:
        return SGHMCState(position, _zeros(position))

    def step(rng_key: PRNGKey, state: SGHMCState, minibatch, step_size) -> SGHMCState:
        g = grad_estimator(state.position, minibatch)
        xi = generate_gaussian_noise(rng_key, state.position)
        h = jnp.sqrt(step_size)
        m = jax.tree.map(
            lambda m, g, n: momentum_decay * m + h * g + noise_scale * n, state.momentum, g, xi
        )
        return SGHMCState(jax.tree.map(lambda x, m: x + h * m, state.position, m), m)

    return SGMCMCAlgorithm(init, step)


def _rademacher(rng_key: PRNGKey, tree: ArrayTree) -> ArrayTree:
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(rng_key, len(leaves))
    return treedef.unflatten(  # type: ignore[attr-defined]
        [
            jax.random.rademacher(k, jnp.shape(x), jnp.result_type(x))
            for k, x in zip(keys, leaves, strict=True)
        ]
    )


def preconditioned(
    grad_estimator: Callable,
    momentum_decay: float,
    *,
    decay: float = 0.99,
    epsilon: float = 1e-7,
    correction: bool = True,
) -> SGMCMCAlgorithm:
    """RMSprop-preconditioned SGLD (``momentum_decay = 0``) or SGHMC, with the correction.

    Args:
        grad_estimator: ``grad(position, minibatch)`` of the log posterior estimate.
        momentum_decay: ``beta``; 0 gives pSGLD (Li et al. 2016).
        decay: ``alpha`` of the running average of squared gradients.
        epsilon: added to ``sqrt(v)`` (the original's ``1e-7``).
        correction: add the drift that makes the position-dependent preconditioner exact
            (see the module docstring); ``False`` is the original code.
    """
    _check_decay(momentum_decay)
    beta, alpha = momentum_decay, decay

    def init(position: ArrayTree) -> PreconditionedState:
        return PreconditionedState(position, _zeros(position), _zeros(position))

    def mass_terms(g, square_avg):
        if correction:
            # Start each coordinate's average at its first squared gradient: from zero, M is
            # ~10x too small for hundreds of steps and the correction, which scales as
            # 1 / M^2, throws the chain out. A fresh coordinate gets no correction yet.
            fresh = jax.tree.map(lambda v: v == 0, square_avg)
            v = jax.tree.map(
                lambda v, g, f: jnp.where(f, g**2, alpha * v + (1 - alpha) * g**2),
                square_avg,
                g,
                fresh,
            )
        else:  # the original: the average starts at zero
            fresh = jax.tree.map(lambda v: jnp.ones_like(v, bool), square_avg)
            v = jax.tree.map(lambda v, g: alpha * v + (1 - alpha) * g**2, square_avg, g)
        sqrt_v = jax.tree.map(jnp.sqrt, v)
        mass = jax.tree.map(lambda s: epsilon + s, sqrt_v)
        # dM_i / d g_i, the factor that turns Hessian entries into mass derivatives
        dmass_dg = jax.tree.map(
            lambda g, s, f: jnp.where(
                (s > 0) & ~f, (1 - alpha) * g / jnp.where(s > 0, s, 1.0), 0.0
            ),
            g,
            sqrt_v,
            fresh,
        )
        return v, mass, dmass_dg

    def sgld_step(rng_key, state, minibatch, step_size):
        noise_key, probe_key = jax.random.split(rng_key)
        if correction:
            z = _rademacher(probe_key, state.position)
            g, hz = jax.jvp(lambda p: grad_estimator(p, minibatch), (state.position,), (z,))
        else:
            g = grad_estimator(state.position, minibatch)
        v, mass, dmass_dg = mass_terms(g, state.square_avg)
        drift = jax.tree.map(lambda g, M: g / M, g, mass)
        if correction:
            # Gamma_i = d(1/M_i)/d theta_i = -(dM_i/dg_i) H_ii / M_i^2, H_ii ~ z_i (H z)_i
            drift = jax.tree.map(
                lambda d, k, z, hz, M: d - k * z * hz / M**2, drift, dmass_dg, z, hz, mass
            )
        xi = generate_gaussian_noise(noise_key, state.position)
        position = jax.tree.map(
            lambda x, d, n, M: x + step_size * d + jnp.sqrt(2 * step_size / M) * n,
            state.position,
            drift,
            xi,
            mass,
        )
        return PreconditionedState(position, state.momentum, v)

    def sghmc_step(rng_key, state, minibatch, step_size):
        g = grad_estimator(state.position, minibatch)
        v, mass, dmass_dg = mass_terms(g, state.square_avg)
        force = g
        if correction:
            # sum_i w_i dM_i/dtheta = H u with u_i = w_i dM_i/dg_i: one exact Hessian-vector
            # product (H is symmetric); v and the momentum are held fixed
            u = jax.tree.map(
                lambda m, M, k: (m**2 / M - 1) / (2 * M) * k, state.momentum, mass, dmass_dg
            )
            _, hu = jax.jvp(lambda p: grad_estimator(p, minibatch), (state.position,), (u,))
            force = jax.tree.map(jnp.add, g, hu)
        xi = generate_gaussian_noise(rng_key, state.position)
        h = jnp.sqrt(step_size)
        m = jax.tree.map(
            lambda m, f, n, M: beta * m + h * f + jnp.sqrt(2 * (1 - beta) * M) * n,
            state.momentum,
            force,
            xi,
            mass,
        )
        position = jax.tree.map(lambda x, m, M: x + h * m / M, state.position, m, mass)
        return PreconditionedState(position, m, v)

    return SGMCMCAlgorithm(init, sgld_step if beta == 0 else sghmc_step)


def build_algorithm(
    grad_estimator: Callable,
    *,
    momentum_decay: float,
    preconditioner: str | None = None,
    correction: bool = True,
) -> SGMCMCAlgorithm:
    """The kernel the original's flags select.

    ``preconditioner`` is ``None`` (or ``"None"``) or ``"RMSprop"``; ``momentum_decay = 0``
    gives (p)SGLD, ``> 0`` (p)SGHMC.
    """
    if preconditioner in (None, "None", "none"):
        if momentum_decay == 0:
            return sgld(grad_estimator)
        return sghmc(grad_estimator, momentum_decay)
    if preconditioner.lower() == "rmsprop":
        return preconditioned(grad_estimator, momentum_decay, correction=correction)
    raise ValueError(
        f"unknown {option_name('preconditioner')}={preconditioner!r}; choose None or RMSprop"
    )
