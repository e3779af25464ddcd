"""``run_sgmcmc``: SGLD / SGHMC (constant or cyclical, optionally preconditioned), resumable.

Ensembling follows the original ``run_sgmcmc.py``: 0-based epoch ``e`` is a sample if
``e > num_burnin_epochs`` and ``(e - num_burnin_epochs + 1) % ensemble_freq == 0``, so with
the cyclical schedule and ``ensemble_freq`` equal to the cycle length every sample is
taken at the end of a cycle, where the step size is smallest. Each sample of each chain
updates the online Bayesian model average of the test predictions and is saved as a draw
(the HMC format, so ``ppl-bnn diagnose`` and ``--reference`` work on SG-MCMC runs).
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ppl_bnn.config import SGMCMCConfig
from ppl_bnn.declare.problem import Problem
from ppl_bnn.density.sharding import replicate
from ppl_bnn.driver.minibatch import (
    Evaluator,
    Timer,
    TrainingClock,
    build_epoch,
    finish_run,
    is_due,
    start_run,
)
from ppl_bnn.driver.rundir import ConsoleTable
from ppl_bnn.driver.sgd import check_minibatch_config, initial_members
from ppl_bnn.evaluation.bma import ensemble_init, ensemble_prediction, ensemble_update
from ppl_bnn.evaluation.predictive import ParamTracker, headline_columns
from ppl_bnn.evaluation.reference import run_predictions
from ppl_bnn.inference import sgmcmc
from ppl_bnn.inference.minibatch import grad_estimator, num_batches
from ppl_bnn.inference.schedules import sgmcmc_schedule

__all__ = ["is_ensembling_epoch", "method_name", "run_sgmcmc"]


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
    check_minibatch_config(cfg)
    if cfg.num_chains < 1:
        raise ValueError(f"--num_chains must be at least 1, got {cfg.num_chains}")
    if cfg.ensemble_freq < 1:
        raise ValueError(f"--ensemble_freq must be at least 1, got {cfg.ensemble_freq}")
    if not cfg.num_burnin_epochs >= 0:
        raise ValueError(f"--num_burnin_epochs must be non-negative, got {cfg.num_burnin_epochs}")
    if str(cfg.preconditioner).lower() not in ("none", "rmsprop"):
        raise ValueError(f"unknown --preconditioner={cfg.preconditioner!r}; choose None or RMSprop")
    if cfg.step_size_schedule not in ("constant", "cyclical"):
        raise ValueError(
            f"unknown --step_size_schedule={cfg.step_size_schedule!r}; choose constant or cyclical"
        )
    if cfg.step_size_cycle_length_epochs < 1:
        raise ValueError("--step_size_cycle_length_epochs must be at least 1")
    if not 0 <= cfg.momentum_decay < 1:
        raise ValueError(f"--momentum_decay must lie in [0, 1), got {cfg.momentum_decay}")


def _step(algorithm: sgmcmc.SGMCMCAlgorithm):
    def step(rng_key, state, minibatch, step_size):
        return algorithm.step(rng_key, state, minibatch, step_size), ()

    return step


def run_sgmcmc(
    cfg: SGMCMCConfig,
    *,
    problem: Problem | None = None,
    argv: list[str] | None = None,
    progress: bool | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) SG-MCMC as configured; returns the summary dictionary.

    ``stop_after`` stops after that many epochs of this call, with a checkpoint (tests).
    """
    _check(cfg)
    problem, rd = start_run(cfg, problem, argv)
    ld, ds = problem.logdensity, problem.dataset
    n = problem.train.num_examples
    nb = num_batches(n, cfg.batch_size)
    timer = Timer()
    C, method = cfg.num_chains, method_name(cfg)

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
    evaluator = Evaluator(problem)

    resumed = rd.latest()
    if resumed is None:
        keys, positions = initial_members(problem, cfg.seed, C, cfg.init_checkpoint)
        state = jax.vmap(algorithm.init)(positions)
        ens = ensemble_init((ds.x_test.shape[0], ds.num_outputs))
        start, elapsed = 0, 0.0
    else:
        start, saved = resumed
        start = int(start)  # a checkpoint stores numbers as numpy arrays
        keys = jax.random.wrap_key_data(jnp.asarray(saved["key"]))
        state = saved["sampler_state"]._replace(position=saved["position"])
        ens, elapsed = saved["ensemble"], float(saved["elapsed"])
        rd.truncate_metrics(start)
    state = replicate(problem.mesh, state)
    tracker = ParamTracker(jax.tree.map(lambda a: a[0], state.position), cfg.num_param_draws)

    table = ConsoleTable(
        ["epoch", "step_size", "log_prob", "ensembled", *headline_columns(ds.task), "time"],
        cfg.tabulate_freq,
        write=tqdm.write if rd.primary else lambda *_: None,
    )
    show = (sys.stderr.isatty() if progress is None else progress) and rd.primary
    bar = tqdm(total=cfg.num_epochs, initial=start, disable=not show, desc=method)
    end = cfg.num_epochs if stop_after is None else min(cfg.num_epochs, start + stop_after)
    clock = TrainingClock(elapsed)
    for epoch in range(start, end):
        keys, state, _ = epoch_fn(keys, state, np.int32(epoch))
        clock.tick()
        sample = is_ensembling_epoch(epoch, cfg.num_burnin_epochs, cfg.ensemble_freq)
        evaluate = is_due(epoch, cfg.eval_freq, cfg.num_epochs)
        save = (
            is_due(epoch, cfg.save_freq, cfg.num_epochs)
            or epoch + 1 == end
            or (sample and cfg.save_all_ensembled)
        )
        if sample or evaluate or save:
            epoch_time = clock.stop(state)
        if sample or evaluate:
            test_preds = evaluator.test(state.position)
        if sample:
            ens = ensemble_update(ens, test_preds, ds.task)
            rd.save_draw(
                epoch + 1,
                predictions=test_preds.astype(np.float32),
                params=tracker.take(state.position),
                burn_in=np.asarray(False),
            )
        if evaluate:
            record = {
                "epoch": epoch + 1,
                "step_size": float(schedule((epoch + 1) * nb - 1)),
                "log_prob": float(np.mean(evaluator.log_prob(state.position))),
                "ensembled": bool(sample),
                "num_ensembled": int(ens.count),
                "time": epoch_time,
                **evaluator.metrics(
                    evaluator.train(state.position),
                    test_preds,
                    ensemble_prediction(ens, ds.task) if ens.count else None,
                ),
            }
            rd.log(epoch + 1, record)
            table.row(record)
        if save:
            rd.save(
                epoch + 1,
                {
                    "step": epoch + 1,
                    "key": np.asarray(jax.random.key_data(keys)),
                    "position": state.position,
                    "sampler_state": state._replace(position=None),
                    "ensemble": ens,
                    "elapsed": clock.elapsed,
                    "param_names": tracker.names,
                    **({"test_predictions": test_preds} if sample else {}),
                },
            )
        if sample or evaluate or save:
            clock.restart()
        bar.update(1)
    bar.close()
    elapsed = clock.elapsed

    done = max(start, end)
    members = run_predictions(rd.path) if ens.count and rd.primary else None
    summary = finish_run(
        rd,
        cfg,
        problem,
        method=method,
        members=members,
        prediction=ensemble_prediction(ens, ds.task) if ens.count else None,
        epochs_done=done,
        extra={
            "num_chains": C,
            "num_ensembled": int(ens.count),
            "wall_time_training": elapsed,
            "wall_time_call": timer.elapsed(),
        },
    )
    rd.close()
    return summary
