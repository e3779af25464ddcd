"""MAP by SGD and deep ensembles of it, as loop :class:`~ppl_bnn.driver.loop.Algorithm` s.

With ``ensemble_size`` members (``EnsembleConfig``) SGD is a deep ensemble: members use
seeds ``seed, seed + 1, ...`` and are trained side by side (vectorised); the reported
``test/ens_*`` metrics and ``predictions.npy`` are their average, and the final members
are saved as one draw of ``ensemble_size`` chains.
"""

from __future__ import annotations

from typing import Any, Unpack

import jax
import numpy as np

from ppl_bnn.config import EnsembleConfig, SGDConfig
from ppl_bnn.declare.problem import Problem
from ppl_bnn.driver.kinds import ApproximationKind
from ppl_bnn.driver.loop import Algorithm, Evaluator, RunResult
from ppl_bnn.driver.minibatch import (
    Members,
    build_epoch,
    check_minibatch_config,
    epoch_step,
    initial_members,
    keys_from_disk,
    keys_to_disk,
    place_members,
    prepare,
    run_minibatch,
    training_schedule,
)
from ppl_bnn.driver.runner import RunOptions
from ppl_bnn.inference import optimize
from ppl_bnn.inference.minibatch import logdensity_estimator, num_batches
from ppl_bnn.inference.schedules import cosine
from ppl_bnn.methods import option_name

__all__ = ["build_sgd", "check_minibatch_config", "initial_members", "run_ensemble", "run_sgd"]


def _sgd_step(kernel):
    def step(rng_key, state, minibatch, step_size):
        del rng_key, step_size  # SGD is deterministic given the minibatch; optax owns the schedule
        return kernel(state, minibatch)

    return step


def build_sgd(cfg: SGDConfig, problem: Problem, *, method: str | None = None) -> Algorithm:
    """SGD (``ensemble_size`` members) as a loop :class:`Algorithm`."""
    M = getattr(cfg, "ensemble_size", 1)
    if M < 1:
        raise ValueError(f"{option_name('ensemble_size')} must be at least 1, got {M}")
    ld = problem.logdensity
    nb = num_batches(problem.train.num_examples, cfg.batch_size)
    schedule = cosine(cfg.init_step_size, cfg.num_epochs * nb)
    opt = optimize.optimizer(schedule, cfg.momentum_decay)
    kernel = optimize.build_kernel(logdensity_estimator(ld, problem.train.num_examples), opt)
    epoch_fn = build_epoch(
        _sgd_step(kernel),
        problem,
        cfg.batch_size,
        M,
        augment=cfg.data_augmentation,
        step_keys=False,
    )
    evaluator = Evaluator.of(problem)

    def init(key) -> Members:
        del key  # member i is seeded with seed + i
        keys, positions = initial_members(problem, cfg.seed, M, cfg.init_checkpoint)
        return place_members(problem, keys, jax.vmap(lambda p: optimize.init(p, opt))(positions))

    def stats(state: Members, info, t: int) -> dict[str, Any]:
        return {
            "step_size": float(schedule((t + 1) * nb - 1)),
            "log_prob": float(np.mean(evaluator.log_prob(state.inner.position))),
        }

    def save(state: Members) -> dict[str, Any]:
        return {
            "member_keys": keys_to_disk(state.keys),
            "position": state.inner.position,
            "opt_state": state.inner.opt_state,
        }

    def load(saved: dict) -> Members:
        inner = optimize.SGDState(saved["position"], saved["opt_state"])
        return place_members(problem, keys_from_disk(saved["member_keys"]), inner)

    return Algorithm(
        name=method or ("ensemble" if M > 1 else "sgd"),
        unit="epoch",
        num_steps=cfg.num_epochs,
        init=init,
        step=epoch_step(epoch_fn, problem.mesh),
        schedule=training_schedule(cfg),
        positions=lambda s: s.inner.position,
        stats=stats,
        columns=("step_size", "log_prob"),
        save=save,
        load=load,
        kind=ApproximationKind(lambda s, t: s.inner.position),
        summary=lambda s: {"ensemble_size": M, "num_ensembled": M},
    )


def run_sgd(
    cfg: SGDConfig,
    *,
    method: str | None = None,
    problem: Problem | None = None,
    **options: Unpack[RunOptions],
) -> RunResult:
    """Train (or resume) SGD as configured; returns the :class:`RunResult`.

    ``options``: :class:`~ppl_bnn.driver.runner.RunOptions` (``stop_after`` stops after
    that many epochs of this call, with a checkpoint). ``method`` is the registry name
    recorded with the run (``"ensemble"`` for a deep ensemble).
    """
    problem = prepare(cfg, problem)
    return run_minibatch(build_sgd(cfg, problem, method=method), cfg, problem, **options)


def run_ensemble(cfg: EnsembleConfig, **kwargs) -> RunResult:
    """A deep ensemble: ``run_sgd`` with ``cfg.ensemble_size`` members (default 5)."""
    return run_sgd(cfg, method="ensemble", **kwargs)
