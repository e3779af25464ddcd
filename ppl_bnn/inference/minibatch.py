"""Minibatches and the stochastic estimate of the log posterior that minibatch methods follow.

SGD, SG-MCMC and VI see the training set one minibatch at a time. Each epoch visits a
fresh random permutation of the ``N`` training examples in ``N // B`` minibatches of ``B``
and drops the remainder, as the original code did. The estimate of the (tempered) log
posterior is the unbiased one of Robbins & Monro (1951)::

    log p(theta)/T + (N / B) * sum_{i in minibatch} log p(y_i | x_i, theta)/T

where the ``1/T`` comes from the model itself (``handlers.scale`` in
:func:`ppl_bnn.declare.bnn.bnn_model`), so every backend samples or optimises the same tempered
posterior as full-batch HMC. (The original multiplied by ``num_batches = N // B``, which
is biased when ``B`` does not divide ``N``.)

The SG-MCMC kernels take BlackJAX's :func:`blackjax.sgmcmc.gradients.grad_estimator`
(:func:`grad_estimator`), which averages a per-example log likelihood over the minibatch
and multiplies by ``N``; SGD ascends :func:`logdensity_estimator`, the same estimate
evaluated on the whole minibatch at once (faster for SGD, see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp

from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.methods import option_name
from ppl_bnn.types import Array, ArrayTree, PRNGKey

__all__ = [
    "Minibatch",
    "epoch_indices",
    "gather",
    "grad_estimator",
    "logdensity_estimator",
    "num_batches",
]


class Minibatch(NamedTuple):
    """Inputs and targets of one minibatch (leading axis: examples)."""

    x: Array
    y: Array


def num_batches(num_examples: int, batch_size: int) -> int:
    """Minibatches per epoch, ``N // B``; refuses a batch larger than the training set."""
    if batch_size < 1:
        raise ValueError(f"{option_name('batch_size')} must be positive, got {batch_size}")
    if batch_size > num_examples:
        raise ValueError(
            f"{option_name('batch_size')}={batch_size} exceeds the {num_examples} training examples"
        )
    return num_examples // batch_size


def epoch_indices(rng_key: PRNGKey, num_examples: int, batch_size: int) -> Array:
    """``(N // B, B)`` example indices of one epoch: a random permutation, remainder dropped."""
    nb = num_batches(num_examples, batch_size)
    perm = jax.random.permutation(rng_key, num_examples)
    return perm[: nb * batch_size].reshape(nb, batch_size)


def gather(x: Array, y: Array, index: Array) -> Minibatch:
    """The rows ``index`` of the training arrays (works on sharded arrays under ``jit``)."""
    return Minibatch(jnp.take(x, index, axis=0), jnp.take(y, index, axis=0))


def _example_loglik(logdensity: LogDensity) -> Callable[[ArrayTree, Minibatch], Array]:
    def loglik(position, example: Minibatch) -> Array:
        x, y = jax.tree.map(lambda a: a[None], tuple(example))
        return logdensity.minibatch_log_likelihood(position, x, y)

    return loglik


def logdensity_estimator(logdensity: LogDensity, num_examples: int) -> Callable:
    """``estimate(position, minibatch)``: the unbiased minibatch estimate of the log posterior.

    The value of BlackJAX's :func:`blackjax.sgmcmc.gradients.logdensity_estimator`, but the
    likelihood is evaluated on the whole minibatch at once: BlackJAX ``vmap``s a
    per-example likelihood, which costs ~10% of an SGD epoch on CPU (measured with
    ``benchmarks/minibatch_epoch_overhead.py``).
    """

    def estimate(position, minibatch: Minibatch) -> Array:
        scale = num_examples / minibatch.x.shape[0]
        loglik = logdensity.minibatch_log_likelihood(position, minibatch.x, minibatch.y)
        return logdensity.log_prior(position) + scale * loglik

    return estimate


def grad_estimator(logdensity: LogDensity, num_examples: int) -> Callable:
    """``grad(position, minibatch)``: gradient of :func:`logdensity_estimator` (BlackJAX's)."""
    return blackjax.sgmcmc.gradients.grad_estimator(
        logdensity.log_prior, _example_loglik(logdensity), num_examples
    )
