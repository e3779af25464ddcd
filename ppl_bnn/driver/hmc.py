"""``run_hmc``: a whole HMC run, resumable, from an ``HMCConfig`` to a run directory."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from ppl_bnn.config import HMCConfig
from ppl_bnn.declare.problem import Problem, build_problem
from ppl_bnn.density.distributed import check_same, sync
from ppl_bnn.density.sharding import replicate, to_host
from ppl_bnn.driver.checkpoint import load_checkpoint
from ppl_bnn.driver.rundir import ConsoleTable, RunDir
from ppl_bnn.evaluation.bma import ensemble_init, ensemble_prediction, ensemble_update
from ppl_bnn.evaluation.predictive import (
    ParamTracker,
    evaluate,
    headline_columns,
    mean_over_members,
)
from ppl_bnn.inference.hmc import (
    HMCState,
    MassMatrixEstimate,
    build_init,
    build_kernel,
    num_leapfrog_steps,
    split_keys,
)

__all__ = ["run_hmc", "initial_positions"]


def initial_positions(problem: Problem, key, num_chains: int, init_checkpoint: str | None) -> dict:
    """A stack of ``num_chains`` initial positions: fresh (one key per chain) or loaded.

    A checkpoint's positions are used chain by chain when it holds as many chains, else its
    first chain starts every chain.
    """
    ld = problem.logdensity
    if init_checkpoint is None:
        keys = jax.random.split(key, num_chains)
        return jax.tree.map(lambda *xs: jnp.stack(xs), *[ld.init(k) for k in keys])
    saved = load_checkpoint(init_checkpoint)
    position = saved.get("position") if isinstance(saved, dict) else None
    if position is None:
        raise ValueError(f"--init_checkpoint={init_checkpoint} holds no parameters ('position')")
    missing = set(ld.latent_sites) - set(position)
    if missing:
        raise ValueError(
            f"--init_checkpoint={init_checkpoint} lacks parameters "
            f"{sorted(missing)[:3]} of this model"
        )
    position = {k: np.asarray(position[k]) for k in ld.latent_sites}
    dtype = jnp.zeros(()).dtype

    def stack(name, v):
        base = ld.shapes[name]
        if v.shape == tuple(base):
            v = v[None]
        elif v.shape[1:] != tuple(base):
            raise ValueError(f"--init_checkpoint: {name} has shape {v.shape[1:]}, expected {base}")
        if v.shape[0] != num_chains:
            v = np.repeat(v[:1], num_chains, 0)
        return jnp.asarray(v, dtype)

    return {k: stack(k, v) for k, v in position.items()}


def _metrics(problem: Problem, train_preds, test_preds, ens) -> dict[str, float]:
    ds = problem.dataset
    out = {}
    for split, preds in (("train", train_preds), ("test", test_preds)):
        per_chain = [evaluate(p, ds, split) for p in preds]
        out.update({f"{split}/{k}": v for k, v in mean_over_members(per_chain).items()})
    if ens.count:
        ens_m = evaluate(ensemble_prediction(ens, ds.task), ds, "test")
        out.update({f"test/ens_{k}": v for k, v in ens_m.items()})
    return out


def run_hmc(
    cfg: HMCConfig,
    *,
    problem: Problem | None = None,
    argv: list[str] | None = None,
    progress: bool | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) full-batch HMC as configured; returns the summary dictionary.

    Everything is checked before anything is written. Restarting with the same ``--dir``
    resumes from the latest checkpoint and ends in exactly the state an uninterrupted run
    reaches. ``stop_after`` stops after that many iterations of this call (for tests).
    """
    if cfg.num_chains < 1:
        raise ValueError(f"--num_chains must be at least 1, got {cfg.num_chains}")
    if not 0 <= cfg.num_burn_in_iterations <= cfg.num_iterations:
        raise ValueError("--num_burn_in_iterations must lie between 0 and --num_iterations")
    num_leapfrog_steps(cfg.trajectory_len, cfg.step_size, cfg.max_num_leapfrog_steps)
    problem = problem or build_problem(cfg)
    ld, ds, mesh = problem.logdensity, problem.dataset, problem.mesh
    rd = RunDir(cfg.dir)
    C = cfg.num_chains
    init, kernel = build_init(ld), build_kernel(ld)
    predict = jax.jit(jax.vmap(ld.predict, in_axes=(0, None)))
    log_prior = jax.jit(jax.vmap(ld.log_prior))
    dtype = jnp.zeros(()).dtype

    resumed = rd.latest()
    check_same(
        0 if resumed is None else resumed[0],
        f"the processes see different checkpoints in --dir={cfg.dir}: it must be on a "
        "filesystem that every process shares",
    )
    if resumed is None:
        key = jax.random.key(cfg.seed)
        key, init_key = jax.random.split(key)
        positions = initial_positions(problem, init_key, C, cfg.init_checkpoint)
        rd.start(dataclasses.asdict(cfg), argv)  # inputs all read: now the run dir is written
        state = init(replicate(mesh, positions), problem.train)
        dim = ravel_pytree(jax.tree.map(lambda a: a[0], positions))[0].shape[0]
        step_size = np.full((C,), cfg.step_size)  # host float64: L is computed from it
        inv_mass = jnp.ones((C, dim), dtype)
        mass = MassMatrixEstimate.zeros(C, dim, dtype)
        ens = ensemble_init((ds.x_test.shape[0], ds.num_outputs))
        start, elapsed = 0, 0.0
    else:
        start, saved = resumed
        rd.start(dataclasses.asdict(cfg), argv)
        key = jax.random.wrap_key_data(jnp.asarray(saved["key"]))
        state = HMCState(saved["position"], saved["logdensity"], saved["logdensity_grad"])
        step_size, inv_mass = saved["step_size"], jnp.asarray(saved["inverse_mass_matrix"])
        mass = MassMatrixEstimate(*saved["mass_matrix_estimate"])
        ens = saved["ensemble"]
        elapsed = float(saved["elapsed"])
        rd.truncate_metrics(start)
    tracker = ParamTracker(jax.tree.map(lambda a: a[0], state.position), cfg.num_param_draws)

    table = ConsoleTable(
        [
            "iteration",
            "burn_in",
            "accept_prob",
            "accepted",
            "log_prob",
            *headline_columns(ds.task),
            "time",
        ],
        cfg.tabulate_freq,
        write=tqdm.write if rd.primary else lambda *_: None,
    )
    show = (sys.stderr.isatty() if progress is None else progress) and rd.primary
    bar = tqdm(total=cfg.num_iterations, initial=start, disable=not show, desc="hmc")
    end = cfg.num_iterations if stop_after is None else min(cfg.num_iterations, start + stop_after)
    last_end = time.perf_counter()
    for it in range(start, end):
        in_burnin = it < cfg.num_burn_in_iterations
        do_mh = not (cfg.no_mh or in_burnin)
        steps = [
            num_leapfrog_steps(cfg.trajectory_len, float(e), cfg.max_num_leapfrog_steps)
            for e in np.asarray(step_size)
        ]
        key, chain_keys = split_keys(key, C)
        t0 = time.perf_counter()
        state, info = kernel(
            chain_keys,
            replicate(mesh, state),
            problem.train,
            jnp.asarray(step_size, dtype),
            replicate(mesh, inv_mass),
            jnp.asarray(steps),
            jnp.asarray(do_mh),
        )
        state = jax.block_until_ready(state)
        it_time = time.perf_counter() - t0
        elapsed += it_time

        accept = np.asarray(info.acceptance_rate)
        if in_burnin and cfg.step_size_adaptation_speed > 0:
            factor = np.exp(
                cfg.step_size_adaptation_speed * (np.nan_to_num(accept) - cfg.target_accept_rate)
            )
            step_size = step_size * factor
        if in_burnin and cfg.adapt_mass_matrix:
            mass = mass.update(jax.vmap(lambda p: ravel_pytree(p)[0])(state.position))
            if it == cfg.num_burn_in_iterations - 1:
                inv_mass = mass.inverse_mass_matrix()

        test_preds = to_host(predict(state.position, problem.test.x), None)[:, : ds.x_test.shape[0]]
        train_preds = to_host(predict(state.position, problem.train.x), None)[
            :, : ds.x_train.shape[0]
        ]
        if not in_burnin:
            ens = ensemble_update(ens, test_preds, ds.task)
        now = time.perf_counter()
        wall, last_end = now - last_end, now
        lp = np.asarray(state.logdensity)
        prior = np.asarray(log_prior(state.position))
        record = {
            "iteration": it + 1,
            "burn_in": in_burnin,
            "do_mh": do_mh,
            "accept_prob": float(np.nanmean(accept)),
            "accepted": int(np.sum(info.is_accepted)),
            "log_prob": float(lp.mean()),
            "log_likelihood": float((lp - prior).mean()),
            "log_prior": float(prior.mean()),
            "step_size": float(np.mean(step_size)),
            "num_leapfrog_steps": int(max(steps)),
            "num_ensembled": int(ens.count),
            "time": it_time,
            # everything since the previous row: this trajectory, predictions, metrics,
            # and the previous iteration's draws, metrics line and checkpoint
            "iteration_wall": wall,
            **_metrics(problem, train_preds, test_preds, ens),
        }
        if C > 1:
            record["accept_prob_per_chain"] = accept.tolist()
        rd.save_draw(
            it + 1,
            predictions=test_preds.astype(np.float32),
            params=tracker.take(state.position),
            burn_in=np.asarray(in_burnin),
            task=np.asarray(ds.task),
        )
        rd.log(it + 1, record)
        rd.save(
            it + 1,
            {
                "step": it + 1,
                "key": np.asarray(jax.random.key_data(key)),
                "position": state.position,
                "logdensity": state.logdensity,
                "logdensity_grad": state.logdensity_grad,
                "step_size": step_size,
                "inverse_mass_matrix": inv_mass,
                "mass_matrix_estimate": tuple(mass),
                "ensemble": ens,
                "elapsed": elapsed,
                "param_names": tracker.names,
            },
        )
        table.row(record)
        bar.update(1)

    bar.close()
    sync("ppl_bnn.hmc.done")  # the primary has written every record
    summary = _summary(rd, cfg, problem, ens, elapsed)
    rd.close()
    return summary


def _summary(rd: RunDir, cfg: HMCConfig, problem: Problem, ens, elapsed: float) -> dict[str, Any]:
    records = rd.read_metrics()
    post = [r for r in records if not r["burn_in"]]
    last = records[-1] if records else {}
    summary = {
        "method": "hmc",
        "dataset": problem.dataset.name,
        "task": problem.dataset.task,
        "model": cfg.model_name,
        "num_parameters": problem.logdensity.num_parameters(),
        "num_chains": cfg.num_chains,
        "iterations_done": last.get("iteration", 0),
        "num_iterations": cfg.num_iterations,
        "num_ensembled": int(ens.count),
        "mean_accept_prob": float(np.mean([r["accept_prob"] for r in post])) if post else None,
        "wall_time_sampling": elapsed,
        "final": {k: v for k, v in last.items() if "/" in k},
        "complete": last.get("iteration", 0) >= cfg.num_iterations,
    }
    rd.write_summary(summary)
    return summary
