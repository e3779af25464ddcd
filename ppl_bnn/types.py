"""Type aliases shared across the library (after ``blackjax/types.py``)."""

from collections.abc import Callable
from typing import Any

import jax

Array = jax.Array
ArrayTree = Any  # a pytree of arrays
PRNGKey = jax.Array
Model = Callable[..., Any]  # a NumPyro model called as ``model(x, y=None)``

__all__ = ["Array", "ArrayTree", "Model", "PRNGKey"]
