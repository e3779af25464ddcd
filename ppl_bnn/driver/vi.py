"""``run_vi``: mean-field (or other autoguide) variational inference, resumable.

As in the original ``run_vi.py``: ``test/*`` metrics are those of the variational mean,
``test/ens_*`` those of the average of ``--vi_ensemble_size`` predictive samples drawn
from the approximate posterior at each evaluation. Unlike the original,
``--mean_init_checkpoint`` only initialises a fresh run (it never overwrites a resumed
mean), and the objective is the tempered ELBO of :mod:`ppl_bnn.inference.vi`.
"""

from __future__ import annotations

from typing import Any, Unpack

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bnn.config import VIConfig
from ppl_bnn.declare.problem import Problem
from ppl_bnn.driver.kinds import ApproximationKind
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
from ppl_bnn.driver.runner import RunOptions
from ppl_bnn.inference import vi
from ppl_bnn.inference.minibatch import num_batches
from ppl_bnn.inference.schedules import cosine
from ppl_bnn.methods import option_name

__all__ = ["build_vi", "run_vi"]


def _check(cfg: VIConfig) -> None:
    # the guide's name and scale and the optimizer's name are checked where they are
    # built (``ppl_bnn.inference.vi``), before anything is written
    if cfg.vi_ensemble_size < 1:
        raise ValueError(
            f"{option_name('vi_ensemble_size')} must be at least 1, got {cfg.vi_ensemble_size}"
        )
    if cfg.num_chains < 1:
        raise ValueError(f"{option_name('num_chains')} must be at least 1, got {cfg.num_chains}")
    if cfg.init_strategy not in ("uniform", "map"):
        raise ValueError(
            f"unknown {option_name('init_strategy')}={cfg.init_strategy!r}; choose uniform or map"
        )


def _initial_means(problem: Problem, cfg: VIConfig, keys) -> dict:
    """Unconstrained positions ``(num_chains, ...)`` the guides are centred at: a
    checkpoint's (chain by chain when it holds as many) or one fresh init per key, then,
    with ``init_strategy="map"``, L-BFGS to the MAP of the full-batch log density."""
    from ppl_bnn.driver.hmc import initial_positions

    path = cfg.mean_init_checkpoint or cfg.init_checkpoint
    ld = problem.logdensity
    if path is not None:
        positions = initial_positions(problem, None, cfg.num_chains, path)
    else:
        positions = jax.tree.map(lambda *a: jnp.stack(a), *[ld.init(k) for k in keys])
    if cfg.init_strategy == "map":
        positions = vi.find_map_stack(ld, positions, problem.train)
    return positions


def _svi_step(svi):
    def step(rng_key, state, minibatch, step_size):
        del rng_key, step_size  # SVI splits its own key; optax owns the schedule
        return svi.update(state, minibatch.x, minibatch.y)

    return step


def _to_disk(svi_state):
    return svi_state._replace(rng_key=np.asarray(jax.random.key_data(svi_state.rng_key)))


def _from_disk(saved):
    state = saved._replace(rng_key=jax.random.wrap_key_data(jnp.asarray(saved.rng_key)))
    if np.ndim(saved.rng_key) == 1:  # a one-fit checkpoint of ppl_bnn <= 0.1: no fit axis
        state = jax.tree.map(lambda a: a[None], state)
    return state


