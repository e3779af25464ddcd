"""A zoo of small NumPyro models with reference posteriors, to test samplers against.

Each :class:`ZooModel` is a model ``model(x, y=None)``, its data (generated from a fixed
NumPy seed), the scalar quantities to compare and where its reference comes from:

* ``"closed form"``: conjugate or flat-prior Gaussian regressions (Student-t and scaled
  inverse chi-square marginals, normal-inverse-gamma), Gaussian targets, Neal's funnel;
* ``"quadrature"``: a Gaussian linear model whose only non-conjugate parameter is the
  noise scale (a half-Cauchy or half-normal prior), integrated on a fine grid of
  ``log sigma`` (exact to many digits), and one-dimensional targets;
* ``"numpyro-nuts"``: a long NumPyro NUTS run (many chains), stored as summary statistics
  in ``zoo_references.json`` beside this module (``benchmarks/zoo_references.py``
  regenerates it).

:func:`evaluate` compares draws with a reference: means within 4 Monte Carlo standard
errors (the run's and the reference's, combined), sds within ``[0.8, 1.25]`` of the
reference's, R-hat below 1.01 and bulk ESS at least 400 on every quantity.

Models marked ``expected="must-warn"`` (a centred funnel, a bimodal target, centred eight
schools) are ones on which a default sampler is expected to fail: a run on them must
fail loudly (a warning), not pass.

Layout: :mod:`.exact` (closed forms and quadratures), :mod:`.models` (the NumPyro models
and their data), :mod:`.catalogue` (:data:`MODELS`), :mod:`.check` (references and the
pass rule), :mod:`.run` (one benchmark run, the pass-rate table).

Example:
    >>> from ppl_bnn.experiments import zoo
    >>> len(zoo.MODELS) >= 20
    True
    >>> m = zoo.get("linear_flat_twin")
    >>> x, y = m.data()
    >>> x.shape, x.dtype
    ((434, 1), dtype('float64'))
    >>> sorted(zoo.reference(m))
    ['beta[0]', 'beta[1]', 'sigma']
"""

from __future__ import annotations

from .catalogue import MODELS, ZooModel, get
from .check import (
    ESS_MIN,
    MCSE_FACTOR,
    REFERENCES_PATH,
    RHAT_MAX,
    SD_RATIO,
    evaluate,
    flatten,
    load_references,
    reference,
    summarize,
)
from .exact import (
    Stats,
    flat_prior_regression,
    gaussian_known_sigma,
    nig_regression,
    one_dim_quadrature,
    sigma_quadrature,
)
from .models import (  # noqa: F401  (data and exact references the tests use)
    BIMODAL_Y,
    SCALES,
    _bimodal_exact,
    _funnel_exact,
    _nig_data,
    _scales_data,
)
from .run import NUMPYRO_METHODS, pass_table, run, run_numpyro_nuts

__all__ = [
    "ESS_MIN",
    "MCSE_FACTOR",
    "MODELS",
    "NUMPYRO_METHODS",
    "REFERENCES_PATH",
    "RHAT_MAX",
    "SD_RATIO",
    "Stats",
    "ZooModel",
    "evaluate",
    "flat_prior_regression",
    "flatten",
    "gaussian_known_sigma",
    "get",
    "load_references",
    "nig_regression",
    "one_dim_quadrature",
    "pass_table",
    "reference",
    "run",
    "run_numpyro_nuts",
    "sigma_quadrature",
    "summarize",
]
