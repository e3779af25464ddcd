"""Drivers: every method is an ``Algorithm`` (``init`` / ``step``) run by one loop
(:mod:`ppl_bnn.driver.loop`), into a run directory or in memory.

``RUNNERS`` maps a method name to ``(config class, run function)``; ``run(method, cfg)``
is the one Python entry point for every backend and returns a
:class:`~ppl_bnn.driver.loop.RunResult` (``.summary`` is the summary dictionary).
"""

from __future__ import annotations

from typing import Any

from ppl_bnn.config import (
    EnsembleConfig,
    HMCConfig,
    MCMCConfig,
    SGDConfig,
    SGLDConfig,
    SGMCMCConfig,
    VIConfig,
)
from ppl_bnn.driver.hmc import run_hmc
from ppl_bnn.driver.loop import RunResult
from ppl_bnn.driver.mcmc import run_mcmc
from ppl_bnn.driver.sgd import run_ensemble, run_sgd
from ppl_bnn.driver.sgmcmc import run_sgmcmc
from ppl_bnn.driver.vi import run_vi

__all__ = [
    "RUNNERS",
    "RunResult",
    "run",
    "run_ensemble",
    "run_hmc",
    "run_sgd",
    "run_sgmcmc",
    "run_vi",
]

RUNNERS: dict[str, tuple[type, Any]] = {
    "hmc": (HMCConfig, run_hmc),
    "nuts": (MCMCConfig, run_mcmc),
    "mcmc": (MCMCConfig, run_mcmc),
    "sgd": (SGDConfig, run_sgd),
    "ensemble": (EnsembleConfig, run_ensemble),
    "sgld": (SGLDConfig, run_sgmcmc),
    "sghmc": (SGMCMCConfig, run_sgmcmc),
    "sgmcmc": (SGMCMCConfig, run_sgmcmc),
    "mfvi": (VIConfig, run_vi),
    "vi": (VIConfig, run_vi),
}


def run(
    method: str,
    cfg,
    *,
    problem=None,
    progress: bool | None = None,
    stop_after: int | None = None,
    **kwargs,
) -> RunResult:
    """Run ``method`` (``"hmc"``, ...) with its config; returns the :class:`RunResult`.

    ``cfg.dir`` empty runs in memory (nothing written); ``problem`` replaces the one the
    config declares; ``stop_after`` stops after that many steps (with a checkpoint)."""
    if method not in RUNNERS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(RUNNERS)}")
    return RUNNERS[method][1](
        cfg, problem=problem, progress=progress, stop_after=stop_after, **kwargs
    )
