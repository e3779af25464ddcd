"""``ppl-bnn diagnose RUN_DIR...``: R-hat and ESS of one or several runs, through ArviZ.

Chains from all runs are merged (each run contributes its chains), truncated to the
shortest run. Prints the worst R-hat and lowest ESS in function space (per test point)
and parameter space (tracked coordinates), and writes the ArviZ data as netCDF. Then
each MCMC run's own warnings, one line each: divergences after warmup, stuck chains,
R-hat above 1.01 or bulk ESS below 100 per chain, low E-BFMI, clamped trajectories and
saturated NUTS trees (what the run printed at its end).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import sys


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
    for line in warning_lines(args.run_dirs):
        print(line)
    print(json.dumps({"netcdf": str(report.netcdf_path)}))
    return 0


def warning_lines(run_dirs) -> list[str]:
    """``warning: ...`` per failed check of each run (prefixed by the run directory when
    there are several), or one line saying that none failed."""
    from ppl_bnn.diagnostics.checks import diagnose_run_dir, is_approximation

    lines: list[str] = []
    for run_dir in run_dirs:
        prefix = f"{run_dir}: " if len(run_dirs) > 1 else ""
        found = diagnose_run_dir(run_dir)
        lines.extend(f"{prefix}warning: {f.message}" for f in found)
        if not found:
            summary = _summary(run_dir)
            what = (
                "none apply (an approximation)"
                if is_approximation(summary.get("method"))
                else "none (divergences, stuck chains, R-hat, ESS, E-BFMI, trajectories)"
            )
            lines.append(f"{prefix}warnings: {what}")
    return lines


def _summary(run_dir) -> dict:
    from pathlib import Path

    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@contextlib.contextmanager
def run_warnings_as_lines(stream=None):
    """Inside, a run prints its end-of-run warnings as ``warning: ...`` lines on
    ``stream`` (default: stderr), as the commands show them, instead of raising
    :class:`~ppl_bnn.diagnostics.RunWarning` warnings (which ``-W error`` would turn into a
    failed command)."""
    token = PRINT_RUN_WARNINGS.set(stream or sys.stderr)
    try:
        yield
    finally:
        PRINT_RUN_WARNINGS.reset(token)


# where the run-end checks print their lines (``None``: they are Python warnings)
PRINT_RUN_WARNINGS: contextvars.ContextVar = contextvars.ContextVar(
    "ppl_bnn_print_run_warnings", default=None
)
