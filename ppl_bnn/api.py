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
``ValueError`` naming it and the accepted ones.

=============  ==========================================================================
method         what runs
=============  ==========================================================================
``"nuts"``     BlackJAX NUTS with Stan's window adaptation (step size, diagonal mass
               matrix; ``dense_mass=True``), started uniformly in (-2, 2) unconstrained
``"hmc"``      HMC with the same warmup and a trajectory-length rule; with
               ``step_size`` and ``trajectory_len`` the original's semantics (fixed
               step size and ``L``, no MH during the ``num_warmup`` burn-in)
``"sgld"``     SGLD; ``"sghmc"`` SGHMC (``momentum_decay``); both take
               ``schedule="cyclical"`` and ``preconditioner="RMSprop"``
``"vi"``       SVI with any NumPyro autoguide by name (``guide="AutoNormal"``), from
               the MAP (L-BFGS); ``num_chains`` independent fits
``"sgd"``      MAP by SGD with momentum (``"map"`` too), one per chain
``"ensemble"`` a deep ensemble of ``num_chains`` SGD members
=============  ==========================================================================

Nothing is written unless ``run_dir`` is given; with it the same call is resumable (run
it again to continue or extend), with checkpoints, metrics and TensorBoard.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from ppl_bnn.driver.loop import RunResult

__all__ = ["METHODS", "infer"]

# method -> its own keywords (the common ones are infer's arguments)
_MCMC = (
    "target_accept",
    "dense_mass",
    "max_num_doublings",
    "init_strategy",
    "divergence_threshold",
    "eval_freq",
)
_HMC_ORIGINAL = (
    "trajectory_len",
    "max_num_leapfrog_steps",
    "no_mh",
    "step_size_adaptation_speed",
    "target_accept_rate",
    "adapt_mass_matrix",
    "divergence_threshold",
    "eval_freq",
)
_MINIBATCH = ("batch_size", "eval_freq", "save_freq", "momentum_decay", "init_checkpoint")
_SGMCMC = (*_MINIBATCH, "schedule", "preconditioner", "cycle_length", "thinning", "final_step_size")
METHODS: dict[str, tuple[str, ...]] = {
    "nuts": _MCMC,
    "hmc": tuple(dict.fromkeys((*_MCMC, "trajectory_length", "max_num_steps", *_HMC_ORIGINAL))),
    "sgld": _SGMCMC,
    "sghmc": _SGMCMC,
    "vi": (*_MINIBATCH, "guide", "guide_rank", "init_scale", "optimizer", "init_strategy"),
    "sgd": _MINIBATCH,
    "map": _MINIBATCH,
    "ensemble": _MINIBATCH,
}


def _check_options(method: str, options: dict[str, Any]) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    bad = [k for k in options if k not in METHODS[method]]
    if bad:
        raise ValueError(
            f"method {method!r} takes no keyword {bad[0]!r}; its keywords are "
            f"{', '.join(METHODS[method])} (and num_warmup, num_samples, num_chains, seed, "
            "step_size, x_test, y_test, run_dir, log_likelihood)"
        )


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
    _check_options(method, method_options)
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
    common = {"dir": run_dir or "", "seed": seed}
    run, cfg = _configure(
        method,
        problem,
        common,
        num_warmup,
        num_samples,
        num_chains,
        step_size,
        dict(method_options),
    )
    return run(cfg, problem=problem, progress=progress, collect=True, log_likelihood=log_likelihood)


