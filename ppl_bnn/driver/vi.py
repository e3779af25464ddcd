"""``run_vi``: mean-field (or other autoguide) variational inference, resumable.

As in the original ``run_vi.py``: ``test/*`` metrics are those of the variational mean,
``test/ens_*`` those of the average of ``--vi_ensemble_size`` predictive samples drawn
from the approximate posterior at each evaluation. Unlike the original,
``--mean_init_checkpoint`` only initialises a fresh run (it never overwrites a resumed
mean), and the objective is the tempered ELBO of :mod:`ppl_bnn.inference.vi`.
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ppl_bnn.config import VIConfig
from ppl_bnn.declare.problem import Problem
from ppl_bnn.driver.minibatch import (
    Evaluator,
    Timer,
    TrainingClock,
    average,
    build_epoch,
    finish_run,
    is_due,
    start_run,
)
from ppl_bnn.driver.rundir import ConsoleTable
from ppl_bnn.driver.sgd import check_minibatch_config
from ppl_bnn.evaluation.predictive import ParamTracker, headline_columns
from ppl_bnn.inference import vi
from ppl_bnn.inference.minibatch import num_batches
from ppl_bnn.inference.schedules import cosine

__all__ = ["run_vi"]


def _check(cfg: VIConfig) -> None:
    check_minibatch_config(cfg)
    if cfg.vi_ensemble_size < 1:
        raise ValueError(f"--vi_ensemble_size must be at least 1, got {cfg.vi_ensemble_size}")
    if cfg.vi_sigma_init <= 0:
        raise ValueError(f"--vi_sigma_init must be positive, got {cfg.vi_sigma_init}")
    if cfg.optimizer not in ("SGD", "Adam"):
        raise ValueError(f"unknown --optimizer={cfg.optimizer!r}; choose SGD or Adam")
    if cfg.vi_guide not in vi.GUIDES:
        raise ValueError(
            f"unknown --vi_guide={cfg.vi_guide!r}; choose one of {', '.join(vi.GUIDES)}"
        )


def _initial_mean(problem: Problem, cfg: VIConfig, key) -> dict:
    """Constrained site values the guide is centred at: a checkpoint's or a fresh init."""
    from ppl_bnn.driver.hmc import initial_positions

    path = cfg.mean_init_checkpoint or cfg.init_checkpoint
    ld = problem.logdensity
    if path is None:
        return ld.constrain(ld.init(key))
    stacked = initial_positions(problem, None, 1, path)
    return ld.constrain(jax.tree.map(lambda a: a[0], stacked))


def _svi_step(svi):
    def step(rng_key, state, minibatch, step_size):
        del rng_key, step_size  # SVI splits its own key; optax owns the schedule
        return svi.update(state, minibatch.x, minibatch.y)

    return step


def _to_disk(svi_state):
    return svi_state._replace(rng_key=np.asarray(jax.random.key_data(svi_state.rng_key)))


def _from_disk(saved):
    return saved._replace(rng_key=jax.random.wrap_key_data(jnp.asarray(saved.rng_key)))


