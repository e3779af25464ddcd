"""``ppl_bnn.infer``: any NumPyro model, any backend, one call.

    >>> import arviz as az, numpy as np, numpyro, numpyro.distributions as dist
    >>> import ppl_bnn
    >>> def model(x, y=None):
    ...     w = numpyro.sample("w", dist.Normal(0, 10).expand([x.shape[1]]).to_event(1))
    ...     sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    ...     with numpyro.plate("data", x.shape[0]):
    ...         numpyro.sample("y", dist.Normal(x @ w, sigma), obs=y)
    >>> x = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    >>> noise = 0.3 * np.random.default_rng(1).normal(size=100)
    >>> y = (x @ np.array([1.0, -1.0, 0.5]) + noise).astype(np.float32)
    >>> result = ppl_bnn.infer(model, x, y, method="nuts", num_warmup=200, num_samples=200)
    >>> result.samples["w"].shape                            # (chains, draws, d)
    (4, 200, 3)
    >>> summary = az.summary(result.to_datatree(), var_names=["w", "sigma"])
    >>> bool(summary["r_hat"].max() < 1.05)
    True

Changing ``method`` and nothing else runs another backend. The common options mean the
same everywhere:

* ``num_warmup``: MCMC: warmup (adaptation) iterations, or the original HMC's burn-in;
  SG-MCMC: burn-in epochs; VI, SGD, ensembles: training epochs.
* ``num_samples``: draws kept per chain (SG-MCMC: one per ``thinning`` epochs after the
  burn-in; VI: draws from each fitted guide; SGD and ensembles: ignored, one draw per
  member).
* ``num_chains``: chains side by side (SGD and ``ensemble``: members; VI: independent
  fits, fit ``i`` from ``seed + i``, one chain each, so that R-hat across fits means
  something).
* ``seed``; ``step_size``: MCMC: the initial step size of the adaptation (original HMC:
  the fixed step size); SG-MCMC, SGD, VI: the (initial) learning rate (default, with
  ``n`` training rows: 0.02 / n for SGLD, 0.02 (1 - momentum_decay) / n for SGHMC, 0.01 / n
  for SGD: they suit standardised data, other scales need their own; 0.05 for VI's Adam,
  cosine-decayed, from the MAP: ``init_strategy="map"``, ``init_scale=1e-3``, see
  :mod:`ppl_bnn.inference.vi`).

Method keywords (``**method_options``) are validated: an unknown one is a one-line
``ValueError`` naming it and the accepted ones. The methods, their keywords and defaults
are :data:`ppl_bnn.methods.REGISTRY`, the only list of them (the table is in
[Backends](../guide/backends.md#the-methods)). ``"hmc"`` is window-adapted; with
``step_size`` and ``trajectory_len`` it runs the original 2021 recipe.

Nothing is written unless ``run_dir`` is given; with it the same call is resumable (run
it again to continue or extend), with checkpoints, metrics and TensorBoard.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from ppl_bnn import methods
from ppl_bnn.driver.loop import RunResult

__all__ = ["METHODS", "infer"]

# method -> its own keywords (the common ones are infer's arguments): a view of the registry
METHODS: dict[str, tuple[str, ...]] = {m.name: m.option_names for m in methods.REGISTRY.values()}


def _check_options(method: str, options: dict) -> methods.Method:
    entry = methods.get(method)
    bad = [k for k in options if k not in entry.option_names]
    if bad:
        raise ValueError(
            f"method {method!r} takes no keyword {bad[0]!r}; its keywords are "
            f"{', '.join(entry.option_names)} (and {', '.join(methods.COMMON_ARGUMENTS)})"
        )
    return entry


def infer(
    model: Callable,
    x,
    y,
    *,
    method: str = "nuts",
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    seed: int = 0,
    step_size: float | None = None,
    x_test=None,
    y_test=None,
    run_dir: str | None = None,
    log_likelihood: bool | None = None,
    progress: bool = False,
    **method_options,
) -> RunResult:
    """Run ``method`` on the NumPyro model ``model(x, y=None)``; returns a :class:`RunResult`.

    Args:
        model: a NumPyro model called as ``model(x, y)``; its observed site(s) inside a
            plate over the rows of ``x`` (or a ``to_event`` likelihood over the rows).
        x, y: the training data (integer ``y``: a classification task).
        method: see the module docstring; ``method_options`` are that method's keywords.
        x_test, y_test: optional test inputs (and targets): ``RunResult.predictions``
            then holds function-space draws on them, and the metrics include the test
            split. Without them nothing is predicted.
        run_dir: a run directory (resumable) instead of memory. It records a fingerprint
            of ``x``, ``y``, ``x_test``, ``y_test`` and of ``model`` (its traced sites and
            source): calling again with other data or another model (even one of the same
            name) on the same ``run_dir`` is a ``ValueError``, never the old posterior.
        log_likelihood: keep the per-row log likelihood of every draw (for ``az.loo``);
            default: when ``x`` has at most 10,000 rows.

    Returns:
        A :class:`RunResult`: ``.samples`` (site -> ``(chain, draw, ...)``), ``.sample_stats``,
        ``.predictions``, ``.log_likelihood``, ``.observed``, ``.summary`` and
        ``.to_datatree()``.
    """
    entry = _check_options(method, method_options)
    if num_warmup < 0 or num_samples < 1 or num_chains < 1:
        raise ValueError(
            "num_warmup must be >= 0, num_samples and num_chains >= 1; got "
            f"{num_warmup}, {num_samples}, {num_chains}"
        )
    if step_size is not None and not (
        isinstance(step_size, numbers.Real) and math.isfinite(step_size) and step_size > 0
    ):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")
    if not callable(model):
        raise ValueError(f"model must be a NumPyro model function, got {type(model).__name__}")
    from ppl_bnn.declare.problem import problem_from_arrays

    problem = problem_from_arrays(model, x, y, x_test, y_test)
    if log_likelihood is None:
        log_likelihood = problem.dataset.x_train.shape[0] <= 10_000
    common = methods.Common(
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        seed=seed,
        step_size=step_size,
        run_dir=run_dir or "",
        num_rows=problem.dataset.x_train.shape[0],
    )
    with methods.spelled_for(entry):  # errors name infer's arguments, not flags
        cfg = entry.configure(common, dict(method_options))
        return entry.run(
            cfg, problem=problem, progress=progress, collect=True, log_likelihood=log_likelihood
        )
