"""Drivers that turn a configuration into a run directory, one per method.

``RUNNERS`` maps a method name to ``(config class, run function)``; ``run(method, cfg)``
is the one Python entry point for every backend.
"""

from __future__ import annotations

from typing import Any

from ppl_bnn.config import HMCConfig
from ppl_bnn.runners.hmc import run_hmc

__all__ = ["RUNNERS", "run", "run_hmc"]

RUNNERS: dict[str, tuple[type, Any]] = {
    "hmc": (HMCConfig, run_hmc),
}


def run(method: str, cfg, **kwargs) -> dict[str, Any]:
    """Run ``method`` (``"hmc"``, ...) with its config; returns the run's summary."""
    if method not in RUNNERS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(RUNNERS)}")
    return RUNNERS[method][1](cfg, **kwargs)