def run_vi(
    cfg: VIConfig,
    *,
    problem: Problem | None = None,
    argv: list[str] | None = None,
    progress: bool | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Fit (or resume) the variational approximation as configured; returns the summary."""
    _check(cfg)
    problem, rd = start_run(cfg, problem, argv)
    ld, ds = problem.logdensity, problem.dataset
    n = problem.train.num_examples
    nb = num_batches(n, cfg.batch_size)
    timer = Timer()
    S, sites = cfg.vi_ensemble_size, ld.latent_sites

    schedule = cosine(cfg.init_step_size, cfg.num_epochs * nb)
    model = vi.minibatch_model(problem.model, num_examples=n, batch_size=cfg.batch_size)
    key = jax.random.key(cfg.seed)
    key, init_key, svi_key = jax.random.split(key, 3)
    guide = vi.build_guide(
        model,
        cfg.vi_guide,
        init_values=_initial_mean(problem, cfg, init_key),
        init_scale=cfg.vi_sigma_init,
        rank=cfg.vi_guide_rank,
    )
    svi = vi.build_svi(model, guide, vi.optimizer(cfg.optimizer, schedule, cfg.momentum_decay))
    x0, y0 = (np.asarray(a[: cfg.batch_size]) for a in (ds.x_train, ds.y_train))
    # init also sets up the guide (needed on resume too). Compiled, it takes ~1 s; run
    # eagerly, NumPyro's initialisation compiles each small op on its own (~20 s on CPU)
    svi_state = jax.jit(svi.init)(svi_key, x0, y0)
    epoch_fn = build_epoch(
        _svi_step(svi), problem, cfg.batch_size, 1, augment=cfg.data_augmentation
    )
    evaluator = Evaluator(problem)
    to_positions = jax.vmap(ld.unconstrain)

    @jax.jit
    def evaluation_positions(svi_state, rng_key):
        params = svi.get_params(svi_state)
        mean = ld.unconstrain(vi.mean_values(guide, params, sites))
        samples = to_positions(vi.sample_values(rng_key, guide, params, sites, S))
        return jax.tree.map(lambda a: a[None], mean), samples

    eval_base = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    resumed = rd.latest()
    if resumed is None:
        start, elapsed = 0, 0.0
    else:
        start, saved = resumed
        start = int(start)  # a checkpoint stores numbers as numpy arrays
        key = jax.random.wrap_key_data(jnp.asarray(saved["key"]))
        svi_state = _from_disk(saved["svi_state"])
        elapsed = float(saved["elapsed"])
        rd.truncate_metrics(start)
    states = jax.tree.map(lambda a: a[None], svi_state)
    mean, _ = evaluation_positions(svi_state, eval_base)
    tracker = ParamTracker(jax.tree.map(lambda a: a[0], mean), cfg.num_param_draws)

    table = ConsoleTable(
        ["epoch", "step_size", "elbo", *headline_columns(ds.task), "time"],
        cfg.tabulate_freq,
        write=tqdm.write if rd.primary else lambda *_: None,
    )
    show = (sys.stderr.isatty() if progress is None else progress) and rd.primary
    bar = tqdm(total=cfg.num_epochs, initial=start, disable=not show, desc="vi")
    end = cfg.num_epochs if stop_after is None else min(cfg.num_epochs, start + stop_after)
    sample_preds = None
    clock, keys = TrainingClock(elapsed), key[None]
    for epoch in range(start, end):
        keys, states, losses = epoch_fn(keys, states, np.int32(epoch))
        clock.tick()
        evaluate = is_due(epoch, cfg.eval_freq, cfg.num_epochs)
        save = is_due(epoch, cfg.save_freq, cfg.num_epochs) or epoch + 1 == end
        if not (evaluate or save):
            bar.update(1)
            continue
        epoch_time = clock.stop(states)
        svi_state = jax.tree.map(lambda a: a[0], states)
        if evaluate:
            mean, samples = evaluation_positions(svi_state, jax.random.fold_in(eval_base, epoch))
            sample_preds = evaluator.test(samples)
            record = {
                "epoch": epoch + 1,
                "step_size": float(schedule((epoch + 1) * nb - 1)),
                "elbo": -float(np.mean(losses)),
                "log_prob": float(evaluator.log_prob(mean)[0]),
                "time": epoch_time,
                **_posterior_scale(samples),
                **evaluator.metrics(
                    evaluator.train(mean), evaluator.test(mean), average(sample_preds, ds.task)
                ),
            }
            rd.log(epoch + 1, record)
            table.row(record)
        if save:
            mean, _ = evaluation_positions(svi_state, eval_base)
            rd.save(
                epoch + 1,
                {
                    "step": epoch + 1,
                    "key": np.asarray(jax.random.key_data(keys[0])),
                    "svi_state": _to_disk(svi_state),
                    "position": mean,  # the variational mean, usable as --init_checkpoint
                    "elapsed": clock.elapsed,
                    "param_names": tracker.names,
                },
            )
        clock.restart()
        bar.update(1)
    bar.close()
    elapsed = clock.elapsed

    done = max(start, end)
    if sample_preds is None:
        _, samples = evaluation_positions(svi_state, jax.random.fold_in(eval_base, done - 1))
        sample_preds = evaluator.test(samples)
    if done >= cfg.num_epochs:
        # the samples are independent draws of one chain: draw i holds sample i (so that
        # ``ppl-bnn diagnose`` reads them as one chain of vi_ensemble_size draws)
        params = tracker.take(samples)
        for i in range(S):
            rd.save_draw(
                i + 1,
                predictions=sample_preds[i : i + 1].astype(np.float32),
                params=params[i : i + 1],
                burn_in=np.asarray(False),
            )
    summary = finish_run(
        rd,
        cfg,
        problem,
        method="mfvi" if cfg.vi_guide == "AutoNormal" else f"vi-{cfg.vi_guide}",
        members=sample_preds,
        prediction=average(sample_preds, ds.task),
        epochs_done=done,
        extra={
            "vi_ensemble_size": S,
            "num_ensembled": S,
            "vi_guide": cfg.vi_guide,
            "wall_time_training": elapsed,
            "wall_time_call": timer.elapsed(),
        },
    )
    rd.close()
    return summary


def _posterior_scale(samples) -> dict[str, float]:
    """Mean and median over parameters of the sample standard deviation (the original
    logged a histogram of the variational stds)."""
    stds = np.concatenate(
        [np.asarray(jnp.std(v, axis=0)).ravel() for v in jax.tree.leaves(samples)]
    )
    return {"vi/mean_std": float(stds.mean()), "vi/median_std": float(np.median(stds))}
