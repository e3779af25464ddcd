"""MAMS, ChEES-HMC and MCLMC as loop :class:`~ppl_bnn.driver.loop.Algorithm` s.

The kernels are per chain (:mod:`ppl_bnn.inference.microcanonical`,
:mod:`ppl_bnn.inference.chees`), vmapped over chains here, on the full-batch log density
of the problem (``problem.logdensity(position, problem.train)``, sharded as the problem
places its data). Chains start where NUTS's do (``init_strategy``, default uniform in
``(-2, 2)`` unconstrained; :mod:`ppl_bnn.driver.starts`).

* ``kernel="chees"``: the first ``num_warmup`` iterations adapt the shared step size,
  trajectory length and diagonal mass matrix one iteration at a time, every piece of
  adaptation state in the checkpoint; the following ``num_samples`` iterations sample.
  A run stopped anywhere resumes bit for bit.
* ``kernel="mams"`` and ``kernel="mclmc"``: the tuning is BlackJAX's own routine
  (``adjusted_mclmc_find_L_and_step_size``, ``mclmc_find_L_and_step_size``), one compiled
  call per run, made when the run starts (``Algorithm.init``); the loop's iterations are
  the ``num_samples`` sampling iterations. A run stopped during the tuning (before its
  first checkpoint) reruns it from its start with the same key on resume: the same
  program on the same inputs, so the tuned state, and every draw after it, is bit for bit
  the uninterrupted run's.

``mclmc`` has no Metropolis test: its draws are **asymptotically biased** (the summary
says so, ``"asymptotically_biased": true``, and the run prints it once). It is never a
default.

One module (about 600 lines) on purpose: the three methods share the chains' start, the
full-batch log density, the resumable tuning (each a BlackJAX tuning run cut into
checkpointed pieces), the sample statistics and the superchain report; one module per
method would repeat that frame three times.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Unpack

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bnn.config import AdaptiveConfig
from ppl_bnn.declare.problem import Problem, build_problem
from ppl_bnn.density.sharding import ensure_replicated, replicate
from ppl_bnn.driver import starts
from ppl_bnn.driver.loop import (
    Algorithm,
    Evaluator,
    RunResult,
    Schedule,
    check_initial_point,
    every,
)
from ppl_bnn.driver.runner import RunOptions, run_from_config
from ppl_bnn.inference.precision import check_gradient_dtype

__all__ = ["AdaptiveState", "BIAS_NOTE", "KERNELS", "build_adaptive", "run_adaptive"]

KERNELS = ("mams", "chees", "mclmc")
BIAS_NOTE = (
    "mclmc has no Metropolis-Hastings test: its draws are asymptotically biased (the bias "
    "shrinks with the step size); use mams or nuts for exact draws"
)


class AdaptiveState(NamedTuple):
    """Every chain's state and the tuned numbers, stacked over chains.

    ``aux`` is MAMS's and ChEES's iteration counter (it draws the trajectory length) or
    MCLMC's momentum; ``adaptation`` ChEES's warmup state (``None`` otherwise); ``L`` the
    trajectory length (MAMS, ChEES) or the momentum decoherence length (MCLMC)."""

    position: Any
    logdensity: Any
    logdensity_grad: Any
    aux: Any
    adaptation: Any
    step_size: Any
    L: Any
    inverse_mass_matrix: Any
    num_tuning_steps: Any


def _register_checkpoint_types() -> None:
    from blackjax.adaptation.chees_adaptation import ChEESAdaptationState
    from blackjax.adaptation.mass_matrix import WelfordAlgorithmState
    from blackjax.optimizers.dual_averaging import DualAveragingState

    from ppl_bnn.inference.chees import ChEESWarmupState
    from ppl_bnn.store import checkpoint

    for t in (ChEESAdaptationState, DualAveragingState, WelfordAlgorithmState, ChEESWarmupState):
        checkpoint.register_type(t)
    checkpoint.register_type(AdaptiveState)


def check_config(cfg: AdaptiveConfig, init_from=None) -> None:
    """One-line ``ValueError`` s for settings that cannot run, before anything is built
    (``init_from``: an in-memory result given besides the config)."""
    if cfg.kernel not in KERNELS:
        raise ValueError(f"unknown kernel {cfg.kernel!r}; choose {', '.join(KERNELS)}")
    if cfg.num_warmup < 0 or cfg.num_samples < 1 or cfg.num_chains < 1:
        raise ValueError(
            "num_warmup must be >= 0, num_samples and num_chains >= 1; got "
            f"{cfg.num_warmup}, {cfg.num_samples}, {cfg.num_chains}"
        )
    if cfg.kernel != "chees" and 0 < cfg.num_warmup < 10:
        raise ValueError(f"{cfg.kernel} tunes over at least 10 warmup iterations (or 0)")
    if cfg.target_accept is not None:
        if cfg.kernel == "mclmc":
            raise ValueError("mclmc has no acceptance to target: give no target_accept")
        if not 0 < cfg.target_accept < 1:
            raise ValueError(f"target_accept must lie in (0, 1), got {cfg.target_accept}")
    if cfg.step_size is not None and not (np.isfinite(cfg.step_size) and cfg.step_size > 0):
        raise ValueError(f"step_size must be a positive finite number, got {cfg.step_size}")
    check_gradient_dtype(cfg.gradient_dtype)
    if cfg.gradient_dtype is not None and cfg.kernel == "mclmc":
        raise ValueError(
            "gradient_dtype keeps mams and chees exact through their Metropolis test; "
            "mclmc has none"
        )
    if cfg.avg_num_steps < 1.1:
        raise ValueError(f"avg_num_steps must be at least 1.1, got {cfg.avg_num_steps}")
    if not 0 < cfg.jitter_amount <= 1:
        raise ValueError(f"jitter_amount must lie in (0, 1], got {cfg.jitter_amount}")
    if cfg.max_num_steps < 1 or cfg.learning_rate <= 0 or cfg.desired_energy_var <= 0:
        raise ValueError("max_num_steps, learning_rate and desired_energy_var must be positive")
    if cfg.eval_freq < 1:
        raise ValueError(f"eval_freq must be at least 1, got {cfg.eval_freq}")
    starts.check_strategy(cfg.init_strategy, init_from or cfg.init_from)


def _positions(cfg: AdaptiveConfig, problem: Problem, key, init_from=None):
    if cfg.init_checkpoint is not None:
        from ppl_bnn.driver.hmc import initial_positions

        return initial_positions(problem, None, cfg.num_chains, cfg.init_checkpoint)
    return starts.initial_positions(
        problem, key, cfg.num_chains, cfg.init_strategy, init_from or cfg.init_from
    )


def build_adaptive(cfg: AdaptiveConfig, problem: Problem, *, init_from=None) -> Algorithm:
    """The loop :class:`Algorithm` of ``cfg.kernel`` (module docstring). ``init_from``
    (an in-memory ``RunResult``) replaces ``cfg.init_from``."""
    check_config(cfg, init_from)
    _register_checkpoint_types()
    kind = cfg.kernel
    init, step, warmup_steps = _compiled(cfg, problem)
    evaluator = Evaluator.of(problem)
    C = cfg.num_chains

    def start(key):
        key_pos, key_tune = jax.random.split(key)
        positions = _positions(cfg, problem, key_pos, init_from)
        from ppl_bnn.inference.microcanonical import check_dimension

        if kind != "chees":
            check_dimension(jax.tree.map(lambda a: a[0], positions))
        check_initial_point(evaluator, positions)  # before any tuning
        return init(key_tune, replicate(problem.mesh, positions))

    streak = None
    if kind != "mclmc":
        from ppl_bnn.driver.mcmc import DivergenceStreak

        streak = DivergenceStreak()

    def stats(state: AdaptiveState, info, t: int) -> dict[str, Any]:
        lp = np.asarray(state.logdensity)
        prior = evaluator.log_prior(state.position)
        record: dict[str, Any] = {
            "burn_in": t < warmup_steps,
            "log_prob": float(lp.mean()),
            "log_likelihood": float((lp - prior).mean()),
            "log_prior": float(prior.mean()),
            "step_size": float(np.mean(np.asarray(info.step_size))),
            "L": float(np.mean(np.asarray(info.L))),
        }
        if kind == "mclmc":
            record["energy_error"] = float(np.mean(np.abs(np.asarray(info.energy_error))))
            record["num_divergent"] = int(np.sum(np.asarray(info.diverging)))
            if t == 0:
                record["_warnings"] = [BIAS_NOTE]
            return record
        accept = np.nan_to_num(np.asarray(info.acceptance_rate))
        accepted = np.asarray(info.is_accepted)
        record.update(
            accept_prob=float(np.mean(accept)),
            accepted=int(accepted.sum()),
            num_rejected=int(C - accepted.sum()),
            num_divergent=int(np.asarray(info.diverging).sum()),
            num_integration_steps=int(np.asarray(info.n_steps).max()),
        )
        assert streak is not None
        streak.update(record, C)
        return record

    def sample_stats(state: AdaptiveState, info) -> dict[str, np.ndarray]:
        out = {k: np.asarray(v) for k, v in info._asdict().items()}
        out["lp"] = np.asarray(state.logdensity)
        return out

    def save(state: AdaptiveState) -> dict[str, Any]:
        return state._asdict()

    def load(saved: dict) -> AdaptiveState:
        return AdaptiveState(**{k: saved[k] for k in AdaptiveState._fields})

    def summary(state: AdaptiveState) -> dict[str, Any]:
        out: dict[str, Any] = {
            "num_chains": C,
            "kernel": kind,
            "exact": kind != "mclmc",
            "step_size": np.asarray(state.step_size).tolist(),
            "L": np.asarray(state.L).tolist(),
            "num_tuning_steps": np.asarray(state.num_tuning_steps).tolist(),
            # MAMS, ChEES: one gradient per integration step; MCLMC: per step
            "num_grad_evals_warmup": int(np.sum(np.asarray(state.num_tuning_steps))),
            "gradient_dtype": cfg.gradient_dtype,
            "init_strategy": cfg.init_strategy,
        }
        if kind == "mclmc":
            out.update(asymptotically_biased=True, bias=BIAS_NOTE)
        return out

    total = warmup_steps + cfg.num_samples
    is_eval = every(cfg.eval_freq, total)
    sample = lambda t: t >= warmup_steps  # noqa: E731
    columns: tuple[str, ...] = ("burn_in", "step_size", "L", "log_prob")
    if kind != "mclmc":
        columns = ("burn_in", "accept_prob", "step_size", "L", "num_integration_steps", "log_prob")
    return Algorithm(
        name=kind,
        unit="iteration",
        num_steps=total,
        init=start,
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
        columns=columns,
        save=save,
        load=load,
        sample_stats=sample_stats,
        summary=summary,
    )


# the fields that shape a kernel's compiled programs (the rest: run, data, starts)
_GRAPH_FIELDS = (
    "kernel",
    "num_warmup",
    "num_chains",
    "step_size",
    "target_accept",
    "diagonal_preconditioning",
    "avg_num_steps",
    "learning_rate",
    "jitter_amount",
    "max_num_steps",
    "desired_energy_var",
    "gradient_dtype",
    "divergence_threshold",
)
_CACHE: dict[tuple, tuple[Any, tuple]] = {}


def _compiled(cfg: AdaptiveConfig, problem: Problem) -> tuple:
    """``(init, step, warmup_steps)`` of ``cfg.kernel`` on ``problem``, built once per
    problem and kernel settings: a resumed or repeated run in the same process reuses the
    compiled programs (they take the data as an argument)."""
    import weakref

    key = (id(problem), *(getattr(cfg, f) for f in _GRAPH_FIELDS))
    hit = _CACHE.get(key)
    if hit is None or hit[0]() is not problem:
        for k in [k for k, v in _CACHE.items() if v[0]() is None]:
            del _CACHE[k]
        build = {"mams": _build_mams, "mclmc": _build_mclmc, "chees": _build_chees}[cfg.kernel]
        hit = _CACHE[key] = (weakref.ref(problem), build(cfg, problem))
    return hit[1]


class _MAMSStats(NamedTuple):
    acceptance_rate: Any
    is_accepted: Any
    diverging: Any
    n_steps: Any
    step_size: Any
    L: Any
    energy_error: Any


class _CheesStats(NamedTuple):
    acceptance_rate: Any
    is_accepted: Any
    diverging: Any
    n_steps: Any
    step_size: Any
    L: Any
    energy: Any


class _MCLMCStats(NamedTuple):
    diverging: Any
    n_steps: Any
    step_size: Any
    L: Any
    energy_error: Any


def _initial_step(cfg: AdaptiveConfig, dtype):
    return jnp.asarray(np.nan if cfg.step_size is None else cfg.step_size, dtype)


def _build_mams(cfg: AdaptiveConfig, problem: Problem):
    from ppl_bnn.inference import microcanonical as mc

    ld, C = problem.logdensity, cfg.num_chains
    mams = mc.build_mams(
        ld,
        gradient_dtype=cfg.gradient_dtype,
        divergence_threshold=cfg.divergence_threshold,
        max_num_steps=cfg.max_num_steps,
    )
    tune = mc.build_mams_tuner(
        mams,
        cfg.num_warmup,
        target_accept=0.9 if cfg.target_accept is None else cfg.target_accept,
        diagonal_preconditioning=cfg.diagonal_preconditioning,
        avg_num_steps=cfg.avg_num_steps,
    )
    init_chains = jax.jit(jax.vmap(mams.init, in_axes=(0, None)))
    tune_chains = jax.jit(jax.vmap(tune, in_axes=(0, 0, None, None)))
    step_chains = jax.jit(jax.vmap(mams.step, in_axes=(0, 0, None, 0, 0, 0)))

    def init(key, positions) -> AdaptiveState:
        s = init_chains(positions, problem.train)
        dtype = s.logdensity.dtype
        if cfg.num_warmup:
            tuned = tune_chains(
                jax.random.split(key, C), s, problem.train, _initial_step(cfg, dtype)
            )
            s, eps, L, imm, spent = tuned
        else:
            eps = jnp.full((C,), cfg.step_size or 0.1, dtype)
            L, imm = cfg.avg_num_steps * eps, jnp.ones((C, _dim(s.position)), dtype)
            spent = jnp.zeros((C,), jnp.int32)
        return AdaptiveState(
            s.position, s.logdensity, s.logdensity_grad, s.counter, None, eps, L, imm, spent
        )

    def step(key, state: AdaptiveState, t: int):
        chains = mc.MAMSState(state.position, state.logdensity, state.logdensity_grad, state.aux)
        keys = jax.random.split(key, C)
        eps, L = state.step_size, state.L
        new, info = step_chains(
            keys, chains, problem.train, eps, L / eps, state.inverse_mass_matrix
        )
        stats = _MAMSStats(
            info.acceptance_rate,
            info.is_accepted,
            info.is_divergent,
            info.num_integration_steps,
            eps,
            L,
            info.energy,
        )
        return state._replace(
            position=new.position,
            logdensity=new.logdensity,
            logdensity_grad=new.logdensity_grad,
            aux=new.counter,
        ), stats

    return init, step, 0


def _build_mclmc(cfg: AdaptiveConfig, problem: Problem):
    from ppl_bnn.inference import microcanonical as mc

    ld, C = problem.logdensity, cfg.num_chains
    mclmc = mc.build_mclmc(ld)
    tune = mc.build_mclmc_tuner(
        mclmc,
        cfg.num_warmup,
        diagonal_preconditioning=cfg.diagonal_preconditioning,
        desired_energy_var=cfg.desired_energy_var,
    )
    init_chains = jax.jit(jax.vmap(mclmc.init, in_axes=(0, None, 0)))
    tune_chains = jax.jit(jax.vmap(tune, in_axes=(0, 0, None, None)))
    step_chains = jax.jit(jax.vmap(mclmc.step, in_axes=(0, 0, None, 0, 0, 0)))

    def init(key, positions) -> AdaptiveState:
        key_init, key_tune = jax.random.split(key)
        s = init_chains(positions, problem.train, jax.random.split(key_init, C))
        dtype = s.logdensity.dtype
        if cfg.num_warmup:
            tuned = tune_chains(
                jax.random.split(key_tune, C), s, problem.train, _initial_step(cfg, dtype)
            )
            s, eps, L, imm, spent = tuned
        else:
            d = _dim(s.position)
            eps = jnp.full((C,), cfg.step_size or 0.25 * np.sqrt(d), dtype)
            L, imm = jnp.full((C,), np.sqrt(d), dtype), jnp.ones((C, d), dtype)
            spent = jnp.zeros((C,), jnp.int32)
        return AdaptiveState(
            s.position, s.logdensity, s.logdensity_grad, s.momentum, None, eps, L, imm, spent
        )

    def step(key, state: AdaptiveState, t: int):
        chains = mc.MCLMCState(state.position, state.aux, state.logdensity, state.logdensity_grad)
        keys = jax.random.split(key, C)
        eps, L = state.step_size, state.L
        new, info = step_chains(keys, chains, problem.train, eps, L, state.inverse_mass_matrix)
        ones = jnp.ones((C,), jnp.int32)
        stats = _MCLMCStats(~info.nonans, ones, eps, L, info.energy_change)
        return state._replace(
            position=new.position,
            logdensity=new.logdensity,
            logdensity_grad=new.logdensity_grad,
            aux=new.momentum,
        ), stats

    return init, step, 0


def _build_chees(cfg: AdaptiveConfig, problem: Problem):
    from blackjax.mcmc.dynamic_hmc import DynamicHMCState

    from ppl_bnn.inference import chees as chees_lib
    from ppl_bnn.inference import warmup as warmup_lib

    ld, C, W = problem.logdensity, cfg.num_chains, cfg.num_warmup
    target = chees_lib.TARGET_ACCEPT if cfg.target_accept is None else cfg.target_accept
    options: dict[str, Any] = dict(
        jitter_amount=cfg.jitter_amount,
        gradient_dtype=cfg.gradient_dtype,
        divergence_threshold=cfg.divergence_threshold,
    )
    kernel_init, _ = chees_lib.build_kernel(ld, **options)
    chees = chees_lib.build_chees(
        ld,
        W,
        target_accept=target,
        learning_rate=cfg.learning_rate,
        max_num_steps=cfg.max_num_steps,
        diagonal_preconditioning=cfg.diagonal_preconditioning,
        **options,
    )
    init_chains = jax.jit(jax.vmap(kernel_init, in_axes=(0, None)))
    warmup_step = jax.jit(chees.warmup_step)
    sample_step = jax.jit(chees.step)
    final = jax.jit(chees.final)
    find = warmup_lib._build_find_step_size(ld, target, False)  # Stan's initial step size

    def init(key, positions) -> AdaptiveState:
        s = init_chains(positions, problem.train)
        dtype = s.logdensity.dtype
        if cfg.step_size is None:
            eps = jnp.median(find(jax.random.split(key, C), s, problem.train))
        else:
            eps = jnp.asarray(cfg.step_size, dtype)
        wstate = chees.init(s, eps)
        a = wstate.chees
        fill = lambda v: jnp.full((C,), v, dtype)  # noqa: E731
        imm = jnp.broadcast_to(wstate.inverse_mass_matrix, (C, _dim(s.position)))
        if W == 0:  # no warmup: one leapfrog step of the initial step size per trajectory
            a = a._replace(trajectory_length=a.step_size)
        return AdaptiveState(
            s.position,
            s.logdensity,
            s.logdensity_grad,
            s.random_generator_arg,
            wstate,
            fill(a.step_size),
            fill(a.trajectory_length),
            imm,
            jnp.zeros((C,), jnp.int32),
        )

    def step(key, state: AdaptiveState, t: int):
        state = ensure_replicated(problem.mesh, state)  # a fresh or restored state: one program
        chains = DynamicHMCState(state.position, state.logdensity, state.logdensity_grad, state.aux)
        keys = jax.random.split(key, C)
        spent = state.num_tuning_steps
        if t < W:
            a = state.adaptation.chees
            eps, L = a.step_size, a.trajectory_length
            new, wstate, info = warmup_step(keys, chains, state.adaptation, problem.train, t)
            spent = spent + info.num_integration_steps
            if t == W - 1:
                e, length, imm = final(wstate)
            else:
                e, length, imm = (
                    wstate.chees.step_size,
                    wstate.chees.trajectory_length,
                    wstate.inverse_mass_matrix,
                )
            fill = lambda v: jnp.full((C,), v, state.step_size.dtype)  # noqa: E731
            nxt = state._replace(
                adaptation=wstate,
                step_size=fill(e),
                L=fill(length),
                inverse_mass_matrix=jnp.broadcast_to(imm, (C, imm.shape[-1])),
            )
            eps, L = jnp.full((C,), eps), jnp.full((C,), L)
        else:
            eps, L = state.step_size, state.L
            new, info = sample_step(
                keys, chains, problem.train, eps[0], L[0], state.inverse_mass_matrix[0]
            )
            nxt = state
        stats = _CheesStats(
            info.acceptance_rate,
            info.is_accepted,
            info.is_divergent,
            info.num_integration_steps,
            eps,
            L,
            info.energy,
        )
        nxt = nxt._replace(
            position=new.position,
            logdensity=new.logdensity,
            logdensity_grad=new.logdensity_grad,
            aux=new.random_generator_arg,
            num_tuning_steps=spent,
        )
        return nxt, stats

    return init, step, W


def _dim(position) -> int:
    return int(sum(np.prod(a.shape[1:]) for a in jax.tree.leaves(position)))


def adaptive_summary(records: list[dict]) -> dict[str, Any]:
    """Acceptance and divergences over the run's sampling iterations (MCLMC: divergences
    only), from its metrics records."""
    post = [r for r in records if not r.get("burn_in")]
    out: dict[str, Any] = {
        "num_divergent": int(sum(r.get("num_divergent", 0) for r in records)),
        "num_divergent_after_burn_in": int(sum(r.get("num_divergent", 0) for r in post)),
    }
    if post and "accept_prob" in post[0]:
        out["mean_accept_prob"] = float(np.mean([r["accept_prob"] for r in post]))
        out["num_rejected"] = int(sum(r.get("num_rejected", 0) for r in post))
    return out


def run_adaptive(
    cfg: AdaptiveConfig,
    *,
    init_from=None,
    problem: Problem | None = None,
    **options: Unpack[RunOptions],
) -> RunResult:
    """Run (or resume) MAMS, ChEES-HMC or MCLMC as configured; returns the
    :class:`RunResult`. Rerunning with the same ``cfg.dir`` resumes bit for bit (module
    docstring); ``stop_after`` stops after that many iterations of this call. With
    ``init_strategy="ensemble"`` and more chains than members, the summary holds the
    superchains (``"superchains"``) and the largest nested R-hat (``"nested_rhat"``).
    """
    check_config(cfg, init_from)
    problem = problem or build_problem(cfg)
    result = run_from_config(
        build_adaptive(cfg, problem, init_from=init_from),
        cfg,
        problem,
        extra_summary=adaptive_summary,
        **options,
    )
    ids = starts.superchain_ids(
        cfg.num_chains, cfg.init_strategy, init_from or cfg.init_from, problem
    )
    if ids is not None:
        add_nested_rhat(result, problem, ids)
    return result


def add_nested_rhat(result: RunResult, problem: Problem, ids: list[int]) -> None:
    from ppl_bnn.diagnostics.checks import convergence_quantities, is_bnn

    result.summary["superchains"] = ids
    if result.samples is not None and result.summary.get("complete"):
        sites = tuple(result.samples)
        quantities, space = convergence_quantities(
            result.samples,
            result.predictions,
            bnn=is_bnn(problem.model, sites),
            task=result.summary.get("task"),
            sample_stats=result.sample_stats,
        )
        result.summary["nested_rhat"] = starts.nested_rhat(quantities, ids)
        result.summary["nested_rhat_space"] = space
    if result.run_dir is not None:
        import json
        from pathlib import Path

        from ppl_bnn.store.checkpoint import atomic_write

        data = json.dumps(result.summary, indent=2, default=_plain).encode()
        atomic_write(Path(result.run_dir) / "summary.json", lambda f: f.write(data))


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return str(v)
