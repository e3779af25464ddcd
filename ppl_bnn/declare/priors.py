"""Priors over network parameters.

A prior here is a callable ``prior(path, shape) -> numpyro Distribution``, the form that
:func:`numpyro.contrib.module.random_flax_module` accepts, so any prior built with this
module can also be passed to NumPyro directly. ``path`` is the dotted Flax parameter path
(``"Dense_0.kernel"``) and ``shape`` the parameter's shape.

Every family is parametrised by its *variance* ``1 / weight_decay`` (the original code's
convention, ``prior_var = 1 / weight_decay``), so families can be swapped at equal prior
variance, as in the paper's prior comparison (Izmailov et al. 2021, Sec. 8). The Student-t
prior has infinite variance for ``df <= 2``; there ``1 / sqrt(weight_decay)`` is its scale,
as in the follow-up code of the original authors.

Example:
    >>> from ppl_bnn.declare import priors
    >>> prior = priors.per_parameter(
    ...     priors.gaussian(weight_decay=1.0),
    ...     overrides={"*.bias": priors.gaussian(weight_decay=10.0)},
    ...     fan_in_scaling=True,
    ... )
    >>> float(prior("Dense_0.kernel", (64, 100)).variance.mean())   # 1 / (1 * 64)
    0.015625
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints

__all__ = [
    "PRIOR_FAMILIES",
    "Prior",
    "ScaleMixtureNormal",
    "fan_in",
    "gaussian",
    "laplace",
    "logistic",
    "make_prior",
    "mixture_gaussian",
    "per_parameter",
    "student_t",
]

Prior = Callable[[str, tuple[int, ...]], dist.Distribution]


class ScaleMixtureNormal(dist.Distribution):
    """Zero-mean mixture of Gaussians, ``sum_k w_k N(0, scale_k^2)``, elementwise.

    Written out (rather than ``MixtureSameFamily``) so that ``expand`` and ``log_prob``
    stay cheap elementwise operations over millions of parameters.
    """

    arg_constraints = {"scales": constraints.positive}
    support = constraints.real
    reparametrized_params: list[str] = []

    def __init__(self, weights, scales, *, validate_args=None):
        self.weights = jnp.asarray(weights) / jnp.sum(jnp.asarray(weights))
        self.scales = jnp.asarray(scales)
        super().__init__(batch_shape=(), validate_args=validate_args)

    def log_prob(self, value):
        value = jnp.asarray(value)[..., None]
        comp = dist.Normal(0.0, self.scales).log_prob(value)
        return logsumexp(comp + jnp.log(self.weights), axis=-1)

    def sample(self, key, sample_shape=()):
        import jax

        k1, k2 = jax.random.split(key)
        shape = sample_shape + self.batch_shape
        idx = dist.Categorical(probs=self.weights).sample(k1, shape)
        return self.scales[idx] * jax.random.normal(k2, shape)

    @property
    def mean(self):
        return jnp.zeros(self.batch_shape)

    @property
    def variance(self):
        return jnp.broadcast_to(jnp.sum(self.weights * self.scales**2), self.batch_shape)


def fan_in(shape: tuple[int, ...]) -> int:
    """Number of inputs feeding one output unit for a Flax kernel of this shape.

    Dense kernels are ``(in, out)``, convolution kernels ``(*window, in, out)``; vectors
    (biases, normalisation parameters) have fan-in 1 (they are not rescaled).
    """
    if len(shape) < 2:
        return 1
    return int(math.prod(shape[:-1]))


def _variance(weight_decay: float) -> float:
    if weight_decay <= 0:
        raise ValueError(f"weight_decay must be positive, got {weight_decay}")
    return 1.0 / weight_decay


@dataclass(frozen=True)
class _Family:
    """A prior family at a given variance; ``variance_scale`` rescales it per parameter."""

    name: str
    build: Callable[[float], dist.Distribution]  # variance -> distribution
    variance: float

    def __call__(self, path: str, shape: tuple[int, ...], variance_scale: float = 1.0):
        return self.build(self.variance * variance_scale)


def gaussian(weight_decay: float = 1.0) -> _Family:
    """Isotropic Gaussian ``N(0, 1/weight_decay)``: the original code's prior."""
    return _Family("gaussian", lambda v: dist.Normal(0.0, math.sqrt(v)), _variance(weight_decay))


