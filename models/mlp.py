"""Fully connected architectures of the original code (widths from its ``models.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["MLP"]


class MLP(nn.Module):
    """Flatten, then ``Dense(width) -> ReLU`` per hidden layer, then ``Dense(num_outputs)``."""

    hidden: Sequence[int]
    num_outputs: int

    @nn.compact
    def __call__(self, x):
        x = jnp.reshape(x, (x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_outputs)(x)
