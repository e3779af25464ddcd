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

from ppl_bnn.diagnostics import fast
from ppl_bnn.store.rundir import RunDir

__all__ = ["DiagnosticsReport", "diagnose_runs", "load_run_draws", "runs_to_datatree"]


def runs_to_datatree(run_dirs, *, include_burn_in: bool = False):
    """Merge the chains of one or several runs into one ArviZ ``DataTree``: the model's
    sites (or tracked weight coordinates) in ``posterior``, the function-space draws in
    ``predictions`` (``ppl_bnn.diagnostics.datatree.runs_to_datatree``)."""
    from ppl_bnn.diagnostics.datatree import runs_to_datatree as convert

    return convert(run_dirs, include_burn_in=include_burn_in)


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
    from ppl_bnn.store.checkpoint import latest_checkpoint, load_checkpoint

    path = latest_checkpoint(rd.checkpoints)
    if path is None:
        return None
    state = load_checkpoint(path)
    return list(state.get("param_names", [])) or None


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
        if self.num_chains < 2:
            lines.append(
                "R-hat: not computed (one chain: R-hat compares chains; "
                "run two or more chains or pass several run directories)"
            )
        for var, e in self.entries.items():
            ess = f"lowest ESS {e['min_ess']:.1f} at {e['min_ess_at']}"
            if e["max_rhat"] is None:
                lines.append(f"{var:>10}: {ess}")
                continue
            lines.append(
                f"{var:>10}: worst R-hat {e['max_rhat']:.4f} at {e['max_rhat_at']}   "
                f"{ess}   R-hat > 1.1: {100 * e['frac_rhat_gt_1.1']:.1f}%   "
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

    The figures are ArviZ's (``az.rhat``, ``az.ess``), computed for all of a variable's
    coordinates at once (``ppl_bnn.diagnostics.fast``).

    ``output`` defaults to ``diagnostics.nc`` in the first run directory. The netCDF file
    holds the draws (``posterior``) and the per-variable R-hat and ESS (``rhat``, ``ess``
    groups), so it can be reopened with ``arviz.from_netcdf``.
    """
    import xarray as xr

    run_dirs = [Path(d) for d in run_dirs]
    dt = runs_to_datatree(run_dirs, include_burn_in=include_burn_in)
    groups = [g for g in ("predictions", "posterior") if g in dt.children]
    first = dt[groups[0]]
    chains, draws = first.sizes["chain"], first.sizes["draw"]
    if draws < 4:
        raise ValueError(
            f"R-hat and ESS need at least 4 draws per chain; these runs have {draws}"
            " (after burn-in; --include_burn_in counts burn-in draws too)"
        )
    report = DiagnosticsReport(chains, draws)
    rhats, esss = {}, {}
    for group in groups:
        ds = dt[group].to_dataset()
        ess = _per_variable(ds, fast.ess_bulk)
        rhat = _per_variable(ds, fast.rhat) if chains >= 2 else None
        for var in dt[group].data_vars:
            e_da = ess[var]
            min_e, min_at = _locate(e_da, np.nanargmin)
            entry = {"min_ess": min_e, "min_ess_at": min_at, "group": group}
            esss[var] = e_da
            if rhat is None:
                entry.update(max_rhat=None, max_rhat_at=None, median_rhat=None)
                entry["frac_rhat_gt_1.1"] = None
            else:
                r_da = rhat[var]
                rhats[var] = r_da
                max_r, max_at = _locate(r_da, np.nanargmax)
                r = np.asarray(r_da.values, float)
                entry.update(
                    max_rhat=max_r,
                    max_rhat_at=max_at,
                    median_rhat=float(np.nanmedian(r)),
                )
                entry["frac_rhat_gt_1.1"] = float(np.mean(r > 1.1))
            report.entries[var] = entry
    out = Path(output) if output else run_dirs[0] / "diagnostics.nc"
    out.parent.mkdir(parents=True, exist_ok=True)
    tree = {g: dt[g].to_dataset() for g in groups}
    tree["ess"] = xr.Dataset({k: v.variable for k, v in esss.items()})
    if rhats:
        tree["rhat"] = xr.Dataset({k: v.variable for k, v in rhats.items()})
    full = xr.DataTree.from_dict(tree)
    tmp = out.with_name("." + out.name + ".tmp")
    full.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, out)
    report.netcdf_path = out
    (out.with_suffix(".json")).write_text(json.dumps(report.to_dict(), indent=2))
    if plots:
        report.plots = _plots(dt, rhats, out.parent)
    return report


def _per_variable(ds, figure):
    """``figure`` (``ppl_bnn.diagnostics.fast``) of every variable of ``ds`` over its
    ``chain`` and ``draw`` dimensions, as a ``Dataset`` shaped as ``az.ess``/``az.rhat``
    return it (one array per variable, without the sample dimensions)."""
    import xarray as xr

    def over_last_two(values):
        return figure(np.moveaxis(values, (-2, -1), (0, 1)))

    return xr.Dataset(
        {
            name: xr.apply_ufunc(
                over_last_two, da, input_core_dims=[["chain", "draw"]], output_core_dims=[[]]
            )
            for name, da in ds.data_vars.items()
        }
    )


def _plots(dt, rhats: dict, folder: Path) -> list[Path]:
    from ppl_bnn.diagnostics.plots import plot_rank, plot_rhat_histogram, plot_trace

    paths = []
    if rhats:
        paths.append(
            plot_rhat_histogram({v: r.values for v, r in rhats.items()}, folder / "rhat.png")
        )
    post = dt["posterior"] if "posterior" in dt.children else None
    if post is not None and "weight" in post.data_vars:
        w = np.asarray(post["weight"].values)
        names = [str(c) for c in post["weight"].coords["coordinate"].values]
        paths.append(plot_trace(w, names, folder / "trace_weights.png"))
        paths.append(plot_rank(w, names, folder / "rank_weights.png"))
    return paths
