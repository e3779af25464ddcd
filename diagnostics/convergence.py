"""Runs as ArviZ data; R-hat and ESS in function space and parameter space.

Function space follows Izmailov et al. (2021, Sec. 5): the "parameters" whose convergence
is checked are the predictive probabilities of every test point and class (for
regression, the predictive mean of every test point); they are low dimensional per
point and identifiable, unlike network weights, which are permutation symmetric.
Parameter space uses a fixed random subset of weight coordinates tracked during the run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppl_bnn.driver.rundir import RunDir

__all__ = ["DiagnosticsReport", "diagnose_runs", "load_run_draws", "runs_to_datatree"]


def load_run_draws(run_dir: str | os.PathLike, *, include_burn_in: bool = False) -> dict:
    """The draws one run saved: ``predictions`` ``(chains, draws, n, k)`` and ``params``
    ``(chains, draws, p)``, with ``param_names`` and the run's ``task``."""
    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise FileNotFoundError(f"run directory {rd.path} does not exist")
    draws = [d for _, d in rd.load_draws() if include_burn_in or not bool(d["burn_in"])]
    if not draws:
        raise ValueError(
            f"{rd.path} has no saved draws{'' if include_burn_in else ' after burn-in'}"
        )
    preds = np.stack([d["predictions"] for d in draws], axis=1)
    params = np.stack([d["params"] for d in draws], axis=1)
    task = str(draws[0]["task"]) if "task" in draws[0] else "classification"
    names = _param_names(rd)
    return {"predictions": preds, "params": params, "param_names": names, "task": task}


def _param_names(rd: RunDir) -> list[str] | None:
    from ppl_bnn.driver.checkpoint import latest_checkpoint, load_checkpoint

    path = latest_checkpoint(rd.checkpoints)
    if path is None:
        return None
    state = load_checkpoint(path)
    return list(state.get("param_names", [])) or None


def runs_to_datatree(run_dirs, *, include_burn_in: bool = False):
    """Merge the chains of one or several runs into one ArviZ ``DataTree``.

    Each run contributes its chains; all are cut to the shortest run's number of draws.
    Variables of the ``posterior`` group: ``test_prob`` ``(chain, draw, test_point, class)``
    for classification, or ``test_mean`` and ``test_std`` ``(chain, draw, test_point)`` for
    regression; and ``weight`` ``(chain, draw, coordinate)``, the tracked parameter
    coordinates by name.
    """
    import arviz as az

    runs = [load_run_draws(d, include_burn_in=include_burn_in) for d in run_dirs]
    shapes = {r["predictions"].shape[2:] for r in runs}
    if len(shapes) > 1:
        raise ValueError(
            f"runs predict different test sets (shapes {sorted(shapes)}): cannot merge"
        )
    n_draws = min(r["predictions"].shape[1] for r in runs)
    preds = np.concatenate([r["predictions"][:, :n_draws] for r in runs], axis=0)
    params = np.concatenate([r["params"][:, :n_draws] for r in runs], axis=0)
    task = runs[0]["task"]
    names = runs[0]["param_names"] or [f"p{i}" for i in range(params.shape[-1])]
    if task == "classification":
        posterior = {"test_prob": preds}
        dims = {"test_prob": ["test_point", "class"]}
    else:
        posterior = {"test_mean": preds[..., 0], "test_std": preds[..., 1]}
        dims = {"test_mean": ["test_point"], "test_std": ["test_point"]}
    coords = {}
    if params.shape[-1]:
        posterior["weight"] = params
        dims["weight"] = ["coordinate"]
        coords["coordinate"] = names
    return az.from_dict({"posterior": posterior}, dims=dims, coords=coords)


