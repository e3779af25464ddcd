"""Draws of any ppl_bnn method as an ArviZ ``DataTree`` (ArviZ 1.x, ``arviz_base``).

Groups (ArviZ's schema, https://python.arviz.org/en/latest/schema/schema.html):

* ``posterior``: every latent (and deterministic) sample site, constrained, with its
  model shape: ``(chain, draw, *site_shape)``;
* ``sample_stats``: per draw ``acceptance_rate``, ``diverging``, ``step_size``,
  ``n_steps``, ``tree_depth``, ``lp``, ``energy`` (ArviZ's names; the kernels' names
  ``is_divergent``, ``num_integration_steps``, ``logdensity`` are renamed);
* ``log_likelihood``: per observed site, one value per observed row ``(chain, draw, n)``
  (what ``az.loo`` reads), on the same dimension as ``observed_data``;
* ``observed_data``: the observed values;
* ``predictions``: function-space draws on the test inputs, ``test_prob`` ``(chain, draw,
  test_point, class)`` for classification, ``test_mean`` / ``test_std`` for regression
  (Izmailov et al. 2021, Sec. 5: the identifiable quantities whose R-hat means something
  for a network); ``posterior_predictive``: draws of the observed variable, if given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_STATS_NAMES", "from_run_dir", "to_datatree", "variable_name"]

# kernel info field -> ArviZ sample_stats name
SAMPLE_STATS_NAMES = {
    "acceptance_rate": "acceptance_rate",
    "is_divergent": "diverging",
    "diverging": "diverging",
    "step_size": "step_size",
    "num_integration_steps": "n_steps",
    "n_steps": "n_steps",
    "tree_depth": "tree_depth",
    "logdensity": "lp",
    "lp": "lp",
    "energy": "energy",
    "is_accepted": "is_accepted",
    "is_clamped": "trajectory_clamped",
    "trajectory_clamped": "trajectory_clamped",
    "is_turning": "is_turning",
}


def variable_name(site: str) -> str:
    """A site name as a ``DataTree`` variable name: ``/`` (reserved for group paths) becomes
    ``.``, so the BNN site ``net/Dense_0.kernel`` is the variable ``net.Dense_0.kernel``."""
    return site.replace("/", ".")


def _named(d: Mapping | None) -> dict:
    return {variable_name(str(k)): np.asarray(v) for k, v in (d or {}).items()}


def _prediction_vars(predictions, task: str | None) -> tuple[dict, dict]:
    if isinstance(predictions, Mapping):
        return {k: np.asarray(v) for k, v in predictions.items()}, {}
    preds = np.asarray(predictions)
    if preds.ndim != 4:
        raise ValueError(
            f"predictions must be (chain, draw, test_point, k), got shape {preds.shape}"
        )
    if task is None:
        sums = preds.sum(-1)
        task = (
            "classification"
            if preds.min() >= 0 and np.allclose(sums, 1.0, atol=1e-3)
            else "regression"
        )
    if task == "classification":
        return {"test_prob": preds}, {"test_prob": ["test_point", "class"]}
    if preds.shape[-1] != 2:
        raise ValueError(
            f"regression predictions hold (mean, std) in the last axis; got {preds.shape}"
        )
    return (
        {"test_mean": preds[..., 0], "test_std": preds[..., 1]},
        {"test_mean": ["test_point"], "test_std": ["test_point"]},
    )


def to_datatree(
    samples: Mapping[str, np.ndarray],
    *,
    sample_stats: Mapping[str, np.ndarray] | None = None,
    log_likelihood: Mapping[str, np.ndarray] | None = None,
    observed_data: Mapping[str, np.ndarray] | None = None,
    predictions=None,
    posterior_predictive: Mapping[str, np.ndarray] | None = None,
    coords: Mapping | None = None,
    dims: Mapping | None = None,
    task: str | None = None,
):
    """An ArviZ ``DataTree`` of a run's draws.

    Args:
        samples: site name -> ``(chain, draw, *site_shape)`` constrained values (a ``/``
            in a site name becomes ``.``: :func:`variable_name`).
        sample_stats: name -> ``(chain, draw)``; kernel names are mapped to ArviZ's
            (:data:`SAMPLE_STATS_NAMES`), other names are kept.
        log_likelihood: observed site -> ``(chain, draw, n_rows)`` (or ``(..., *shape)``).
        observed_data: observed site -> values ``(n_rows, ...)``.
        predictions: function-space draws ``(chain, draw, test_point, k)`` (class
            probabilities, or mean and std; ``task`` says which, default: probabilities
            when every row sums to one), or a dict name -> array kept as is.
        posterior_predictive: draws of observed sites, name -> ``(chain, draw, ...)``.
        coords, dims: as ``arviz.from_dict`` (dims of a variable exclude chain and draw).
            Observed sites get the dimension ``{site}_dim_0`` in ``log_likelihood``,
            ``observed_data`` and ``posterior_predictive`` unless ``dims`` names them.

    Returns:
        ``xarray.DataTree`` with the groups given; ``az.summary``, ``az.ess``,
        ``az.rhat``, ``az.plot_trace`` and (with ``log_likelihood``) ``az.loo`` work on it.

    Example:
        >>> import numpy as np
        >>> from ppl_bnn.diagnostics import to_datatree
        >>> rng = np.random.default_rng(0)
        >>> samples = {"w": rng.normal(size=(4, 100, 3)), "sigma": rng.gamma(2.0, size=(4, 100))}
        >>> dt = to_datatree(samples, sample_stats={"is_divergent": np.zeros((4, 100), bool)})
        >>> sorted(dt.children)
        ['posterior', 'sample_stats']
        >>> dt["posterior"]["w"].shape, list(dt["sample_stats"].data_vars)   # ArviZ's names
        ((4, 100, 3), ['diverging'])
    """
    import arviz as az

    dims = {variable_name(k): list(v) for k, v in (dims or {}).items()}
    coords = dict(coords or {})
    groups: dict[str, dict] = {}
    samples, log_likelihood = _named(samples), _named(log_likelihood)
    observed_data, posterior_predictive = _named(observed_data), _named(posterior_predictive)
    posterior = samples
    if posterior:
        shapes = {v.shape[:2] for v in posterior.values()}
        if len(shapes) > 1 or any(v.ndim < 2 for v in posterior.values()):
            raise ValueError(
                f"every sample site needs the same (chain, draw) leading axes; got {shapes}"
            )
        groups["posterior"] = posterior
    if sample_stats:
        stats = {}
        for k, v in sample_stats.items():
            stats[SAMPLE_STATS_NAMES.get(k, k)] = np.asarray(v)
        if "diverging" in stats:
            stats["diverging"] = stats["diverging"].astype(bool)
        groups["sample_stats"] = stats
    observed_names = set(log_likelihood or {}) | set(observed_data or {})
    observed_names |= set(posterior_predictive or {})
    for name in observed_names:
        if name not in dims:
            dims[name] = [f"{name}_dim_0"]
    if log_likelihood:
        groups["log_likelihood"] = {k: np.asarray(v) for k, v in log_likelihood.items()}
        for k, v in groups["log_likelihood"].items():
            extra = v.ndim - 2 - len(dims[k])
            if extra > 0:
                dims[k] = dims[k] + [f"{k}_dim_{i + 1}" for i in range(extra)]
    if observed_data:
        groups["observed_data"] = {k: np.asarray(v) for k, v in observed_data.items()}
    if posterior_predictive:
        groups["posterior_predictive"] = {k: np.asarray(v) for k, v in posterior_predictive.items()}
    pred_dims = None
    if predictions is not None:
        pred_vars, pred_dims = _prediction_vars(predictions, task)
        groups["predictions"] = pred_vars
    if not groups:
        raise ValueError("nothing to convert: no samples, stats, likelihood or predictions")
    # observed_data has no (chain, draw): its dims must not include the likelihood's extras
    obs_dims = {k: dims[k][: np.ndim(v)] for k, v in (observed_data or {}).items()}
    dims_all = {**dims}
    tree = az.from_dict(
        {g: v for g, v in groups.items() if g != "observed_data"},
        coords=coords,
        dims=dims_all,
        pred_dims=pred_dims or None,
    )
    if observed_data:
        obs = az.from_dict({"observed_data": groups["observed_data"]}, coords=coords, dims=obs_dims)
        tree["observed_data"] = obs["observed_data"]
    return tree


# ----------------------------------------------------------------- run dirs
def from_run_dir(path: str | os.PathLike, *, include_burn_in: bool = False):
    """The ArviZ ``DataTree`` of one run directory.

    ``posterior``: the model's sample sites (latent, constrained, and deterministic)
    from the run's sample store (``samples/sample_*.npz``,
    :class:`ppl_bnn.store.samples.SampleStore`) when it has one, else the tracked
    parameter coordinates of the draws (``weight`` ``(chain, draw, coordinate)``);
    ``predictions``: the function-space draws of ``draws/draw_*.npz`` (burn-in draws
    dropped unless ``include_burn_in``); ``sample_stats`` and ``log_likelihood``: what the
    run stored beside its samples (``samples/stats_*.npz``: the sampler's statistics;
    the per-row log likelihood of a run that kept it), if any.
    """
    return runs_to_datatree([path], include_burn_in=include_burn_in)


def _read_sample_store(path: Path) -> tuple[dict, dict] | None:
    """``(sites, stats groups)`` of a run's sample store, or ``None`` without one."""
    folder = path / "samples"
    if not folder.is_dir():
        return None
    from ppl_bnn.store.samples import SampleStore

    store = SampleStore(folder, writer=False)
    if not store.steps():
        return None
    steps, sites = store.read()
    return sites, store.read_stats(steps)


