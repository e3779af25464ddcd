"""The device mesh, and data placed on it. The only module that knows about devices.

The full-batch log likelihood is summed inside ``shard_map`` over the ``data`` axis of a
one-dimensional mesh, with parameters replicated and data sharded along the batch axis.
The same code runs on one device, on N local devices and on the devices of N processes
(``jax.distributed``). Batches that do not divide evenly over the devices are padded, and a
mask zeroes the padded rows' contribution: no example is ever dropped.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA_AXIS",
    "Batch",
    "make_mesh",
    "replicate",
    "shard_batch",
    "to_host",
]

DATA_AXIS = "data"


class Batch(NamedTuple):
    """Inputs, targets and a 0/1 mask over the leading (batch) axis, sharded on a mesh.

    ``num_examples`` is the number of real (unpadded) rows; padded rows sit at the end.
    """

    x: jax.Array
    y: jax.Array
    mask: jax.Array
    num_examples: int


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named ``data`` over the first ``num_devices`` devices (default: all).

    The axis type is ``Auto``: with the explicit axes that ``jax.make_mesh`` now defaults
    to, ``value_and_grad`` through ``shard_map`` fails.
    """
    devices = jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(
                f"--num_devices={num_devices} but {len(devices)} device(s) are available"
            )
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def padded_size(n: int, mesh: Mesh, multiple: int = 1) -> int:
    """Smallest size >= n divisible by ``multiple`` times the number of devices."""
    step = mesh.devices.size * multiple
    return max(step, math.ceil(n / step) * step)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    pad = [(0, size - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return np.pad(a, pad)


def shard_batch(
    mesh: Mesh, x: np.ndarray, y: np.ndarray, *, multiple: int = 1, dtype=None
) -> Batch:
    """Pad ``(x, y)`` to a multiple of ``multiple * num_devices`` rows and shard them.

    ``multiple`` is the per-device chunk size when the likelihood is accumulated in
    microbatches. Floating inputs are cast to ``dtype`` (default: JAX's default float).
    """
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} rows but y has {y.shape[0]}")
    size = padded_size(n, mesh, multiple)
    dtype = dtype or jnp.zeros(()).dtype
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(dtype)
    if np.issubdtype(y.dtype, np.floating):
        y = y.astype(dtype)
    mask = np.zeros(size, dtype)
    mask[:n] = 1
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    put = lambda a: jax.device_put(_pad(np.asarray(a), size), sharding)
    return Batch(put(x), put(y), jax.device_put(mask, sharding), n)


def replicate(mesh: Mesh, tree):
    """Place a pytree fully replicated on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def to_host(array: jax.Array, num_examples: int | None = None) -> np.ndarray:
    """Fetch a (possibly sharded) array to numpy, dropping padded rows."""
    out = np.asarray(jax.device_get(array))
    return out if num_examples is None else out[:num_examples]