def _configure(method, problem, common, num_warmup, num_samples, num_chains, step_size, opts):
    """``(run function, config)`` for ``method`` (keywords already validated)."""
    from ppl_bnn import config as C
    from ppl_bnn import driver

    n = problem.dataset.x_train.shape[0]
    if method == "hmc" and ("trajectory_len" in opts or step_size is not None):
        if step_size is None or "trajectory_len" not in opts:
            raise ValueError(
                "hmc with the original's semantics needs both step_size and trajectory_len "
                "(give neither for the window-adapted warmup)"
            )
        kw = {k: v for k, v in opts.items() if k in _HMC_ORIGINAL}
        bad = [k for k in opts if k not in _HMC_ORIGINAL]
        if bad:
            raise ValueError(
                f"hmc with step_size and trajectory_len takes no keyword {bad[0]!r}; its "
                f"keywords are {', '.join(_HMC_ORIGINAL)}"
            )
        cfg = C.HMCConfig(
            **common,
            step_size=step_size,
            num_iterations=num_warmup + num_samples,
            num_burn_in_iterations=num_warmup,
            num_chains=num_chains,
            **kw,
        )
        return driver.run_hmc, cfg
    if method in ("nuts", "hmc"):
        bad = [k for k in opts if k in _HMC_ORIGINAL and k not in _MCMC]
        if bad:
            raise ValueError(
                f"{bad[0]!r} belongs to hmc with the original's semantics: give step_size "
                "and trajectory_len with it"
            )
        cfg = C.MCMCConfig(
            **common,
            kernel=method,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            step_size=step_size,
            **opts,
        )
        from ppl_bnn.driver.mcmc import run_mcmc

        return run_mcmc, cfg
    batch = {"batch_size": min(opts.pop("batch_size", 80), n)}
    for k in ("eval_freq", "save_freq", "momentum_decay", "init_checkpoint"):
        if k in opts:
            batch[k] = opts.pop(k)
    if step_size is None and method != "vi":  # VI's Adam: a step in parameter units
        # gradients are of the full-data log density, whose curvature grows with n; with
        # momentum m, SGHMC's effective step is step_size / (1 - m)
        momentum = batch.get("momentum_decay", 0.9 if method == "sghmc" else 0.0)
        sgmcmc_step = _SGMCMC_STEP * (1.0 - momentum) if method == "sghmc" else _SGMCMC_STEP
        step_size = (sgmcmc_step if method in ("sgld", "sghmc") else _SGD_STEP) / n
    lr = {"init_step_size": step_size}
    if method in ("sgld", "sghmc"):
        thinning = int(opts.pop("thinning", 1))
        epochs = _sgmcmc_epochs(num_warmup, num_samples, thinning)
        kw = {
            "step_size_schedule": opts.pop("schedule", "constant"),
            "preconditioner": str(opts.pop("preconditioner", "None")),
        }
        if "cycle_length" in opts:
            kw["step_size_cycle_length_epochs"] = opts.pop("cycle_length")
        if "final_step_size" in opts:
            kw["final_step_size"] = opts.pop("final_step_size")
        cls = C.SGLDConfig if method == "sgld" else C.SGMCMCConfig
        if method == "sgld" and batch.get("momentum_decay", 0.0) != 0.0:
            raise ValueError("sgld has momentum_decay 0; use method='sghmc'")
        cfg = cls(
            **common,
            **batch,
            **lr,
            **kw,
            num_epochs=epochs,
            num_burnin_epochs=num_warmup,
            ensemble_freq=thinning,
            num_chains=num_chains,
            eval_freq=batch.get("eval_freq", epochs),
        )
        return driver.run_sgmcmc, cfg
    if method == "vi":
        from ppl_bnn.inference import vi

        guide = opts.pop("guide", "AutoNormal")
        _register_guide(vi, guide)
        cfg = C.VIConfig(
            **common,
            **{**batch, "eval_freq": batch.get("eval_freq", max(num_warmup, 1))},
            init_step_size=_VI_STEP if step_size is None else step_size,
            num_epochs=max(num_warmup, 1),
            vi_ensemble_size=num_samples,
            num_chains=num_chains,
            vi_guide=guide,
            vi_guide_rank=opts.pop("guide_rank", None),
            vi_sigma_init=opts.pop("init_scale", _VI_INIT_SCALE),
            optimizer=opts.pop("optimizer", "Adam"),
            init_strategy=opts.pop("init_strategy", "map"),
        )
        return driver.run_vi, cfg
    # sgd, map, ensemble: num_chains members
    cfg = C.EnsembleConfig(
        **common,
        **{**batch, "eval_freq": batch.get("eval_freq", max(num_warmup, 1))},
        **lr,
        num_epochs=max(num_warmup, 1),
        ensemble_size=num_chains,
    )
    name = "ensemble" if method == "ensemble" else "sgd"
    return (lambda cfg, **kw: driver.run_sgd(cfg, method=name, **kw)), cfg


# Default learning rates of the minibatch methods, times 1 / num_examples: the gradient
# is that of the whole-data log density (n times a per-example term), so a step of c / n
# moves standardised-scale parameters by O(c) per unit of per-example curvature. They suit
# standardised inputs; un-standardised data or a network far from unit scale need their
# own ``step_size``. SGD runs with momentum 0.9 (an effective step ten times larger).
_SGMCMC_STEP = 0.02
_SGD_STEP = 0.01
# VI: Adam's learning rate (cosine decay to 0) and the guide's initial scale, from the
# MAP (``init_strategy="map"``, :func:`ppl_bnn.inference.vi.find_map`): the means start
# where a Gaussian posterior's are, and Adam adapts the log scales (1e-3 -> 1 is about 7
# units: a few hundred steps at 0.05). A scale far above a coordinate's posterior sd
# makes the ELBO's gradient noisy enough to push the means off the MAP.
_VI_STEP = 0.05
_VI_INIT_SCALE = 1e-3


def _sgmcmc_epochs(num_burnin: int, num_samples: int, thinning: int) -> int:
    """The fewest epochs with ``num_samples`` sampling epochs under the original's rule."""
    from ppl_bnn.driver.sgmcmc import is_ensembling_epoch

    if thinning < 1:
        raise ValueError(f"thinning must be at least 1, got {thinning}")
    epoch, found = 0, 0
    while found < num_samples:
        found += is_ensembling_epoch(epoch, num_burnin, thinning)
        epoch += 1
    return epoch


def _register_guide(vi, name: str) -> None:
    """Make any NumPyro autoguide usable by name."""
    if name in vi.GUIDES:
        return
    from numpyro.infer import autoguide

    guide = getattr(autoguide, name, None)
    if not (isinstance(guide, type) and issubclass(guide, autoguide.AutoGuide)):
        names = sorted(
            k
            for k, v in vars(autoguide).items()
            if isinstance(v, type) and issubclass(v, autoguide.AutoGuide) and k != "AutoGuide"
        )
        raise ValueError(f"unknown guide {name!r}; NumPyro's autoguides are {', '.join(names)}")
    vi.GUIDES[name] = guide
