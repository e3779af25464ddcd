"""Drivers that turn a configuration into a run directory, one per method.

``RUNNERS`` maps a method name to ``(config class, run function)``; ``run(method, cfg)``
is the one Python entry point for every backend.
"""

from __future__ import annotations

from typing import Any

from ppl_bnn.config import EnsembleConfig, HMCConfig, SGDConfig, SGLDConfig, SGMCMCConfig, VIConfig
from ppl_bnn.driver.hmc import run_hmc
from ppl_bnn.driver.sgd import run_ensemble, run_sgd
from ppl_bnn.driver.sgmcmc import run_sgmcmc
from ppl_bnn.driver.vi import run_vi

__all__ = ["RUNNERS", "run", "run_ensemble", "run_hmc", "run_sgd", "run_sgmcmc", "run_vi"]

RUNNERS: dict[str, tuple[type, Any]] = {
    "hmc": (HMCConfig, run_hmc),
    "sgd": (SGDConfig, run_sgd),
    "ensemble": (EnsembleConfig, run_ensemble),
    "sgld": (SGLDConfig, run_sgmcmc),
    "sghmc": (SGMCMCConfig, run_sgmcmc),
    "sgmcmc": (SGMCMCConfig, run_sgmcmc),
    "mfvi": (VIConfig, run_vi),
    "vi": (VIConfig, run_vi),
}


def run(method: str, cfg, **kwargs) -> dict[str, Any]:
    """Run ``method`` (``"hmc"``, ...) with its config; returns the run's summary."""
    if method not in RUNNERS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(RUNNERS)}")
    return RUNNERS[method][1](cfg, **kwargs)
