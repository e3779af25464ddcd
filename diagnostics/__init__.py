"""Convergence diagnostics through ArviZ, run-end checks, and plots."""

from ppl_bnn.diagnostics.checks import (
    RunDiagnostic,
    RunWarning,
    diagnose_run_dir,
)
from ppl_bnn.diagnostics.convergence import (
    DiagnosticsReport,
    diagnose_runs,
    load_run_draws,
    runs_to_datatree,
)
from ppl_bnn.diagnostics.datatree import from_run_dir, to_datatree

__all__ = [
    "DiagnosticsReport",
    "RunDiagnostic",
    "RunWarning",
    "diagnose_run_dir",
    "diagnose_runs",
    "from_run_dir",
    "load_run_draws",
    "runs_to_datatree",
    "to_datatree",
]
