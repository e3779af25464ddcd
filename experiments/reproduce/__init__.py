"""``reproduce``: the paper's seven findings, measured at laptop size, in one report.

Izmailov, Vikram, Hoffman & Wilson (2021), "What Are Bayesian Neural Network Posteriors
Really Like?", state in their abstract seven findings. Each is a registered
:class:`Finding` here (:data:`FINDINGS`): it runs what it needs, writes its numbers
(``<out>/<name>/result.json``, tables also as CSV), a PNG figure, and a one-line verdict
against the paper's statement: **reproduced** or **not reproduced at this scale**, with
Monte Carlo (bootstrap over test points) uncertainty. ``report.md`` is rendered from those
JSON files alone (:func:`render_report`), so every number in it comes from this run.

The setting, shared by every finding (laptop scale):

* data: scikit-learn's 8x8 ``digits`` (embedded), a one-hidden-layer MLP of 50 ReLU units
  (``mlp_regression_small``); for domain shift the test images corrupted by Gaussian
  noise, Gaussian blur and rotation at five severities;
* **prior**: an isotropic Gaussian whose variance ``1 / weight_decay`` is chosen from a
  grid by the validation NLL of HMC's Bayesian model average, on a validation part carved
  from the training set (never the test set); the same prior for every method;
* HMC: full-batch NUTS with window adaptation (no hand-set step size), several chains,
  ``ppl_bnn.infer(method="nuts")`` compiled and in memory, as a user runs it;
* baselines: the project's own SGD, deep ensemble, SGLD, SGHMC and mean-field VI runners
  (``ppl_bnn.driver``), run directories in ``<out>/_runs``.

Profiles: ``default`` (under an hour on 2 CPU cores), ``quick`` (under 10 minutes) and
``smoke`` (seconds to a minute: structure only, the verdicts mean nothing at that size).
``scale="paper"`` writes the paper-scale plan instead: the named experiments of
``ppl_bnn.experiments.paper`` each finding needs and their cost from the measured
leapfrog step time.

Layout: ``config`` (model, corruptions, profiles, :class:`ReproduceConfig`), ``context``
(the shared data and runs), ``stats`` (per-point metrics, bootstrap), ``plots``,
``report`` (number format, ``report.md``), ``run`` (:func:`run_reproduce`,
:func:`paper_plan`), ``registry`` (:class:`Finding`, :data:`FINDINGS`), and one module
per finding, imported here in the paper's order: ``bma``, ``chains``, ``cold``,
``priors``, ``shift``, ``closeness``, ``rhat``.
"""

from __future__ import annotations

# isort: off
# the findings register themselves on import, in the paper's order (the report's order)
from . import bma as bma
from . import chains as chains
from . import cold as cold
from . import priors as priors
from . import shift as shift
from . import closeness as closeness
from . import rhat as rhat

# isort: on
from .config import CORRUPTIONS as CORRUPTIONS
from .config import MODEL as MODEL
from .config import PROFILES, Profile, ReproduceConfig
from .context import Context as Context
from .registry import FINDINGS, Finding
from .registry import register_finding as register_finding
from .report import fmt, render_report
from .run import H200_LEAPFROG_S as H200_LEAPFROG_S
from .run import paper_plan, run_reproduce
from .stats import _bootstrap_mean as _bootstrap_mean

__all__ = [
    "FINDINGS",
    "PROFILES",
    "Finding",
    "Profile",
    "ReproduceConfig",
    "fmt",
    "paper_plan",
    "render_report",
    "run_reproduce",
]
