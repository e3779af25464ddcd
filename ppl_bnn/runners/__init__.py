"""Drivers that turn a configuration into a run directory, one per method."""

from ppl_bnn.runners.hmc import run_hmc

__all__ = ["run_hmc"]
