"""HMC and NUTS with Stan's window adaptation, as a loop :class:`~ppl_bnn.driver.loop.Algorithm`.

The first ``num_warmup`` iterations run :func:`ppl_bnn.inference.warmup.build_window_adaptation`
one iteration at a time (dual-averaging step size, windowed mass matrix; every piece of
adaptation state is in the checkpoint, so a resumed run is bit for bit the uninterrupted
one); the last warmup iteration fixes the step size and the inverse mass matrix, and the
following ``num_samples`` iterations sample with them and are the posterior samples.
``kernel="hmc"`` is the trajectory-length rule of :mod:`ppl_bnn.inference.warmup`
(``L`` clamped to ``max_num_steps``, counted, never fatal), ``kernel="nuts"`` BlackJAX's
NUTS.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Unpack

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ppl_bnn.config import MCMCConfig
from ppl_bnn.declare.problem import Problem, build_problem
from ppl_bnn.density.sharding import replicate
from ppl_bnn.driver import starts
from ppl_bnn.driver.loop import Algorithm, Evaluator, RunResult, Schedule, every
from ppl_bnn.driver.runner import RunOptions, run_from_config
from ppl_bnn.inference import warmup as warmup_lib
from ppl_bnn.inference.hmc import build_init

__all__ = ["MCMCState", "build_mcmc", "run_mcmc"]


def _register_checkpoint_types() -> None:
    """BlackJAX's adaptation states travel in checkpoints (inside the window state)."""
    from blackjax.adaptation.mass_matrix import MassMatrixAdaptationState, WelfordAlgorithmState
    from blackjax.adaptation.step_size import DualAveragingAdaptationState

    from ppl_bnn.store import checkpoint

    if hasattr(checkpoint, "register_type"):
        for t in (MassMatrixAdaptationState, WelfordAlgorithmState, DualAveragingAdaptationState):
            checkpoint.register_type(t)


class MCMCState(NamedTuple):
    """Chains (a BlackJAX ``HMCState``'s fields), the adaptation state, and the step size
    and inverse mass matrix the sampling iterations use (set at the end of the warmup)."""

    position: Any
    logdensity: Any
    logdensity_grad: Any
    adaptation: warmup_lib.WindowAdaptationState
    step_size: Any
    inverse_mass_matrix: Any


def check_config(cfg: MCMCConfig, init_from: Any = None) -> None:
    if cfg.kernel not in ("hmc", "nuts"):
        raise ValueError(f"unknown kernel {cfg.kernel!r}; choose hmc or nuts")
    if cfg.num_warmup < 0 or cfg.num_samples < 1:
        raise ValueError("num_warmup must be >= 0 and num_samples >= 1")
    if cfg.num_chains < 1:
        raise ValueError(f"num_chains must be at least 1, got {cfg.num_chains}")
    if cfg.target_accept is not None and not 0 < cfg.target_accept < 1:
        raise ValueError(f"target_accept must lie in (0, 1), got {cfg.target_accept}")
    starts.check_strategy(cfg.init_strategy, cfg.init_from or init_from)
    if cfg.step_size is not None and cfg.step_size <= 0:
        raise ValueError(f"step_size must be positive, got {cfg.step_size}")


#: consecutive iterations in which every chain's proposal diverged before a run stops
DIVERGENT_PATIENCE = 200


class DivergenceStreak:
    """Counts consecutive iterations in which every chain's proposal diverged with
    acceptance probability 0 (a NaN proposal counts as 0); past
    :data:`DIVERGENT_PATIENCE` the record gets an ``"_error"`` and the run stops (a log
    density NaN or infinite around the chains: the step-size adaptation cannot help)."""

    def __init__(self) -> None:
        self.count = 0

    def update(self, record: dict[str, Any], num_chains: int) -> None:
        every = record["num_divergent"] == num_chains and record["accept_prob"] == 0.0
        self.count = self.count + 1 if every else 0
        if self.count >= DIVERGENT_PATIENCE:
            record["_error"] = (
                f"every proposal of every chain diverged for {self.count} iterations in a "
                f"row (log density {record['log_prob']:.6g}): the log density is NaN or "
                "infinite around the chains"
            )


