"""Declare a BNN as a NumPyro model: a Flax network, a prior, a likelihood, a temperature."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import numpyro
from numpyro.contrib.module import random_flax_module

from ppl_bnn.declare.priors import Prior

__all__ = ["NET_SITE", "bnn_model"]

NET_SITE = "net"


def bnn_model(
    net: nn.Module,
    prior: Prior | Callable,
    likelihood: Callable,
    *,
    temperature: float = 1.0,
    name: str = NET_SITE,
) -> Callable:
    """Return the NumPyro model ``model(x, y=None)`` of a Bayesian neural network.

    Every parameter of ``net`` becomes a sample site ``"{name}/{path}"`` with the prior
    ``prior(path, shape)``; the likelihood declares the observed site. The whole posterior
    is raised to ``1 / temperature``: ``handlers.scale`` multiplies the log density of
    every site, prior and likelihood alike, by ``1 / T``. (The original code did the same
    for classification, but for regression it multiplied the noise variance by ``T``
    instead, and its VI objective weighted the KL by ``T`` on top.)

    The model is an ordinary NumPyro model: it can be passed to ``numpyro.infer.MCMC``,
    ``SVI`` or ``Predictive`` as well as to every ppl_bnn backend.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")

    def model(x, y=None):
        with numpyro.handlers.scale(scale=1.0 / temperature):
            f = random_flax_module(name, net, prior, x[:1])
            likelihood(f(x), y)

    model.net = net  # type: ignore[attr-defined]
    model.likelihood = likelihood  # type: ignore[attr-defined]
    model.temperature = temperature  # type: ignore[attr-defined]
    return model