def load_run(path, *, include_burn_in: bool = False) -> dict:
    """A run directory's draws as arrays: ``predictions`` (or ``None``), ``samples``
    (site -> ``(chain, draw, ...)``), ``sample_stats`` and ``log_likelihood`` (name ->
    ``(chain, draw, ...)``, empty when not stored), ``task``."""
    from ppl_bnn.diagnostics.convergence import load_run_draws

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {path} does not exist")
    store = _read_sample_store(path)
    samples, groups = store if store is not None else (None, {})
    try:
        draws = load_run_draws(path, include_burn_in=include_burn_in)
    except ValueError as e:
        from ppl_bnn.store.checkpoint import CheckpointError

        if samples is None or isinstance(e, CheckpointError):  # a corrupt draw file is said
            raise
        draws = None
    out = {
        "samples": samples or {},
        "sample_stats": groups.get("sample_stats", {}),
        "log_likelihood": groups.get("log_likelihood", {}),
        "predictions": None,
        "task": None,
    }
    if draws is not None:
        out["predictions"] = draws["predictions"]
        out["task"] = draws["task"]
        if samples is None and draws["params"].shape[-1]:
            names = draws["param_names"] or [f"p{i}" for i in range(draws["params"].shape[-1])]
            out["samples"] = {"weight": draws["params"]}
            out["coords"] = {"coordinate": names}
    return out


