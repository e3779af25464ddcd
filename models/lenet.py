"""LeNet-5-style convolutional network of the original code (``lenet``)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ppl_bnn.models.initializers import haiku_default

__all__ = ["LeNet"]


class LeNet(nn.Module):
    """Three ``Conv(5x5, SAME) -> ReLU -> MaxPool(3, stride 2, VALID)`` stages with 6, 16
    and 120 channels, then ``Dense(84) -> ReLU -> Dense(num_outputs)``.

    Inputs are images ``(batch, height, width, channels)``. On 28x28 MNIST the spatial size
    goes 28 -> 13 -> 6 -> 2 (480 features); on 32x32 CIFAR 32 -> 15 -> 7 -> 3 (1080).
    Initialisers are Haiku's defaults, as in the original.
    """

    num_outputs: int

    @nn.compact
    def __call__(self, x):
        for channels in (6, 16, 120):
            x = nn.Conv(channels, (5, 5), padding="SAME", kernel_init=haiku_default)(x)
            x = nn.max_pool(nn.relu(x), (3, 3), strides=(2, 2), padding="VALID")
        x = jnp.reshape(x, (x.shape[0], -1))
        x = nn.relu(nn.Dense(84, kernel_init=haiku_default)(x))
        return nn.Dense(self.num_outputs, kernel_init=haiku_default)(x)
