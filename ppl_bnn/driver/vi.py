"""``run_vi``: mean-field (or other autoguide) variational inference, resumable.

As in the original ``run_vi.py``: ``test/*`` metrics are those of the variational mean,
``test/ens_*`` those of the average of ``--vi_ensemble_size`` predictive samples drawn
from the approximate posterior at each evaluation. Unlike the original,
``--mean_init_checkpoint`` only initialises a fresh run (it never overwrites a resumed
mean), and the objective is the tempered ELBO of :mod:`ppl_bnn.inference.vi`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bnn.config import VIConfig
from ppl_bnn.declare.problem import Problem
from ppl_bnn.driver.loop import Algorithm, Evaluator, RunResult
from ppl_bnn.driver.minibatch import (
    Members,
    build_epoch,
    epoch_step,
    keys_from_disk,
    keys_to_disk,
    prepare,
    run_minibatch,
    training_schedule,
)
from ppl_bnn.inference import vi
from ppl_bnn.inference.minibatch import num_batches
from ppl_bnn.inference.schedules import cosine

__all__ = ["build_vi", "run_vi"]


def _check(cfg: VIConfig) -> None:
    # the guide's name and scale and the optimizer's name are checked where they are
    # built (``ppl_bnn.inference.vi``), before anything is written
    if cfg.vi_ensemble_size < 1:
        raise ValueError(f"--vi_ensemble_size must be at least 1, got {cfg.vi_ensemble_size}")


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


def build_vi(cfg: VIConfig, problem: Problem) -> Algorithm:
    """Variational inference with a NumPyro autoguide as a loop :class:`Algorithm`.

    The member is the variational mean (``positions``: its ``train/*``, ``test/*``
    metrics); the approximation is ``vi_ensemble_size`` samples of the guide, drawn at
    each evaluation with ``fold_in(key(seed), 1)`` folded with the epoch, whose average
    gives ``test/ens_*`` and, at the end, the draws (one chain).
    """
    _check(cfg)
    ld, ds = problem.logdensity, problem.dataset
    n = problem.train.num_examples
    nb = num_batches(n, cfg.batch_size)
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
    # NumPyro's guide set-up binds deterministic sites to its arguments, which leaks
    # tracers under jit: models with deterministic sites (small user models) init eagerly
    init = svi.init if _has_deterministic(problem.model, x0, y0) else jax.jit(svi.init)
    svi_state0 = init(svi_key, x0, y0)
    epoch_fn = build_epoch(
        _svi_step(svi), problem, cfg.batch_size, 1, augment=cfg.data_augmentation
    )
    evaluator = Evaluator.of(problem)
    to_positions = jax.vmap(ld.unconstrain)
    eval_base = jax.random.fold_in(jax.random.key(cfg.seed), 1)

    @jax.jit
    def mean_position(svi_state):
        params = svi.get_params(svi_state)
        return jax.tree.map(lambda a: a[None], ld.unconstrain(vi.mean_values(guide, params, sites)))

    @jax.jit
    def sample_positions(svi_state, rng_key):
        params = svi.get_params(svi_state)
        return to_positions(vi.sample_values(rng_key, guide, params, sites, S))

    one = lambda state: jax.tree.map(lambda a: a[0], state.inner)  # noqa: E731

    def approximation(state: Members, t: int):
        return sample_positions(one(state), jax.random.fold_in(eval_base, t))

    epoch_key = key

    def init(key) -> Members:  # type: ignore[no-redef]  # the Algorithm's init
        del key  # VI's keys come from the seed, as in the original
        return Members(epoch_key[None], jax.tree.map(lambda a: a[None], svi_state0))

    def stats(state: Members, losses, t: int) -> dict[str, Any]:
        return {
            "step_size": float(schedule((t + 1) * nb - 1)),
            "elbo": -float(np.mean(losses)),
            "log_prob": float(evaluator.log_prob(mean_position(one(state)))[0]),
            **_posterior_scale(approximation(state, t)),
        }

    def save(state: Members) -> dict[str, Any]:
        svi_state = one(state)
        return {
            "member_keys": keys_to_disk(state.keys),
            "svi_state": _to_disk(svi_state),
            "position": mean_position(svi_state),  # usable as --init_checkpoint
        }

    def load(saved: dict) -> Members:
        svi_state = _from_disk(saved["svi_state"])
        return Members(
            keys_from_disk(saved["member_keys"]), jax.tree.map(lambda a: a[None], svi_state)
        )

    return Algorithm(
        name="mfvi" if cfg.vi_guide == "AutoNormal" else f"vi-{cfg.vi_guide}",
        unit="epoch",
        num_steps=cfg.num_epochs,
        init=init,
        step=epoch_step(epoch_fn, problem.mesh),
        schedule=training_schedule(cfg),
        positions=lambda s: mean_position(one(s)),
        stats=stats,
        columns=("step_size", "elbo"),
        save=save,
        load=load,
        approximation=approximation,
        approximation_as_chains=False,
        summary=lambda s: {"vi_ensemble_size": S, "num_ensembled": S, "vi_guide": cfg.vi_guide},
    )


def run_vi(
    cfg: VIConfig,
    *,
    problem: Problem | None = None,
    argv: list[str] | None = None,
    progress: bool | None = None,
    stop_after: int | None = None,
    collect: bool | None = None,
    log_likelihood: bool = False,
) -> RunResult:
    """Fit (or resume) the variational approximation as configured; returns the result."""
    _check(cfg)
    problem = prepare(cfg, problem)
    return run_minibatch(
        build_vi(cfg, problem),
        cfg,
        problem,
        argv=argv,
        progress=progress,
        stop_after=stop_after,
        collect=collect,
        log_likelihood=log_likelihood,
    )


def _has_deterministic(model, x, y) -> bool:
    from numpyro import handlers
    from numpyro.infer.initialization import init_to_uniform

    def structure(x, y):
        traced = handlers.substitute(handlers.seed(model, 0), substitute_fn=init_to_uniform)
        trace = handlers.trace(traced).get_trace(x, y)
        found.extend(s["type"] == "deterministic" for s in trace.values())

    found: list[bool] = []
    jax.eval_shape(structure, x[:2], y[:2])
    return any(found)


def _posterior_scale(samples) -> dict[str, float]:
    """Mean and median over parameters of the sample standard deviation (the original
    logged a histogram of the variational stds)."""
    stds = np.concatenate(
        [np.asarray(jnp.std(v, axis=0)).ravel() for v in jax.tree.leaves(samples)]
    )
    return {"vi/mean_std": float(stds.mean()), "vi/median_std": float(np.median(stds))}
