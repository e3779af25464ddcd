"""Flax architectures, by name.

``get_model(name, num_outputs)`` returns a ``flax.linen.Module`` mapping a batch of inputs
to ``num_outputs`` numbers per example. Register your own with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

from ppl_bnn.models.mlp import MLP

__all__ = ["MLP", "MODELS", "get_model", "register"]

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "mlp_classification": lambda n: MLP(hidden=(256, 256), num_outputs=n),
    "mlp_regression": lambda n: MLP(hidden=(100, 100), num_outputs=n),
    "mlp_regression_small": lambda n: MLP(hidden=(50,), num_outputs=n),
    "logistic_regression": lambda n: MLP(hidden=(), num_outputs=n),
}


def register(name: str, builder: Callable[[int], nn.Module]) -> None:
    """Make ``builder(num_outputs)`` available as ``--model_name=name``."""
    MODELS[name] = builder


def get_model(name: str, num_outputs: int) -> nn.Module:
    """The architecture registered under ``name`` with ``num_outputs`` outputs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](num_outputs)
