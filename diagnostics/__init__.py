"""Convergence diagnostics through ArviZ, and plots."""

from ppl_bnn.diagnostics.convergence import (
    DiagnosticsReport,
    diagnose_runs,
    load_run_draws,
    runs_to_datatree,
)

__all__ = ["DiagnosticsReport", "diagnose_runs", "load_run_draws", "runs_to_datatree"]