def laplace(weight_decay: float = 1.0) -> _Family:
    """Laplace with variance ``1/weight_decay`` (scale ``b = sqrt(1 / (2 weight_decay))``)."""
    return _Family(
        "laplace", lambda v: dist.Laplace(0.0, math.sqrt(v / 2)), _variance(weight_decay)
    )


def logistic(weight_decay: float = 1.0) -> _Family:
    """Logistic with variance ``1/weight_decay`` (scale ``s = sqrt(3 v) / pi``)."""
    return _Family(
        "logistic",
        lambda v: dist.Logistic(0.0, math.sqrt(3 * v) / math.pi),
        _variance(weight_decay),
    )


def student_t(weight_decay: float = 1.0, df: float = 1.0) -> _Family:
    """Student-t with ``df`` degrees of freedom and scale ``sqrt(1/weight_decay)``."""
    if df <= 0:
        raise ValueError(f"Student-t degrees of freedom must be positive, got {df}")
    return _Family(
        "student_t", lambda v: dist.StudentT(df, 0.0, math.sqrt(v)), _variance(weight_decay)
    )


def mixture_gaussian(
    weight_decay: float = 1.0, *, weight: float = 0.5, scale_ratio: float = 4.0
) -> _Family:
    """Two-component zero-mean Gaussian mixture with total variance ``1/weight_decay``.

    The components have weights ``(weight, 1 - weight)`` and standard deviations in the
    ratio ``1 : scale_ratio`` (a narrow "spike" and a broad "slab").
    """
    if not 0 < weight < 1 or scale_ratio <= 0:
        raise ValueError("mixture prior needs 0 < weight < 1 and scale_ratio > 0")

    def build(v: float) -> dist.Distribution:
        # weight * s^2 + (1 - weight) * (r s)^2 = v
        s = math.sqrt(v / (weight + (1 - weight) * scale_ratio**2))
        return ScaleMixtureNormal(jnp.array([weight, 1 - weight]), jnp.array([s, scale_ratio * s]))

    return _Family("mixture_gaussian", build, _variance(weight_decay))


PRIOR_FAMILIES: dict[str, Callable[..., _Family]] = {
    "gaussian": gaussian,
    "mixture_gaussian": mixture_gaussian,
    "logistic": logistic,
    "laplace": laplace,
    "student_t": student_t,
}


@dataclass(frozen=True)
class _PerParameter:
    default: Callable
    overrides: Mapping[str, Callable] = field(default_factory=dict)
    fan_in_scaling: bool = False

    def __call__(self, path: str, shape: tuple[int, ...]) -> dist.Distribution:
        prior = self.default
        for pattern, candidate in self.overrides.items():
            if fnmatch.fnmatchcase(path, pattern):
                prior = candidate
                break
        if isinstance(prior, dist.Distribution):
            return prior
        scale = 1.0 / fan_in(tuple(shape)) if self.fan_in_scaling else 1.0
        if isinstance(prior, _Family):
            return prior(path, shape, scale)
        return prior(path, shape)


def per_parameter(
    default: Callable | dist.Distribution,
    overrides: Mapping[str, Callable | dist.Distribution] | None = None,
    *,
    fan_in_scaling: bool = False,
) -> Prior:
    """A prior that differs by parameter path.

    Args:
        default: prior for every parameter no override matches: a family from this module,
            a NumPyro distribution, or any ``(path, shape) -> Distribution`` callable.
        overrides: ``{glob pattern: prior}``, tried in order against the dotted path, e.g.
            ``{"*.bias": gaussian(10.0), "Dense_2.*": laplace(1.0)}``.
        fan_in_scaling: divide the variance of each family prior by the parameter's fan-in
            (kernels only; biases keep their variance).
    """
    return _PerParameter(default, dict(overrides or {}), fan_in_scaling)


def make_prior(
    family: str = "gaussian",
    weight_decay: float = 1.0,
    *,
    fan_in_scaling: bool = False,
    **family_kwargs,
) -> Prior:
    """Build a prior by family name (the CLI's ``--prior_family``)."""
    if family not in PRIOR_FAMILIES:
        raise ValueError(
            f"unknown prior family {family!r}; choose one of {', '.join(PRIOR_FAMILIES)}"
        )
    return per_parameter(
        PRIOR_FAMILIES[family](weight_decay, **family_kwargs), fan_in_scaling=fan_in_scaling
    )