def runs_to_datatree(run_dirs, *, include_burn_in: bool = False):
    """Merge the chains of one or several runs into one ``DataTree`` (:func:`to_datatree`).

    Each run contributes its chains; all are cut to the shortest run's number of draws.
    """
    runs = [load_run(d, include_burn_in=include_burn_in) for d in run_dirs]
    preds = [r["predictions"] for r in runs]
    if any(p is None for p in preds) and not all(p is None for p in preds):
        raise ValueError("some runs have function-space draws and some do not: cannot merge")
    lengths = [p.shape[1] for p in preds if p is not None]
    lengths += [v.shape[1] for r in runs for v in r["samples"].values()]
    if not lengths:
        raise ValueError(f"{run_dirs[0]} holds no draws")
    n = min(lengths)
    merged_preds = None
    if preds[0] is not None:
        shapes = {p.shape[2:] for p in preds}
        if len(shapes) > 1:
            raise ValueError(
                f"runs predict different test sets (shapes {sorted(shapes)}): cannot merge"
            )
        merged_preds = np.concatenate([p[:, :n] for p in preds], axis=0)
    names = [set(r["samples"]) for r in runs]
    common = set.intersection(*names) if names else set()
    samples = {
        k: np.concatenate([r["samples"][k][:, :n] for r in runs], axis=0) for k in sorted(common)
    }
    dims = {"weight": ["coordinate"]} if "weight" in samples else None
    coords = runs[0].get("coords") if "weight" in samples else None
    return to_datatree(
        samples,
        sample_stats=_merge(runs, "sample_stats", n),
        log_likelihood=_merge(runs, "log_likelihood", n),
        predictions=merged_preds,
        task=runs[0]["task"],
        dims=dims,
        coords=coords,
    )


def _merge(runs: list[dict], group: str, n: int) -> dict | None:
    """The chains of ``group`` of every run (the names all of them hold), cut to ``n``
    draws; ``None`` when a run has none or the draws do not line up with the samples."""
    names = set.intersection(*(set(r[group]) for r in runs))
    ok = all(
        r[group][k].shape[:2] == next(iter(r["samples"].values())).shape[:2]
        for r in runs
        for k in names
        if r["samples"]
    )
    if not names or not ok:
        return None
    return {k: np.concatenate([r[group][k][:, :n] for r in runs], axis=0) for k in sorted(names)}
