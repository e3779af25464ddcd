"""Convergence diagnostics through ArviZ, and plots."""

from ppl_bnn.diagnostics.convergence import (
    DiagnosticsReport,
    diagnose_runs,
    load_run_draws,
    runs_to_datatree,
)
from ppl_bnn.diagnostics.datatree import from_run_dir, to_datatree

__all__ = [
    "DiagnosticsReport",
    "diagnose_runs",
    "from_run_dir",
    "load_run_draws",
    "runs_to_datatree",
    "to_datatree",
]