def iteration_record(cfg: MCMCConfig, info, used, lp, prior, t: int) -> dict[str, Any]:
    """The metrics line of iteration ``t``: host numbers from the kernel's ``info``, the
    step size ``used`` and the chains' log density ``lp`` and log prior ``prior``."""
    C = cfg.num_chains
    accept = np.asarray(info.acceptance_rate)
    accepted = np.asarray(info.is_accepted)
    steps = np.asarray(info.num_integration_steps)
    record: dict[str, Any] = {
        "burn_in": t < cfg.num_warmup,
        "do_mh": True,
        "accept_prob": float(np.mean(np.nan_to_num(accept))),
        "accepted": int(accepted.sum()),
        "num_rejected": int(C - accepted.sum()),
        "num_divergent": int(np.asarray(info.is_divergent).sum()),
        "log_prob": float(lp.mean()),
        "log_likelihood": float((lp - prior).mean()),
        "log_prior": float(prior.mean()),
        "step_size": float(np.mean(np.asarray(used))),
        "num_leapfrog_steps": int(steps.max()),
    }
    if hasattr(info, "is_clamped"):
        record["num_leapfrog_steps_clamped"] = int(np.asarray(info.is_clamped).sum())
        if record["num_leapfrog_steps_clamped"]:
            record["_warnings"] = [
                f"trajectories asked for more than max_num_steps={cfg.max_num_steps} "
                "leapfrog steps: L is clamped to it (num_leapfrog_steps_clamped)"
            ]
    if hasattr(info, "tree_depth"):
        record["tree_depth"] = float(np.mean(np.asarray(info.tree_depth)))
    return record


def kernel_sample_stats(info, used, lp) -> dict[str, np.ndarray]:
    """The sampler statistics kept per draw, ``name -> (chains,)``."""
    out = {
        "acceptance_rate": np.asarray(info.acceptance_rate),
        "is_accepted": np.asarray(info.is_accepted),
        "diverging": np.asarray(info.is_divergent),
        "n_steps": np.asarray(info.num_integration_steps),
        "step_size": np.asarray(used),
        "energy": np.asarray(info.energy),
        "lp": np.asarray(lp),
    }
    if hasattr(info, "tree_depth"):
        out["tree_depth"] = np.asarray(info.tree_depth)
    return out


def build_mcmc(cfg: MCMCConfig, problem: Problem, init_from: Any = None) -> Algorithm:
    """Window-adapted HMC or NUTS as a loop :class:`Algorithm` (module docstring)."""
    return _build_mcmc(cfg, problem, init_from)[0]


