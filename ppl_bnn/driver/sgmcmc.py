"""``run_sgmcmc``: SGLD / SGHMC (constant or cyclical, optionally preconditioned), resumable.

Ensembling follows the original ``run_sgmcmc.py``: 0-based epoch ``e`` is a sample if
``e > num_burnin_epochs`` and ``(e - num_burnin_epochs + 1) % ensemble_freq == 0``, so with
the cyclical schedule and ``ensemble_freq`` equal to the cycle length every sample is
taken at the end of a cycle, where the step size is smallest. Each sample of each chain
updates the online Bayesian model average of the test predictions and is saved as a draw
(the HMC format, so ``ppl-bnn diagnose`` and ``--reference`` work on SG-MCMC runs).
"""

from __future__ import annotations

from typing import Any, Unpack

import jax
import numpy as np

from ppl_bnn.config import SGMCMCConfig
from ppl_bnn.declare.problem import Problem
from ppl_bnn.driver.loop import Algorithm, Evaluator, RunResult, Schedule, every
from ppl_bnn.driver.minibatch import (
    Members,
    build_epoch,
    epoch_step,
    initial_members,
    keys_from_disk,
    keys_to_disk,
    place_members,
    prepare,
    run_minibatch,
)
from ppl_bnn.driver.runner import RunOptions
from ppl_bnn.inference import sgmcmc
from ppl_bnn.inference.minibatch import grad_estimator, num_batches
from ppl_bnn.inference.schedules import sgmcmc_schedule
from ppl_bnn.methods import option_name

__all__ = ["build_sgmcmc", "is_ensembling_epoch", "method_name", "run_sgmcmc"]


def is_ensembling_epoch(epoch: int, num_burnin_epochs: int, ensemble_freq: int) -> bool:
    """The original's rule for 0-based ``epoch`` (see the module docstring)."""
    return epoch > num_burnin_epochs and (epoch - num_burnin_epochs + 1) % ensemble_freq == 0


def method_name(cfg: SGMCMCConfig) -> str:
    """``sgld`` or ``sghmc``, with ``-clr`` (cyclical) and ``-prec`` (RMSprop) suffixes."""
    name = "sgld" if cfg.momentum_decay == 0 else "sghmc"
    if cfg.step_size_schedule == "cyclical":
        name += "-clr"
    if str(cfg.preconditioner).lower() == "rmsprop":
        name += "-prec"
    return name


def _check(cfg: SGMCMCConfig) -> None:
    if cfg.num_chains < 1:
        raise ValueError(f"{option_name('num_chains')} must be at least 1, got {cfg.num_chains}")
    if cfg.ensemble_freq < 1:
        raise ValueError(
            f"{option_name('ensemble_freq')} must be at least 1, got {cfg.ensemble_freq}"
        )
    if not cfg.num_burnin_epochs >= 0:
        raise ValueError(
            f"{option_name('num_burnin_epochs')} must be non-negative, got {cfg.num_burnin_epochs}"
        )
    if str(cfg.preconditioner).lower() not in ("none", "rmsprop"):
        raise ValueError(
            f"unknown {option_name('preconditioner')}={cfg.preconditioner!r}; choose None or "
            "RMSprop"
        )
    if cfg.step_size_schedule not in ("constant", "cyclical"):
        raise ValueError(
            f"unknown {option_name('step_size_schedule')}={cfg.step_size_schedule!r}; choose "
            "constant or cyclical"
        )
    if cfg.step_size_cycle_length_epochs < 1:
        raise ValueError(f"{option_name('step_size_cycle_length_epochs')} must be at least 1")


def _step(algorithm: sgmcmc.SGMCMCAlgorithm):
    def step(rng_key, state, minibatch, step_size):
        return algorithm.step(rng_key, state, minibatch, step_size), ()

    return step


def build_sgmcmc(cfg: SGMCMCConfig, problem: Problem) -> Algorithm:
    """SGLD / SGHMC (constant or cyclical, optionally preconditioned) as an Algorithm."""
    _check(cfg)
    ld = problem.logdensity
    n = problem.train.num_examples
    nb = num_batches(n, cfg.batch_size)
    C = cfg.num_chains
    schedule = sgmcmc_schedule(
        cfg.step_size_schedule,
        init_step_size=cfg.init_step_size,
        final_step_size=cfg.final_step_size,
        burnin_steps=cfg.num_burnin_epochs * nb,
        cycle_length=cfg.step_size_cycle_length_epochs * nb,
    )
    algorithm = sgmcmc.build_algorithm(
        grad_estimator(ld, n),
        momentum_decay=cfg.momentum_decay,
        preconditioner=None if str(cfg.preconditioner).lower() == "none" else cfg.preconditioner,
        correction=cfg.preconditioner_correction,
    )
    epoch_fn = build_epoch(
        _step(algorithm),
        problem,
        cfg.batch_size,
        C,
        schedule=schedule,
        augment=cfg.data_augmentation,
    )
    evaluator = Evaluator.of(problem)
    sample = lambda t: is_ensembling_epoch(t, cfg.num_burnin_epochs, cfg.ensemble_freq)  # noqa: E731

    def init(key) -> Members:
        del key  # chain i is seeded with seed + i
        keys, positions = initial_members(problem, cfg.seed, C, cfg.init_checkpoint)
        return place_members(problem, keys, jax.vmap(algorithm.init)(positions))

    def stats(state: Members, info, t: int) -> dict[str, Any]:
        return {
            "step_size": float(schedule((t + 1) * nb - 1)),
            "log_prob": float(np.mean(evaluator.log_prob(state.inner.position))),
            "ensembled": bool(sample(t)),
        }

    def save(state: Members) -> dict[str, Any]:
        return {
            "member_keys": keys_to_disk(state.keys),
            "position": state.inner.position,
            "sampler_state": state.inner._replace(position=None),
        }

    def load(saved: dict) -> Members:
        inner = saved["sampler_state"]._replace(position=saved["position"])
        return place_members(problem, keys_from_disk(saved["member_keys"]), inner)

    save_every = every(cfg.save_freq, cfg.num_epochs)
    return Algorithm(
        name=method_name(cfg),
        unit="epoch",
        num_steps=cfg.num_epochs,
        init=init,
        step=epoch_step(epoch_fn, problem.mesh),
        schedule=Schedule(
            sample=sample,
            evaluate=every(cfg.eval_freq, cfg.num_epochs),
            save=lambda t: save_every(t) or (sample(t) and cfg.save_all_ensembled),
        ),
        positions=lambda s: s.inner.position,
        stats=stats,
        columns=("step_size", "log_prob", "ensembled"),
        save=save,
        load=load,
        summary=lambda s: {"num_chains": C},
    )


def run_sgmcmc(
    cfg: SGMCMCConfig, *, problem: Problem | None = None, **options: Unpack[RunOptions]
) -> RunResult:
    """Run (or resume) SG-MCMC as configured; returns the :class:`RunResult`.

    ``stop_after`` stops after that many epochs of this call, with a checkpoint (tests).
    """
    _check(cfg)
    problem = prepare(cfg, problem)
    return run_minibatch(build_sgmcmc(cfg, problem), cfg, problem, **options)
