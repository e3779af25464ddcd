"""Flax architectures, by name.

``get_model(name, num_outputs)`` returns a ``flax.linen.Module`` mapping a batch of inputs
to ``num_outputs`` numbers per example. Register your own with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

from ppl_bnn.models.cnn_lstm import CNNLSTM
from ppl_bnn.models.lenet import LeNet
from ppl_bnn.models.mlp import MLP
from ppl_bnn.models.resnet import FilterResponseNorm, ResNetFRN

__all__ = [
    "CNNLSTM",
    "FilterResponseNorm",
    "LeNet",
    "MLP",
    "MODELS",
    "ResNetFRN",
    "get_model",
    "register",
]

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "mlp_classification": lambda n: MLP(hidden=(256, 256), num_outputs=n),
    "mlp_regression": lambda n: MLP(hidden=(100, 100), num_outputs=n),
    "mlp_regression_small": lambda n: MLP(hidden=(50,), num_outputs=n),
    "logistic_regression": lambda n: MLP(hidden=(), num_outputs=n),
    "lenet": lambda n: LeNet(num_outputs=n),
    "resnet20_frn": lambda n: ResNetFRN(num_outputs=n, depth=20, activation=nn.relu),
    "resnet20_frn_swish": lambda n: ResNetFRN(num_outputs=n, depth=20, activation=nn.swish),
    "cnn_lstm": lambda n: CNNLSTM(num_outputs=n),
}


def register(name: str, builder: Callable[[int], nn.Module]) -> None:
    """Make ``builder(num_outputs)`` available as ``--model_name=name``."""
    MODELS[name] = builder


def get_model(name: str, num_outputs: int) -> nn.Module:
    """The architecture registered under ``name`` with ``num_outputs`` outputs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](num_outputs)