def build_vi(cfg: VIConfig, problem: Problem) -> Algorithm:
    """Variational inference with a NumPyro autoguide as a loop :class:`Algorithm`.

    ``num_chains`` independent fits run side by side (vectorised): fit ``i`` uses the
    seed ``seed + i`` for its initial mean, its minibatch order, its ELBO noise and its
    draws, as a one-fit run with that seed would. The members are the fits' variational
    means (``positions``: their ``train/*``, ``test/*`` metrics); the approximation is
    ``vi_ensemble_size`` samples of each fit's guide, drawn at each evaluation with
    ``fold_in(key(seed + i), 1)`` folded with the epoch, whose average gives
    ``test/ens_*`` and, at the end, the draws: one chain per fit, so that R-hat across
    fits says whether they agree.
    """
    _check(cfg)
    ld, ds = problem.logdensity, problem.dataset
    n = problem.train.num_examples
    nb = num_batches(n, cfg.batch_size)
    C, S, sites = cfg.num_chains, cfg.vi_ensemble_size, ld.latent_sites

    schedule = cosine(cfg.init_step_size, cfg.num_epochs * nb)
    model = vi.minibatch_model(problem.model, num_examples=n, batch_size=cfg.batch_size)
    # fit i: key(seed + i) -> (its epoch keys, its initial mean, its SVI key)
    split = [jax.random.split(jax.random.key(cfg.seed + i), 3) for i in range(C)]
    epoch_keys, init_keys, svi_keys = (jnp.stack([k[j] for k in split]) for j in range(3))

    def make_svi(init_values):
        guide = vi.build_guide(
            model,
            cfg.vi_guide,
            init_values=init_values,
            init_scale=cfg.vi_sigma_init,
            rank=cfg.vi_guide_rank,
        )
        opt = vi.optimizer(cfg.optimizer, schedule, cfg.momentum_decay)
        return guide, vi.build_svi(model, guide, opt)

    x0, y0 = (np.asarray(a[: cfg.batch_size]) for a in (ds.x_train, ds.y_train))
    # The guide the run uses: init sets it up (on resume too; its centre is then
    # irrelevant, the checkpoint holds the parameters). Compiled, it takes ~1 s; run
    # eagerly, NumPyro's initialisation compiles each small op on its own (~20 s on CPU).
    # NumPyro's guide set-up binds deterministic sites to its arguments, which leaks
    # tracers under jit: models with deterministic sites (small user models) init eagerly
    guide, svi = make_svi(ld.constrain(ld.init(init_keys[0])))
    eager = _has_deterministic(problem.model, x0, y0)
    (svi.init if eager else jax.jit(svi.init))(svi_keys[0], x0, y0)

    def init_fits(means):
        """The fits' initial SVI states, stacked: each from a guide of its own centre (a
        guide object used only here, so that no tracer leaks into the run's guide)."""
        constrained = jax.vmap(ld.constrain)(means)
        one = lambda key, values: make_svi(values)[1].init(key, x0, y0)  # noqa: E731
        if not eager:
            return jax.jit(jax.vmap(one))(svi_keys, constrained)
        states = [
            one(svi_keys[i], jax.tree.map(lambda a, i=i: a[i], constrained)) for i in range(C)
        ]
        return jax.tree.map(lambda *a: jnp.stack(a), *states)

    epoch_fn = build_epoch(
        _svi_step(svi), problem, cfg.batch_size, C, augment=cfg.data_augmentation
    )
    evaluator = Evaluator.of(problem)
    eval_bases = jnp.stack([jax.random.fold_in(jax.random.key(cfg.seed + i), 1) for i in range(C)])

    @jax.jit
    def mean_position(svi_states):
        def one(svi_state):
            return ld.unconstrain(vi.mean_values(guide, svi.get_params(svi_state), sites))

        return jax.vmap(one)(svi_states)

    @jax.jit
    def sample_positions(svi_states, t):
        def one(svi_state, base):
            draws = vi.sample_values(
                jax.random.fold_in(base, t), guide, svi.get_params(svi_state), sites, S
            )
            return jax.vmap(ld.unconstrain)(draws)

        per_fit = jax.vmap(one)(svi_states, eval_bases)  # (fit, sample, ...)
        return jax.tree.map(lambda a: a.reshape((C * S, *a.shape[2:])), per_fit)

    def approximation(state: Members, t: int):
        return sample_positions(state.inner, t)

    def init(key) -> Members:  # the Algorithm's init
        del key  # VI's keys come from the seed, fit i from seed + i
        return Members(epoch_keys, init_fits(_initial_means(problem, cfg, init_keys)))

    def stats(state: Members, losses, t: int) -> dict[str, Any]:
        return {
            "step_size": float(schedule((t + 1) * nb - 1)),
            "elbo": -float(np.mean(losses)),
            "log_prob": float(np.mean(evaluator.log_prob(mean_position(state.inner)))),
            **_posterior_scale(approximation(state, t), C),
        }

    def save(state: Members) -> dict[str, Any]:
        return {
            "member_keys": keys_to_disk(state.keys),
            "svi_state": _to_disk(state.inner),
            "position": mean_position(state.inner),  # usable as --init_checkpoint
        }

    def load(saved: dict) -> Members:
        return Members(keys_from_disk(saved["member_keys"]), _from_disk(saved["svi_state"]))

    return Algorithm(
        name="mfvi" if cfg.vi_guide == "AutoNormal" else f"vi-{cfg.vi_guide}",
        unit="epoch",
        num_steps=cfg.num_epochs,
        init=init,
        step=epoch_step(epoch_fn, problem.mesh),
        schedule=training_schedule(cfg),
        positions=lambda s: mean_position(s.inner),
        stats=stats,
        columns=("step_size", "elbo"),
        save=save,
        load=load,
        kind=ApproximationKind(approximation, as_chains=False, chains=C),
        summary=lambda s: {
            "vi_ensemble_size": S,
            "num_ensembled": C * S,
            "num_chains": C,
            "vi_guide": cfg.vi_guide,
        },
    )


def run_vi(
    cfg: VIConfig, *, problem: Problem | None = None, **options: Unpack[RunOptions]
) -> RunResult:
    """Fit (or resume) the variational approximation as configured; returns the result."""
    _check(cfg)
    problem = prepare(cfg, problem)
    return run_minibatch(build_vi(cfg, problem), cfg, problem, **options)


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


def _posterior_scale(samples, num_fits: int = 1) -> dict[str, float]:
    """Mean and median over parameters (and fits) of the sample standard deviation within
    each fit (the original logged a histogram of the variational stds)."""
    stds = np.concatenate(
        [
            np.asarray(jnp.std(v.reshape((num_fits, -1, *v.shape[1:])), axis=1)).ravel()
            for v in jax.tree.leaves(samples)
        ]
    )
    return {"vi/mean_std": float(stds.mean()), "vi/median_std": float(np.median(stds))}
