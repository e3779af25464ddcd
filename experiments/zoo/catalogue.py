"""The zoo's catalogue: one :class:`ZooModel` per model, what it stresses and where its
reference comes from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .exact import Stats, gaussian_known_sigma, nig_regression
from .models import (
    BIMODAL_Y,
    SCALES,
    _bimodal_exact,
    _bnn_data,
    _eight_data,
    _flat_exact,
    _funnel_exact,
    _gaussian_regression,
    _halfcauchy_exact,
    _hier_data,
    _high_dim_data,
    _linear_halfcauchy,
    _logistic_data,
    _logistic_unstandardised_reference,
    _logistic_unstd_data,
    _mixture_data,
    _nig_data,
    _no_data,
    _poisson_data,
    _scales_data,
    _student_data,
    _twin_data,
    _years_data,
    _years_exact,
    bimodal,
    bnn,
    eight_schools_centred,
    eight_schools_noncentred,
    funnel_centred,
    funnel_noncentred,
    hierarchical_centred,
    linear_flat,
    logistic,
    logistic_unstandardised,
    mixture_ordered,
    nig,
    poisson,
    student_t,
    years_regression,
)


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo.

    Attributes:
        name: its name (``--models``).
        model: the NumPyro model ``model(x, y=None)``.
        data: ``() -> (x, y)``, deterministic.
        sites: the sites compared (every scalar component of each).
        source: ``"closed form"``, ``"quadrature"`` or ``"numpyro-nuts"``.
        why: what it stresses.
        expected: ``"pass"`` or ``"must-warn"`` (a default sampler is expected to fail;
            the run must say so).
        exact: ``() -> Stats`` for the closed-form and quadrature references.
        reference_of: use another model's stored reference (same posterior, other
            parameterisation).
        reference_options: NumPyro NUTS keywords for the long reference run.
        reference_model: the same posterior in other coordinates, for the long
            reference run (its deterministic sites give ``sites``).
    """

    name: str
    model: Callable
    data: Callable[[], tuple[np.ndarray, np.ndarray]]
    sites: tuple[str, ...]
    source: str
    why: str
    expected: str = "pass"
    exact: Callable[[], Stats] | None = None
    reference_of: str | None = None
    reference_options: Mapping[str, Any] = field(default_factory=dict)
    reference_model: Callable | None = None