def _build_mcmc(cfg: MCMCConfig, problem: Problem, init_from: Any = None):
    """``(Algorithm, WindowAdaptation)``: the loop's algorithm and the warmup it runs."""
    check_config(cfg, init_from)
    _register_checkpoint_types()
    ld, mesh, C, W = problem.logdensity, problem.mesh, cfg.num_chains, cfg.num_warmup
    options: dict[str, Any] = {}
    if cfg.kernel == "hmc":
        options["max_num_steps"] = cfg.max_num_steps
        if cfg.trajectory_length is not None:
            options["trajectory_length"] = cfg.trajectory_length
    else:
        options["max_num_doublings"] = cfg.max_num_doublings
    warmup = warmup_lib.build_window_adaptation(
        W,
        logdensity=ld,
        target_accept=cfg.target_accept,
        dense_mass=cfg.dense_mass,
        kernel=cfg.kernel,
        divergence_threshold=cfg.divergence_threshold,
        **options,
    )
    init_states = build_init(ld)
    evaluator = Evaluator.of(problem)

    def chains(state: MCMCState):
        from blackjax.mcmc.hmc import HMCState

        return replicate(mesh, HMCState(state.position, state.logdensity, state.logdensity_grad))

    def init(key) -> MCMCState:
        key_pos, key_eps = jax.random.split(key)
        if cfg.init_checkpoint is not None:
            from ppl_bnn.driver.hmc import initial_positions

            positions = initial_positions(problem, None, C, cfg.init_checkpoint)
        else:  # uniform, median, optimize; ensemble members; pathfinder draws
            positions = starts.initial_positions(
                problem, key_pos, C, cfg.init_strategy, init_from or cfg.init_from
            )
        positions = replicate(mesh, positions)
        imm = momenta = None
        if cfg.step_size is None:  # drawn outside: a program shared by every run
            flat = jax.vmap(lambda p: ravel_pytree(p)[0])(positions)
            imm = warmup_lib.identity_metric(flat, cfg.dense_mass)
            momenta = warmup_lib.initial_momenta(jax.random.split(key_eps, C), positions, imm)
        return start(positions, imm, momenta, problem.train)

    @jax.jit
    def start(positions, imm, momenta, batch) -> MCMCState:
        """The chains' states, initial step sizes and adaptation states: one program (the
        log density, its gradient and the step-size search compile together)."""
        state = init_states(positions, batch)
        if cfg.step_size is None:
            eps = warmup.find_step_size(None, state, batch, imm, momenta=momenta)
        else:
            eps = jnp.full((C,), cfg.step_size, jax.tree.leaves(positions)[0].dtype)
        wstate = warmup.init(state, eps)
        return MCMCState(*state, wstate, wstate.step_size, wstate.inverse_mass_matrix)  # type: ignore[call-arg]

    def step(key, state: MCMCState, t: int):
        keys = jax.random.split(key, C)
        if t < W:
            used = state.adaptation.step_size
            new, wstate, info = warmup.step(keys, chains(state), state.adaptation, problem.train, t)
            eps, imm = (
                warmup.final(wstate)
                if t == W - 1
                else (wstate.step_size, wstate.inverse_mass_matrix)
            )
        else:
            used, wstate = state.step_size, state.adaptation
            eps, imm = state.step_size, state.inverse_mass_matrix
            new, info = warmup.kernel(keys, chains(state), problem.train, eps, imm)
        return MCMCState(*new, wstate, eps, imm), (info, used)  # type: ignore[call-arg]

    streak = DivergenceStreak()

    def stats(state: MCMCState, extra, t: int) -> dict[str, Any]:
        info, used = extra
        prior = evaluator.log_prior(state.position)
        record = iteration_record(cfg, info, used, np.asarray(state.logdensity), prior, t)
        streak.update(record, C)
        return record

    def sample_stats(state: MCMCState, extra) -> dict[str, np.ndarray]:
        info, used = extra
        return kernel_sample_stats(info, used, state.logdensity)

    def save(state: MCMCState) -> dict[str, Any]:
        return state._asdict()

    def load(saved: dict) -> MCMCState:
        return MCMCState(**{k: saved[k] for k in MCMCState._fields})

    total = W + cfg.num_samples
    is_eval = every(cfg.eval_freq, total)
    sample = lambda t: t >= W  # noqa: E731
    alg = Algorithm(
        name=cfg.kernel if cfg.kernel == "nuts" else "hmc-window",
        unit="iteration",
        num_steps=total,
        init=init,
        step=step,
        schedule=Schedule(
            sample=sample,
            evaluate=is_eval,
            save=lambda t: True,
            log_every_step=True,
            draw=lambda t: sample(t) or is_eval(t),
        ),
        positions=lambda s: s.position,
        stats=stats,
        columns=("burn_in", "accept_prob", "step_size", "num_leapfrog_steps", "log_prob"),
        save=save,
        load=load,
        sample_stats=sample_stats,
        summary=lambda s: {"num_chains": C, "kernel": cfg.kernel},
    )
    return alg, warmup


def run_mcmc(
    cfg: MCMCConfig,
    *,
    compiled: bool | None = None,
    init_from: Any = None,
    problem: Problem | None = None,
    **options: Unpack[RunOptions],
) -> RunResult:
    """Run (or resume) window-adapted HMC or NUTS; returns the :class:`RunResult`.

    ``compiled`` (default: for a run in memory, collected, not stopped early) runs the
    warmup and the sampling as compiled scans (:func:`ppl_bnn.driver.compiled.run_compiled`);
    otherwise the checkpointing loop runs them one iteration at a time. ``init_from``
    (with ``init_strategy="ensemble"``): an in-memory finished SGD/ensemble
    :class:`RunResult` (``cfg.init_from``: its run directory); with more chains than
    members the summary holds the superchains and their nested R-hat.
    """
    from ppl_bnn.driver.hmc import mcmc_summary

    check_config(cfg, init_from)
    problem = problem or build_problem(cfg)
    stop_after, collect = options.get("stop_after"), options.get("collect")
    if compiled is None:
        compiled = not cfg.dir and stop_after is None and collect is not False
    if compiled:
        from ppl_bnn.driver.compiled import run_compiled

        if cfg.dir or stop_after is not None:
            raise ValueError("a compiled run is in memory and runs to its end: give no dir")
        alg, warmup = _build_mcmc(cfg, problem, init_from)
        result = run_compiled(
            alg,
            warmup,
            cfg,
            problem,
            progress=options.get("progress"),
            log_likelihood=options.get("log_likelihood", False),
        )
    else:
        result = run_from_config(
            build_mcmc(cfg, problem, init_from), cfg, problem, extra_summary=mcmc_summary, **options
        )
    ids = starts.superchain_ids(
        cfg.num_chains, cfg.init_strategy, init_from or cfg.init_from, problem
    )
    if ids is not None:
        from ppl_bnn.driver.adaptive import add_nested_rhat

        add_nested_rhat(result, problem, ids)
    return result
