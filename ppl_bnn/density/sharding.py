"""The device mesh, and data placed on it. The only module that knows about devices.

The full-batch log likelihood is summed inside ``shard_map`` over the ``data`` axis of a
one-dimensional mesh, with parameters replicated and data sharded along the batch axis.
The same code runs on one device, on N local devices and on the devices of N processes
(``jax.distributed``). Batches that do not divide evenly over the devices are padded, and a
mask zeroes the padded rows' contribution: no example is ever dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
    "process_rows",
    "ensure_replicated",
    "replicate",
    "shard_batch",
    "shard_rows",
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
    if jax.process_count() > 1:
        devices = _devices_by_process(devices, num_devices)
    elif num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(
                f"--num_devices={num_devices} but {len(devices)} device(s) are available"
            )
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def _devices_by_process(devices: list, num_devices: int | None) -> list:
    """Devices grouped by process, so that each process holds one contiguous block of rows.

    ``num_devices`` (the whole mesh) takes the same number of devices from every process.
    """
    n_proc = jax.process_count()
    per_proc: dict[int, list] = {}
    for d in sorted(devices, key=lambda d: (d.process_index, d.id)):
        per_proc.setdefault(d.process_index, []).append(d)
    fewest = min(len(v) for v in per_proc.values())
    take = fewest
    if num_devices is not None:
        if num_devices % n_proc or not 1 <= num_devices // n_proc <= fewest:
            raise ValueError(
                f"--num_devices={num_devices} must be a multiple of the {n_proc} processes, "
                f"at most {fewest} per process"
            )
        take = num_devices // n_proc
    return [d for p in sorted(per_proc) for d in per_proc[p][:take]]


def padded_size(n: int, mesh: Mesh, multiple: int = 1) -> int:
    """Smallest size >= n divisible by ``multiple`` times the number of devices."""
    step = mesh.devices.size * multiple
    return max(step, math.ceil(n / step) * step)


def _pad(a: np.ndarray, size: int, template: np.ndarray) -> np.ndarray:
    """Pad with copies of a real row: a padded row must be a valid observation (a zero
    can lie outside the likelihood's support, where even a masked log density is NaN)."""
    fill = np.broadcast_to(template[:1], (size - a.shape[0], *a.shape[1:])).astype(a.dtype)
    return np.concatenate([a, fill]) if fill.shape[0] else a


def process_rows(mesh: Mesh, size: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of a ``size``-row batch held by this process's devices.

    ``make_mesh`` orders devices by process, so every process holds one contiguous block
    (on one process: all rows).
    """
    index = NamedSharding(mesh, P(DATA_AXIS)).addressable_devices_indices_map((size,))
    bounds = [idx[0].indices(size)[:2] for idx in index.values()]  # type: ignore[index]
    if not bounds:
        return 0, 0
    lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
    if sum(b[1] - b[0] for b in bounds) != hi - lo:
        raise ValueError("this process's devices do not hold one contiguous block of rows")
    return lo, hi


def shard_rows(
    mesh: Mesh,
    num_examples: int,
    read_rows: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    *,
    multiple: int = 1,
    dtype=None,
) -> Batch:
    """A sharded batch of ``num_examples`` rows of which each process reads only its own.

    ``read_rows(lo, hi)`` returns rows ``lo`` to ``hi`` (exclusive) of ``(x, y)``; it is
    called once per process with the block that process's devices hold, so a loader that
    can read a range (a TFDS split slice ``train[lo:hi]``, a memory-mapped file) never
    reads the rest. Padding and the mask are as in :func:`shard_batch`.
    """
    size = padded_size(num_examples, mesh, multiple)
    lo, hi = process_rows(mesh, size)
    x, y = (np.asarray(a) for a in read_rows(min(lo, num_examples), min(hi, num_examples)))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    if x.shape[0] != min(hi, num_examples) - min(lo, num_examples):
        raise ValueError(f"read_rows({lo}, {hi}) returned {x.shape[0]} rows")
    dtype = dtype or jnp.zeros(()).dtype
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(dtype)
    if np.issubdtype(y.dtype, np.floating):
        y = y.astype(dtype)
    mask = (np.arange(lo, hi) < num_examples).astype(dtype)
    # padding copies a real row: this process's first, or the batch's first if it has none
    tx, ty = (x, y) if x.shape[0] else (np.asarray(a) for a in read_rows(0, 1))
    sharding = NamedSharding(mesh, P(DATA_AXIS))

    def put(local: np.ndarray, template: np.ndarray) -> jax.Array:
        local = _pad(local, hi - lo, template)

        def block(index):
            start, stop, _ = index[0].indices(size)
            return local[start - lo : stop - lo]

        return jax.make_array_from_callback((size, *local.shape[1:]), sharding, block)

    return Batch(put(x, tx), put(y, ty), put(mask, mask), num_examples)


def shard_batch(
    mesh: Mesh, x: np.ndarray, y: np.ndarray, *, multiple: int = 1, dtype=None
) -> Batch:
    """Pad ``(x, y)`` to a multiple of ``multiple * num_devices`` rows and shard them.

    ``multiple`` is the per-device chunk size when the likelihood is accumulated in
    microbatches. Floating inputs are cast to ``dtype`` (default: JAX's default float).
    In a multi-process run every process passes the same arrays and places only the rows
    its own devices hold (see :func:`shard_rows`).
    """
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} rows but y has {y.shape[0]}")
    return shard_rows(mesh, n, lambda lo, hi: (x[lo:hi], y[lo:hi]), multiple=multiple, dtype=dtype)


def ensure_replicated(mesh: Mesh, tree):
    """:func:`replicate` the leaves of ``tree`` that are not yet placed on a mesh (a jitted
    step's outputs are): a per-step call costs an attribute read per leaf, not a transfer,
    and a fresh or restored state is placed as the step returns it, so that its first call
    compiles the program of every later one."""
    leaves, treedef = jax.tree.flatten(tree)
    shardings = [getattr(a, "sharding", None) for a in leaves]
    todo = [i for i, sh in enumerate(shardings) if not isinstance(sh, NamedSharding)]
    if not todo:
        return tree
    for i, a in zip(todo, replicate(mesh, [leaves[i] for i in todo]), strict=True):
        leaves[i] = a
    return jax.tree.unflatten(treedef, leaves)


def replicate(mesh: Mesh, tree):
    """Place a pytree fully replicated on every device of the mesh.

    In a multi-process run every process must pass the same values.
    """
    sharding = NamedSharding(mesh, P())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            if a.sharding.is_equivalent_to(sharding, a.ndim):
                return a
            a = _gather(a)
        return jax.device_put(np.asarray(a) if isinstance(a, jax.Array) else a, sharding)

    return jax.tree.map(put, tree)


def _gather(array: jax.Array) -> np.ndarray:
    """The global value of an array spanning several processes (a collective call)."""
    if array.is_fully_replicated:
        return np.asarray(array.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def to_host(array: jax.Array, num_examples: int | None = None) -> np.ndarray:
    """Fetch a (possibly sharded) array to numpy, dropping padded rows.

    An array spanning several processes is gathered from all of them: in a multi-process
    run every process must call this, in the same order.
    """
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        out = _gather(array)
    else:
        out = np.asarray(jax.device_get(array))
    return out if num_examples is None else out[:num_examples]