def _models() -> list[ZooModel]:
    twin = _twin_data()
    small, large = _twin_data(1e-2), _twin_data(1e2)
    twin_50 = _twin_data(1.0, n=50, seed=1)
    large3 = _twin_data(1e3, n=100, seed=2)
    ms = [
        ZooModel(
            "linear_flat_twin",
            linear_flat,
            twin,
            ("beta", "sigma"),
            "closed form",
            "the public twin: un-standardised covariate (mean 100, sd 15), flat priors on "
            "the coefficients and the noise scale",
            exact=_flat_exact(twin),
        ),
        ZooModel(
            "linear_flat_1e-2",
            linear_flat,
            small,
            ("beta", "sigma"),
            "closed form",
            "the twin with x and y in units 100 times larger (noise sd 0.18)",
            exact=_flat_exact(small),
        ),
        ZooModel(
            "linear_flat_1e2",
            linear_flat,
            large,
            ("beta", "sigma"),
            "closed form",
            "the twin with x and y 100 times larger (noise sd 1800, intercept 2600)",
            exact=_flat_exact(large),
        ),
        ZooModel(
            "linear_flat_n50",
            linear_flat,
            twin_50,
            ("beta", "sigma"),
            "closed form",
            "the twin with 50 rows: heavier Student-t tails, wider posterior",
            exact=_flat_exact(twin_50),
        ),
        ZooModel(
            "linear_halfcauchy_twin",
            _linear_halfcauchy(5.0),
            twin,
            ("beta", "sigma"),
            "quadrature",
            "the twin with a half-Cauchy(5) prior on the noise scale",
            exact=_halfcauchy_exact(twin, 5.0),
        ),
        ZooModel(
            "linear_halfcauchy_1e-2",
            _linear_halfcauchy(1.0),
            small,
            ("beta", "sigma"),
            "quadrature",
            "half-Cauchy(1) prior, noise sd 0.18: prior scale far above the data's",
            exact=_halfcauchy_exact(small, 1.0),
        ),
        ZooModel(
            "linear_halfcauchy_1e3",
            _linear_halfcauchy(1.0),
            large3,
            ("beta", "sigma"),
            "quadrature",
            "half-Cauchy(1) prior, noise sd 18000: the data 1e4 times the prior scale",
            exact=_halfcauchy_exact(large3, 1.0),
        ),
        ZooModel(
            "years_trend",
            years_regression,
            _years_data,
            ("beta", "sigma"),
            "quadrature",
            "a covariate of calendar years near 2000, not centred: intercept and slope "
            "correlated at -0.9999",
            exact=_years_exact,
        ),
        ZooModel(
            "nig_conjugate",
            nig,
            _nig_data,
            ("beta", "sigma2"),
            "closed form",
            "conjugate normal-inverse-gamma regression",
            exact=lambda: nig_regression(*_nig_data(), 10.0, 3.0, 2.0),
        ),
        ZooModel(
            "gaussian_100d",
            _gaussian_regression(),
            _high_dim_data,
            ("beta",),
            "closed form",
            "100 coefficients, correlated (AR 0.5) design, known noise: a 100-dimensional "
            "correlated Gaussian",
            exact=lambda: gaussian_known_sigma(*_high_dim_data(), 1.0, np.ones(100)),
        ),
        ZooModel(
            "scales_1e-3_1e3",
            _gaussian_regression(100.0 / SCALES),
            _scales_data,
            ("beta",),
            "closed form",
            "covariates on scales 1e-3 ... 1e3 in one model: posterior sds from 1e-4 to 1e2",
            exact=lambda: gaussian_known_sigma(*_scales_data(), 1.0, 100.0 / SCALES),
        ),
        ZooModel(
            "logistic",
            logistic,
            _logistic_data,
            ("alpha", "beta"),
            "numpyro-nuts",
            "logistic regression, standardised covariates",
        ),
        ZooModel(
            "logistic_unstandardised",
            logistic_unstandardised,
            _logistic_unstd_data,
            ("alpha", "beta"),
            "numpyro-nuts",
            "logistic regression on raw age and income: coefficient scales 1e-1 to 1e-6, "
            "strongly correlated with the intercept",
            reference_model=_logistic_unstandardised_reference,
        ),
        ZooModel(
            "poisson",
            poisson,
            _poisson_data,
            ("alpha", "beta"),
            "numpyro-nuts",
            "Poisson regression with an exposure offset",
        ),
        ZooModel(
            "eight_schools_noncentred",
            eight_schools_noncentred,
            _eight_data,
            ("mu", "tau", "theta"),
            "numpyro-nuts",
            "eight schools, non-centred: a hierarchical model with little data",
            reference_options={"target_accept_prob": 0.95},
        ),
        ZooModel(
            "eight_schools_centred",
            eight_schools_centred,
            _eight_data,
            ("mu", "tau", "theta"),
            "numpyro-nuts",
            "eight schools, centred: the funnel between tau and theta; divergences",
            expected="must-warn",
            reference_of="eight_schools_noncentred",
        ),
        ZooModel(
            "hierarchical_centred",
            hierarchical_centred,
            _hier_data,
            ("mu", "tau", "sigma", "theta"),
            "numpyro-nuts",
            "varying intercepts, centred, 30 rows per group",
        ),
        ZooModel(
            "student_t",
            student_t,
            _student_data,
            ("beta", "sigma", "nu"),
            "numpyro-nuts",
            "a Student-t likelihood with unknown degrees of freedom (skewed posterior of nu)",
        ),
        ZooModel(
            "mixture_ordered",
            mixture_ordered,
            _mixture_data,
            ("mu", "sigma", "w"),
            "numpyro-nuts",
            "a two-component Gaussian mixture with ordered means",
        ),
        ZooModel(
            "bnn_101d",
            bnn,
            _bnn_data,
            ("f_probe", "sigma"),
            "numpyro-nuts",
            "a 1-33-1 tanh network, 101 parameters, 40 rows: compared in function space",
            reference_options={"num_samples": 2500},
        ),
        ZooModel(
            "funnel_noncentred",
            funnel_noncentred,
            _no_data,
            ("v", "z"),
            "closed form",
            "Neal's funnel, non-centred: a 10-dimensional standard Gaussian in disguise",
            exact=_funnel_exact("z"),
        ),
        ZooModel(
            "funnel_centred",
            funnel_centred,
            _no_data,
            ("v", "x"),
            "closed form",
            "Neal's funnel, centred: step sizes from exp(-7) to exp(7) needed at once",
            expected="must-warn",
            exact=_funnel_exact("x"),
        ),
        ZooModel(
            "bimodal",
            bimodal,
            lambda: (np.arange(3.0)[:, None], BIMODAL_Y.copy()),  # row j observes theta_j
            ("theta",),
            "quadrature",
            "three independent bimodal coordinates, modes at +-3, +-4, +-5 behind barriers "
            "of 40 to 300 nats: chains cannot cross, R-hat must flag it",
            expected="must-warn",
            exact=_bimodal_exact,
        ),
    ]
    return ms


MODELS: dict[str, ZooModel] = {m.name: m for m in _models()}


def get(name: str) -> ZooModel:
    """The zoo model ``name``."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; the zoo has {', '.join(MODELS)}")
    return MODELS[name]
