"""``run_sgd`` and ``run_ensemble``: MAP by SGD, and deep ensembles of it, resumable."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ppl_bnn.config import EnsembleConfig, SGDConfig
from ppl_bnn.declare.problem import Problem
from ppl_bnn.density.sharding import replicate
from ppl_bnn.driver.minibatch import (
    Evaluator,
    Timer,
    TrainingClock,
    average,
    build_epoch,
    finish_run,
    is_due,
    member_keys,
    split_member_keys,
    start_run,
)
from ppl_bnn.driver.rundir import ConsoleTable
from ppl_bnn.evaluation.predictive import ParamTracker, headline_columns
from ppl_bnn.inference import optimize
from ppl_bnn.inference.minibatch import logdensity_estimator, num_batches
from ppl_bnn.inference.schedules import cosine

__all__ = ["initial_members", "run_ensemble", "run_sgd"]


def check_minibatch_config(cfg: SGDConfig) -> None:
    """Refuse impossible settings before anything is built or written."""
    if cfg.num_epochs < 1:
        raise ValueError(f"--num_epochs must be at least 1, got {cfg.num_epochs}")
    if cfg.eval_freq < 1 or cfg.save_freq < 1:
        raise ValueError("--eval_freq and --save_freq must be at least 1")
    if cfg.init_step_size <= 0:
        raise ValueError(f"--init_step_size must be positive, got {cfg.init_step_size}")
    if cfg.batch_size < 1:
        raise ValueError(f"--batch_size must be positive, got {cfg.batch_size}")
    if not 0.0 <= cfg.momentum_decay < 1.0:
        raise ValueError(f"--momentum_decay must lie in [0, 1), got {cfg.momentum_decay}")
    for flag in ("init_checkpoint", "mean_init_checkpoint"):
        path = getattr(cfg, flag, None)
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"--{flag}={path} does not exist")


def initial_members(problem: Problem, seed: int, num: int, init_checkpoint: str | None):
    """``(keys, positions)``: member ``i`` starts from ``key(seed + i)`` or the checkpoint."""
    from ppl_bnn.driver.hmc import initial_positions

    keys = member_keys(seed, num)
    keys, init_keys = split_member_keys(keys)
    if init_checkpoint is not None:
        return keys, initial_positions(problem, None, num, init_checkpoint)
    ld = problem.logdensity
    positions = [ld.init(k) for k in init_keys]
    return keys, jax.tree.map(lambda *xs: jnp.stack(xs), *positions)


def _sgd_step(kernel):
    def step(rng_key, state, minibatch, step_size):
        del rng_key, step_size  # SGD is deterministic given the minibatch; optax owns the schedule
        return kernel(state, minibatch)

    return step


def run_sgd(
    cfg: SGDConfig,
    *,
    problem: Problem | None = None,
    argv: list[str] | None = None,
    progress: bool | None = None,
    stop_after: int | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """Train (or resume) SGD as configured; returns the summary dictionary.

    With ``ensemble_size`` members (``EnsembleConfig``) this is a deep ensemble: members
    use seeds ``seed, seed + 1, ...`` and are trained side by side; the reported
    ``test/ens_*`` metrics and ``predictions.npy`` are their average. ``stop_after`` stops
    after that many epochs of this call, with a checkpoint (for tests).
    """
    check_minibatch_config(cfg)
    M = getattr(cfg, "ensemble_size", 1)
    if M < 1:
        raise ValueError(f"--ensemble_size must be at least 1, got {M}")
    method = method or ("ensemble" if M > 1 else "sgd")
    problem, rd = start_run(cfg, problem, argv)
    ld, ds = problem.logdensity, problem.dataset
    nb = num_batches(problem.train.num_examples, cfg.batch_size)
    timer = Timer()

    opt = optimize.optimizer(cosine(cfg.init_step_size, cfg.num_epochs * nb), cfg.momentum_decay)
    kernel = optimize.build_kernel(logdensity_estimator(ld, problem.train.num_examples), opt)
    epoch_fn = build_epoch(
        _sgd_step(kernel),
        problem,
        cfg.batch_size,
        M,
        augment=cfg.data_augmentation,
        step_keys=False,
    )
    evaluator = Evaluator(problem)

    resumed = rd.latest()
    if resumed is None:
        keys, positions = initial_members(problem, cfg.seed, M, cfg.init_checkpoint)
        state = jax.vmap(lambda p: optimize.init(p, opt))(positions)
        start, elapsed = 0, 0.0
    else:
        start, saved = resumed
        start = int(start)  # a checkpoint stores numbers as numpy arrays
        keys = jax.random.wrap_key_data(jnp.asarray(saved["key"]))
        state = optimize.SGDState(saved["position"], saved["opt_state"])
        elapsed = float(saved["elapsed"])
        rd.truncate_metrics(start)
    state = replicate(problem.mesh, state)
    tracker = ParamTracker(jax.tree.map(lambda a: a[0], state.position), cfg.num_param_draws)

    table = ConsoleTable(
        ["epoch", "step_size", "log_prob", *headline_columns(ds.task), "time"],
        cfg.tabulate_freq,
        write=tqdm.write if rd.primary else lambda *_: None,
    )
    show = (sys.stderr.isatty() if progress is None else progress) and rd.primary
    bar = tqdm(total=cfg.num_epochs, initial=start, disable=not show, desc=method)
    end = cfg.num_epochs if stop_after is None else min(cfg.num_epochs, start + stop_after)
    schedule = cosine(cfg.init_step_size, cfg.num_epochs * nb)
    test_preds = None
    clock = TrainingClock(elapsed)
    for epoch in range(start, end):
        keys, state, _ = epoch_fn(keys, state, np.int32(epoch))
        clock.tick()
        last = epoch + 1 == end  # the last epoch of this call: always checkpointed
        evaluate = is_due(epoch, cfg.eval_freq, cfg.num_epochs)
        save = is_due(epoch, cfg.save_freq, cfg.num_epochs) or last
        if evaluate or save:
            epoch_time = clock.stop(state)
        if evaluate:
            test_preds = evaluator.test(state.position)
            train_preds = evaluator.train(state.position)
            record = {
                "epoch": epoch + 1,
                "step_size": float(schedule((epoch + 1) * nb - 1)),
                "log_prob": float(np.mean(evaluator.log_prob(state.position))),
                "time": epoch_time,
                **evaluator.metrics(train_preds, test_preds, average(test_preds, ds.task)),
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
                    "opt_state": state.opt_state,
                    "elapsed": clock.elapsed,
                    "param_names": tracker.names,
                },
            )
        if evaluate or save:
            clock.restart()
        bar.update(1)
    bar.close()
    elapsed = clock.elapsed

    done = max(start, end)
    if test_preds is None:  # nothing ran in this call (already complete): predict once
        test_preds = evaluator.test(state.position)
    if done >= cfg.num_epochs:
        rd.save_draw(
            cfg.num_epochs,
            predictions=test_preds.astype(np.float32),
            params=tracker.take(state.position),
            burn_in=np.asarray(False),
        )
    summary = finish_run(
        rd,
        cfg,
        problem,
        method=method,
        members=test_preds,
        prediction=average(test_preds, ds.task),
        epochs_done=done,
        extra={
            "ensemble_size": M,
            "num_ensembled": M,
            "wall_time_training": elapsed,
            "wall_time_call": timer.elapsed(),
        },
    )
    rd.close()
    return summary


def run_ensemble(cfg: EnsembleConfig, **kwargs) -> dict[str, Any]:
    """A deep ensemble: ``run_sgd`` with ``cfg.ensemble_size`` members (default 5)."""
    return run_sgd(cfg, method="ensemble", **kwargs)
