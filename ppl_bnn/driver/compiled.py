"""Window-adapted HMC and NUTS in memory, as compiled scans.

A run without a run directory needs no checkpoint between iterations, so the warmup and
the sampling run as ``jax.lax.scan`` over chunks of ``chunk`` iterations: one compiled
call per chunk instead of one per iteration, and the host's bookkeeping (metrics lines,
site values, predictions, the online model average) done once per chunk on stacked
draws. Between chunks the host updates the progress bar and a Ctrl-C stops the run.
Warmup and sampling are one program (:func:`ppl_bnn.inference.warmup` ``transition``,
the iteration's index choosing the phase), so a run compiles the kernel once, not once
per phase; a chunk length that does not divide a phase adds one program for the
remainder.

The iterations are the checkpointing loop's (:func:`ppl_bnn.driver.loop.run`): the same
key split per iteration, the same kernels, the same adaptation, so for one seed the
draws, their statistics and log likelihoods are those of ``run_mcmc(...,
compiled=False)`` (bit for bit in the tests, on the CPU in float32 and float64; XLA could
in principle fuse a scanned step differently from a step compiled on its own). The test
predictions of a chunk's draws are computed in one batch, so they may differ from the
loop's in the last bit of a float32. What else differs: the training and test metrics
(``eval_freq``) are computed once, at the last iteration, and nothing is written.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ppl_bnn.declare.problem import Problem
from ppl_bnn.density.sharding import replicate
from ppl_bnn.driver.evaluator import Evaluator, check_initial_point
from ppl_bnn.driver.loop import Algorithm, check_record
from ppl_bnn.driver.result import Kept, RunResult, finish
from ppl_bnn.evaluation.bma import ensemble_init, ensemble_update
from ppl_bnn.evaluation.predictive import ParamTracker
from ppl_bnn.store.rundir import open_run_dir

__all__ = ["run_compiled"]

DEFAULT_CHUNK = 100


def _scanner(body, batch):
    """``run(carry, t0, length)``: ``length`` iterations of ``body(carry, t, batch)`` from
    ``t0``, compiled once per distinct length (a full chunk and the remainder). The data
    are an argument, not a constant of the program: a large training set is not copied
    into it, and runs on other data of the same shapes compile to the same program
    (which JAX's persistent compilation cache, when enabled, then reuses)."""

    def scan(carry, ts, batch):
        return jax.lax.scan(lambda c, t: body(c, t, batch), carry, ts)

    compiled = jax.jit(scan)

    def run(carry, t0: int, length: int):
        return compiled(carry, jnp.arange(t0, t0 + length, dtype=jnp.int32), batch)

    return run


def _placed(mesh, carry):
    """``carry`` replicated on the mesh (keys through their data), where a scan's outputs
    are: a first call with arrays placed elsewhere would compile a second program."""
    leaves, tree = jax.tree.flatten(carry)
    keys = [jnp.issubdtype(a.dtype, jax.dtypes.prng_key) for a in leaves]
    data = [jax.random.key_data(a) if k else a for a, k in zip(leaves, keys, strict=True)]
    placed = replicate(mesh, data)
    out = [
        jax.random.wrap_key_data(p, impl=jax.random.key_impl(a)) if k else p
        for p, a, k in zip(placed, leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(tree, out)


def _chunks(start: int, end: int, chunk: int):
    t = start
    while t < end:
        yield t, min(chunk, end - t)
        t += chunk


def run_compiled(
    alg: Algorithm,
    warmup,
    cfg,
    problem: Problem,
    *,
    progress: bool | None = None,
    log_likelihood: bool = False,
    chunk: int | None = None,
) -> RunResult:
    """Run window-adapted HMC or NUTS (``alg`` and ``warmup`` from
    :func:`ppl_bnn.driver.mcmc.build_mcmc`'s builder) in memory as compiled scans of
    ``chunk`` iterations (default :data:`DEFAULT_CHUNK`)."""
    from ppl_bnn.driver.hmc import mcmc_summary
    from ppl_bnn.driver.mcmc import (
        DivergenceStreak,
        MCMCState,
        iteration_record,
        kernel_sample_stats,
    )
    from ppl_bnn.driver.runner import run_record

    t_call = time.perf_counter()
    chunk = chunk or DEFAULT_CHUNK
    C, W, S = cfg.num_chains, cfg.num_warmup, cfg.num_samples
    total = W + S
    ld, mesh, batch = problem.logdensity, problem.mesh, problem.train
    rd = open_run_dir(cfg)
    config = run_record(cfg, problem)
    rd.start(config)
    evaluator = Evaluator.of(problem)
    ds = problem.dataset
    log_prior = jax.vmap(ld.log_prior)

    key = jax.random.key(cfg.seed)
    key, init_key = jax.random.split(key)
    state: MCMCState = alg.init(init_key)
    check_initial_point(evaluator, alg.positions(state), state)
    streak = DivergenceStreak()
    tracker = ParamTracker(jax.tree.map(lambda a: a[0], alg.positions(state)), cfg.num_param_draws)

    from blackjax.mcmc.hmc import HMCState

    chains = replicate(mesh, HMCState(state.position, state.logdensity, state.logdensity_grad))

    def body(carry, t, batch):
        key, chains, wstate, eps, imm = carry
        key, step_key = jax.random.split(key)
        keys = jax.random.split(step_key, C)
        new, wstate, eps, imm, info, used = warmup.transition(
            keys, chains, wstate, eps, imm, batch, t
        )
        out = (info, used, new.logdensity, log_prior(new.position), new.position)
        return (key, new, wstate, eps, imm), out

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=total, disable=not show, desc=alg.name)
    warned: set[str] = set()
    kept = Kept(True, log_likelihood)
    ens = ensemble_init((ds.x_test.shape[0], ds.num_outputs))
    clock = time.perf_counter()

    def records(host, t0: int, length: int) -> list[dict[str, Any]]:
        """The metrics records of a chunk from its host outputs ``(info, used, lp, prior)``."""
        info, used, lp, prior = host
        rows = []
        for i in range(length):
            at = lambda a, i=i: a[i]  # noqa: E731
            record = iteration_record(cfg, jax.tree.map(at, info), used[i], lp[i], prior[i], t0 + i)
            streak.update(record, C)
            check_record(alg, t0 + i, record, warned)
            rows.append({alg.unit: t0 + i + 1, **record})
        return rows

    try:
        # one program for warmup and sampling, its carry placed as the scan returns it:
        # every chunk of one length then runs the program compiled for the first
        run_chunk = _scanner(body, batch)
        carry: Any = _placed(
            mesh, (key, chains, state.adaptation, state.step_size, state.inverse_mass_matrix)
        )
        for t0, length in _chunks(0, W, chunk):
            carry, outs = run_chunk(carry, t0, length)
            for row in records(jax.device_get(outs[:4]), t0, length):
                rd.log(row[alg.unit], {**row, "num_ensembled": 0})
            bar.update(length)
        for t0, length in _chunks(W, total, chunk):
            carry, outs = run_chunk(carry, t0, length)
            positions = outs[4]  # (length, chains, ...)
            flat = jax.tree.map(lambda a: a.reshape((-1, *a.shape[2:])), positions)
            unflat = (
                lambda tree, n=length: jax.tree.map(  # noqa: E731
                    lambda a: np.asarray(a).reshape((n, C, *np.shape(a)[1:])), tree
                )
            )
            sites = unflat(evaluator.sites(flat))
            loglik = unflat(evaluator.pointwise(flat)) if log_likelihood else None
            preds = unflat(evaluator.test(flat)) if problem.has_test else None
            host = jax.device_get(outs[:4])
            host_info, host_used, host_lp = host[:3]
            rows = records(host, t0, length)
            for i in range(length):
                groups: dict[str, dict] = {
                    "sample_stats": kernel_sample_stats(
                        jax.tree.map(lambda a, i=i: a[i], host_info), host_used[i], host_lp[i]
                    )
                }
                if loglik is not None:
                    groups["log_likelihood"] = {k: v[i] for k, v in loglik.items()}
                test_preds = None if preds is None else preds[i]
                if test_preds is not None:
                    ens = ensemble_update(ens, test_preds, ds.task)
                kept.add({k: v[i] for k, v in sites.items()}, groups, test_preds)
                rows[i]["num_ensembled"] = int(ens.count)
            if t0 + length == total:  # the run's metrics, at its last iteration
                last = jax.tree.map(lambda a: a[-1], positions)
                last_preds = None if preds is None else preds[-1]
                rows[-1].update(
                    alg.kind.evaluation(evaluator, None, total - 1, last, last_preds, ens)
                )
            for row in rows:
                rd.log(row[alg.unit], row)
            bar.update(length)
        key, chains, wstate, eps, imm = carry
    finally:
        bar.close()
    final = MCMCState(*chains, wstate, eps, imm)  # type: ignore[call-arg]
    elapsed = time.perf_counter() - clock
    return finish(
        alg,
        problem,
        rd,
        evaluator,
        tracker,
        final,
        ens,
        elapsed,
        total,
        kept,
        config,
        None,
        mcmc_summary,
        t_call,
    )
