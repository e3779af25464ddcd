"""``ppl-bnn diagnose RUN_DIR...``: R-hat and ESS of one or several runs, through ArviZ.

Chains from all runs are merged (each run contributes its chains), truncated to the
shortest run. Prints the worst R-hat and lowest ESS in function space (per test point)
and parameter space (tracked coordinates), and writes the ArviZ data as netCDF.
"""

from __future__ import annotations

import json


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="R-hat / ESS of runs (ArviZ)", description=__doc__)
    p.add_argument("run_dirs", nargs="+", help="run directories (their chains are merged)")
    p.add_argument(
        "--output",
        default=None,
        help="netCDF file to write (default: diagnostics.nc in the first run dir)",
    )
    p.add_argument("--include_burn_in", action="store_true", help="keep burn-in draws")
    p.add_argument(
        "--plots",
        action="store_true",
        help="also draw R-hat histograms, traces and rank plots (PNG) beside the netCDF",
    )
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.diagnostics import diagnose_runs

    report = diagnose_runs(
        args.run_dirs, output=args.output, include_burn_in=args.include_burn_in, plots=args.plots
    )
    print(report.format())
    print(json.dumps({"netcdf": str(report.netcdf_path)}))
    return 0
