"""ResNet-20 with Filter Response Normalization (``resnet20_frn``, ``resnet20_frn_swish``).

The paper's CIFAR model (``resnet20_frn_swish``; also the NeurIPS 2021 competition model).
FRN replaces BatchNorm so that the network has no batch-dependent state: the log
likelihood of a batch is a plain sum over examples, which HMC and sharding require.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ppl_bnn.models.initializers import he_normal

__all__ = ["FilterResponseNorm", "ResNetFRN", "frn"]


def frn(x, gamma, beta, tau, eps: float = 1e-6):
    """Filter Response Normalization with a thresholded linear unit (Singh & Krishnan, 2020).

    ``nu2`` is the mean of ``x**2`` over the spatial axes (all but the first and the last),
    per example and channel; the output is ``max(gamma * x / sqrt(nu2 + eps) + beta, tau)``.
    """
    spatial = tuple(range(1, x.ndim - 1))
    nu2 = jnp.mean(jnp.square(x), axis=spatial, keepdims=True)
    return jnp.maximum(gamma * x * jax.lax.rsqrt(nu2 + eps) + beta, tau)


class FilterResponseNorm(nn.Module):
    """FRN layer: per-channel ``gamma`` (init 1), ``beta`` (init 0) and ``tau`` (init 0)."""

    eps: float = 1e-6

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (c,))
        beta = self.param("beta", nn.initializers.zeros, (c,))
        tau = self.param("tau", nn.initializers.zeros, (c,))
        return frn(x, gamma, beta, tau, self.eps)


class _ConvFRN(nn.Module):
    """``Conv(SAME, bias, He-normal) -> FRN -> activation`` (the original ``_resnet_layer``)."""

    features: int
    kernel: int = 3
    stride: int = 1
    activation: Callable = lambda x: x

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            strides=(self.stride, self.stride),
            padding="SAME",
            kernel_init=he_normal,
            name="conv",
        )(x)
        return self.activation(FilterResponseNorm(name="frn")(x))


class _Block(nn.Module):
    features: int
    stride: int
    activation: Callable

    @nn.compact
    def __call__(self, x):
        y = _ConvFRN(self.features, stride=self.stride, activation=self.activation, name="conv1")(x)
        y = _ConvFRN(self.features, name="conv2")(y)
        if self.stride != 1:
            # projection shortcut: 1x1 conv + FRN, no activation
            x = _ConvFRN(self.features, kernel=1, stride=self.stride, name="shortcut")(x)
        return self.activation(x + y)


class ResNetFRN(nn.Module):
    """ResNet of depth ``6n + 2`` for 32x32 images (He et al. 2016, CIFAR variant).

    Stem ``Conv 3x3 (width) -> FRN -> act``; three stages of ``n`` blocks with widths
    ``width, 2 width, 4 width`` (stride 2 and a projection shortcut in the first block of
    stages 2 and 3); ``AvgPool 8x8`` (stride 8, VALID), flatten, ``Dense(num_outputs)``.
    Every convolution and the output layer are He-normal initialised and have a bias.
    """

    num_outputs: int
    depth: int = 20
    width: int = 16
    activation: Callable = nn.relu

    @nn.compact
    def __call__(self, x):
        if (self.depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n+2 (20, 32, 44, ...), got {self.depth}")
        n = (self.depth - 2) // 6
        x = _ConvFRN(self.width, activation=self.activation, name="stem")(x)
        for stage in range(3):
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                x = _Block(
                    self.width * 2**stage,
                    stride,
                    self.activation,
                    name=f"stage{stage + 1}_block{block + 1}",
                )(x)
        x = nn.avg_pool(x, (8, 8), strides=(8, 8), padding="VALID")
        x = jnp.reshape(x, (x.shape[0], -1))
        return nn.Dense(self.num_outputs, kernel_init=he_normal, name="head")(x)
