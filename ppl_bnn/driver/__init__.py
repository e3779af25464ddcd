"""Drivers: every method is an ``Algorithm`` (``init`` / ``step``) run by one loop
(:mod:`ppl_bnn.driver.loop`), into a run directory or in memory.

``run(method, cfg)`` is the one Python entry point for every method of
:data:`ppl_bnn.methods.REGISTRY` and returns a :class:`~ppl_bnn.driver.loop.RunResult`
(``.summary`` is the summary dictionary). ``RUNNERS`` is a view of the registry: method
name -> ``(config class, run function)``.
"""

from __future__ import annotations

from typing import Any

from ppl_bnn import methods
from ppl_bnn.driver.hmc import run_hmc
from ppl_bnn.driver.loop import RunResult
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
    m.name: (m.config, m.run) for m in methods.REGISTRY.values()
}
# Deprecated names of the families, kept for existing callers of ``RUNNERS[...]``: their
# run functions follow the config (``kernel``, ``momentum_decay``). ``run`` takes
# registry names only.
RUNNERS.update(
    mcmc=RUNNERS["nuts"],
    sgmcmc=RUNNERS["sghmc"],
    mfvi=RUNNERS["vi"],
)


def run(
    method: str,
    cfg,
    *,
    problem=None,
    progress: bool | None = None,
    stop_after: int | None = None,
    **kwargs,
) -> RunResult:
    """Run ``method`` (a name of :data:`ppl_bnn.methods.REGISTRY`) with its config
    ``cfg``; returns the :class:`RunResult`.

    ``cfg.dir`` empty runs in memory (nothing written); ``problem`` replaces the one the
    config declares; ``stop_after`` stops after that many steps (with a checkpoint).
    ``"hmc"`` runs window-adapted HMC for an :class:`~ppl_bnn.config.MCMCConfig`
    (``kernel="hmc"``) and the original 2021 recipe for an
    :class:`~ppl_bnn.config.HMCConfig`.
    """
    entry = methods.get(method)
    why = entry.describes(cfg)
    if why is not None:
        raise ValueError(f"cfg does not describe method {method!r}: {why}")
    return entry.run(cfg, problem=problem, progress=progress, stop_after=stop_after, **kwargs)