@dataclass
class DiagnosticsReport:
    """Worst-case convergence figures of merged runs (``format()`` prints them)."""

    num_chains: int
    num_draws: int
    entries: dict[str, dict] = field(default_factory=dict)
    netcdf_path: Path | None = None
    plots: list[Path] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"chains: {self.num_chains}   draws per chain: {self.num_draws}"]
        for var, e in self.entries.items():
            lines.append(
                f"{var:>10}: worst R-hat {e['max_rhat']:.4f} at {e['max_rhat_at']}   "
                f"lowest ESS {e['min_ess']:.1f} at {e['min_ess_at']}   "
                f"R-hat > 1.1: {100 * e['frac_rhat_gt_1.1']:.1f}%   "
                f"median R-hat {e['median_rhat']:.4f}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "num_chains": self.num_chains,
            "num_draws": self.num_draws,
            **self.entries,
            "netcdf": str(self.netcdf_path) if self.netcdf_path else None,
        }


def _locate(da, reducer) -> tuple[float, str]:
    values = np.asarray(da.values, dtype=float)
    if values.ndim == 0:
        return float(values), "-"
    finite = np.where(np.isfinite(values), values, np.inf if reducer is np.nanargmin else -np.inf)
    idx = np.unravel_index(int(reducer(finite)), values.shape)
    where = ", ".join(f"{d}={da.coords[d].values[i]}" for d, i in zip(da.dims, idx, strict=True))
    return float(values[idx]), where


def diagnose_runs(
    run_dirs, *, output=None, include_burn_in: bool = False, plots: bool = False
) -> DiagnosticsReport:
    """R-hat (rank-normalised split) and bulk ESS of merged runs; writes netCDF.

    ``output`` defaults to ``diagnostics.nc`` in the first run directory. The netCDF file
    holds the draws (``posterior``) and the per-variable R-hat and ESS (``rhat``, ``ess``
    groups), so it can be reopened with ``arviz.from_netcdf``.
    """
    import arviz as az
    import xarray as xr

    run_dirs = [Path(d) for d in run_dirs]
    dt = runs_to_datatree(run_dirs, include_burn_in=include_burn_in)
    post = dt["posterior"]
    if post.sizes["draw"] < 4:
        raise ValueError(
            f"R-hat and ESS need at least 4 draws per chain; these runs have {post.sizes['draw']}"
            " (after burn-in; --include_burn_in counts burn-in draws too)"
        )
    rhat, ess = az.rhat(dt), az.ess(dt)
    report = DiagnosticsReport(post.sizes["chain"], post.sizes["draw"])
    for var in post.data_vars:
        r_da, e_da = rhat[var], ess[var]
        max_r, max_at = _locate(r_da, np.nanargmax)
        min_e, min_at = _locate(e_da, np.nanargmin)
        r = np.asarray(r_da.values, float)
        report.entries[var] = {
            "max_rhat": max_r,
            "max_rhat_at": max_at,
            "median_rhat": float(np.nanmedian(r)),
            "frac_rhat_gt_1.1": float(np.mean(r > 1.1)),
            "min_ess": min_e,
            "min_ess_at": min_at,
        }
    out = Path(output) if output else run_dirs[0] / "diagnostics.nc"
    out.parent.mkdir(parents=True, exist_ok=True)
    full = xr.DataTree.from_dict(
        {
            "posterior": post.to_dataset(),
            "rhat": rhat.to_dataset() if hasattr(rhat, "to_dataset") else rhat,
            "ess": ess.to_dataset() if hasattr(ess, "to_dataset") else ess,
        }
    )
    tmp = out.with_name("." + out.name + ".tmp")
    full.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, out)
    report.netcdf_path = out
    (out.with_suffix(".json")).write_text(json.dumps(report.to_dict(), indent=2))
    if plots:
        report.plots = _plots(post, rhat, out.parent)
    return report


def _plots(post, rhat, folder: Path) -> list[Path]:
    from ppl_bnn.diagnostics.plots import plot_rank, plot_rhat_histogram, plot_trace

    paths = [plot_rhat_histogram({v: rhat[v].values for v in post.data_vars}, folder / "rhat.png")]
    if "weight" in post.data_vars:
        w = np.asarray(post["weight"].values)
        names = [str(c) for c in post["weight"].coords["coordinate"].values]
        paths.append(plot_trace(w, names, folder / "trace_weights.png"))
        paths.append(plot_rank(w, names, folder / "rank_weights.png"))
    return paths
