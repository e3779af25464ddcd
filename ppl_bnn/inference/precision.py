"""Gradients in reduced precision for exact, Metropolis-adjusted dynamics.

A Metropolis-adjusted sampler stays exact with *any* deterministic gradient field
``g(x)`` in place of the true gradient of the log density: a leapfrog step
``p <- p + eps/2 g(x)`` is a shear (volume preserving, a bijection, reversed by negating
the momentum), and the isokinetic (microcanonical) momentum update, a map of the unit
sphere at fixed ``x``, has a Jacobian that depends on ``g(x)`` only through its value,
which the integrator accounts for in its kinetic energy change. Only the Metropolis
test needs the accurate log density (Neal 2011, Sec. 5.5.1, on approximate
Hamiltonians; the same argument holds for the microcanonical map of Robnik et al.
2025). So the trajectory may be integrated with a gradient computed in ``bfloat16``
while the acceptance uses the float32 (or float64) log density: the chain's
stationary distribution is unchanged; the acceptance rate, and so the efficiency, is
what the lower precision costs.

Whether it is faster is an open question until measured on an accelerator: on CPUs
``bfloat16`` is emulated and slower than float32.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["GRADIENT_DTYPES", "check_gradient_dtype", "in_dtype"]

#: the accepted names of ``gradient_dtype`` (``None``: the positions' own dtype)
GRADIENT_DTYPES = ("bfloat16", "float16", "float32")


def check_gradient_dtype(name: str | None) -> None:
    """A one-line ``ValueError`` for a ``gradient_dtype`` that is not one of
    :data:`GRADIENT_DTYPES` (or ``None``)."""
    if name is not None and name not in GRADIENT_DTYPES:
        raise ValueError(
            f"unknown gradient_dtype {name!r}; choose one of {', '.join(GRADIENT_DTYPES)} "
            "(or none: the positions' dtype)"
        )


def _cast(tree, dtype):
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a,
        tree,
    )


def in_dtype(logdensity: Callable, dtype: str | None) -> Callable:
    """``logdensity(position, batch)`` evaluated with the position and the floating-point
    data cast to ``dtype``, its value cast back to the position's dtype.

    Differentiating it gives the gradient computed in ``dtype`` (the backward pass runs in
    ``dtype``; the casts' transposes bring it back). ``dtype=None`` returns ``logdensity``
    itself.
    """
    if dtype is None:
        return logdensity
    low = jnp.dtype(dtype)

    def reduced(position, batch):
        out = jax.tree.leaves(position)[0].dtype
        return logdensity(_cast(position, low), _cast(batch, low)).astype(out)

    return reduced
