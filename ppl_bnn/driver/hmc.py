"""Full-batch HMC with the original's semantics, as a loop :class:`Algorithm`.

Every iteration resamples the momentum and runs ``L = ceil(trajectory_len / step_size)``
leapfrog steps over the full training set. During the burn-in (the first
``num_burn_in_iterations``) there is no Metropolis-Hastings test: every proposal is
taken, **except a divergent one** (its log density or its energy error is not finite, or
the energy error exceeds ``--divergence_threshold``): that one is not taken, and the
chain stays where it was. Burn-in iterations are not averaged. Afterwards the MH test
applies (unless ``--no_mh``).

**Step-size adaptation during the burn-in** (``--step_size_adaptation_speed=s > 0``):
after each burn-in iteration, with ``a`` the chain's acceptance probability (``0`` when
it is not finite) and ``a*`` ``--target_accept_rate``::

    eps <- eps * clip(exp(s * (a - a*)), 1/2, 2)
    eps <- max(eps, trajectory_len / max_num_leapfrog_steps)

The factor is bounded (at most halving or doubling per iteration, whatever ``s``), and
the step size never falls below the one at which ``L`` reaches the bound, so a chain far
from the mode, whose acceptance stays at 0, cannot drive ``L`` past
``--max_num_leapfrog_steps``: ``L`` is clamped at the bound instead (the iteration's
``num_leapfrog_steps_clamped`` counts the chains at it, and one warning line says so).
The rule targets ``a*`` only as a fixed point: if the acceptance at the floor is still
below ``a*``, the step size stays at the floor. Settings that exceed the bound from the
start (``trajectory_len / step_size > max``) are refused before anything is written.

A diagonal mass matrix can be estimated from the burn-in draws (``--adapt_mass_matrix``;
set once, at the end of the burn-in).

**Divergences** are counted per iteration (``num_divergent``: chains whose trajectory
diverged; ``num_rejected``: chains that did not move) and in the summary; when a chain
takes no proposal (rejected by the MH test, or divergent) for ``--zero_accept_patience``
consecutive iterations, one warning line names it. A chain whose every proposal diverges
stays where it is (during the burn-in too): the warning is the sign to lower the step size.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Unpack

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ppl_bnn.config import HMCConfig
from ppl_bnn.declare.problem import Problem, build_problem
from ppl_bnn.density.sharding import replicate
from ppl_bnn.driver.loop import Algorithm, Evaluator, RunResult, Schedule, every
from ppl_bnn.driver.runner import RunOptions, run_from_config
from ppl_bnn.inference.hmc import (
    MassMatrixEstimate,
    build_init,
    build_kernel,
    num_leapfrog_steps,
)
from ppl_bnn.methods import option_name
from ppl_bnn.store.checkpoint import load_checkpoint

__all__ = [
    "HMCRunState",
    "adapt_step_size",
    "build_hmc",
    "clamped_num_steps",
    "initial_positions",
    "run_hmc",
]


class HMCRunState(NamedTuple):
    """Everything an HMC run carries from one iteration to the next (stacked over chains).

    ``step_size`` (host float64: ``L`` is computed from it) is the step size the last
    trajectory used, ``acceptance_rate`` that trajectory's; the next iteration adapts
    from both during the burn-in.
    """

    position: Any
    logdensity: Any
    logdensity_grad: Any
    step_size: np.ndarray
    acceptance_rate: Any
    inverse_mass_matrix: Any
    mass_matrix_estimate: MassMatrixEstimate


def adapt_step_size(
    step_size: np.ndarray,
    acceptance_rate: np.ndarray,
    *,
    speed: float,
    target: float,
    floor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The burn-in rule (module docstring): bounded factor, non-finite acceptance as 0,
    never below ``floor``. Returns ``(step sizes, held at the floor)`` per chain."""
    a = np.nan_to_num(np.asarray(acceptance_rate, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    factor = np.clip(np.exp(speed * (a - target)), 0.5, 2.0)
    wanted = step_size * factor
    return np.maximum(wanted, floor), wanted < floor


def clamped_num_steps(
    trajectory_len: float, step_size: np.ndarray, max_num_leapfrog_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(L, clamped)`` per chain: ``ceil(trajectory_len / eps)`` clamped to the bound."""
    steps, clamped = [], []
    for e in np.asarray(step_size, np.float64):
        try:
            steps.append(num_leapfrog_steps(trajectory_len, float(e), max_num_leapfrog_steps))
            clamped.append(False)
        except ValueError:
            steps.append(max_num_leapfrog_steps)
            clamped.append(True)
    return np.asarray(steps), np.asarray(clamped)


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
        raise ValueError(
            f"{option_name('init_checkpoint')}={init_checkpoint} holds no parameters ('position')"
        )
    missing = set(ld.latent_sites) - set(position)
    if missing:
        raise ValueError(
            f"{option_name('init_checkpoint')}={init_checkpoint} lacks parameters "
            f"{sorted(missing)[:3]} of this model"
        )
    position = {k: np.asarray(position[k]) for k in ld.latent_sites}
    dtype = jnp.zeros(()).dtype

    def stack(name, v):
        base = ld.shapes[name]
        if v.shape == tuple(base):
            v = v[None]
        elif v.shape[1:] != tuple(base):
            raise ValueError(
                f"{option_name('init_checkpoint')}: {name} has shape {v.shape[1:]}, expected {base}"
            )
        if v.shape[0] != num_chains:
            v = np.repeat(v[:1], num_chains, 0)
        return jnp.asarray(v, dtype)

    return {k: stack(k, v) for k, v in position.items()}


def check_config(cfg: HMCConfig) -> None:
    """Refuse impossible settings before anything is built or written."""
    if cfg.num_chains < 1:
        raise ValueError(f"{option_name('num_chains')} must be at least 1, got {cfg.num_chains}")
    if cfg.num_iterations < 1:
        raise ValueError(
            f"{option_name('num_iterations')} must be at least 1, got {cfg.num_iterations}"
        )
    if not 0 <= cfg.num_burn_in_iterations <= cfg.num_iterations:
        raise ValueError(
            f"{option_name('num_burn_in_iterations')} must lie between 0 and "
            f"{option_name('num_iterations')}"
        )
    if cfg.eval_freq < 1:
        raise ValueError(f"{option_name('eval_freq')} must be at least 1, got {cfg.eval_freq}")
    if cfg.step_size_adaptation_speed < 0:
        raise ValueError(f"{option_name('step_size_adaptation_speed')} must be non-negative")
    if not 0 < cfg.target_accept_rate < 1:
        raise ValueError(
            f"{option_name('target_accept_rate')} must lie in (0, 1), got {cfg.target_accept_rate}"
        )
    for flag in ("step_size", "trajectory_len"):
        if not np.isfinite(getattr(cfg, flag)):
            raise ValueError(
                f"{option_name(flag)} must be a finite number, got {getattr(cfg, flag)}"
            )
    num_leapfrog_steps(cfg.trajectory_len, cfg.step_size, cfg.max_num_leapfrog_steps)


def build_hmc(cfg: HMCConfig, problem: Problem) -> Algorithm:
    """The original's HMC as a loop :class:`Algorithm` (module docstring)."""
    ld, mesh, C = problem.logdensity, problem.mesh, cfg.num_chains
    init_states = build_init(ld)
    kernel = build_kernel(ld, divergence_threshold=cfg.divergence_threshold)
    evaluator = Evaluator.of(problem)
    dtype = jnp.zeros(()).dtype
    burn_in = cfg.num_burn_in_iterations
    floor = cfg.trajectory_len / cfg.max_num_leapfrog_steps
    adapting = cfg.step_size_adaptation_speed > 0

    def init(key) -> HMCRunState:
        positions = initial_positions(problem, key, C, cfg.init_checkpoint)
        state = init_states(replicate(mesh, positions), problem.train)
        dim = ravel_pytree(jax.tree.map(lambda a: a[0], positions))[0].shape[0]
        return HMCRunState(  # type: ignore[misc]  # fields from *state, then by name
            *state,
            step_size=np.full((C,), cfg.step_size),
            acceptance_rate=np.full((C,), np.nan),
            inverse_mass_matrix=jnp.ones((C, dim), dtype),
            mass_matrix_estimate=MassMatrixEstimate.zeros(C, dim, dtype),
        )

    def step(key, state: HMCRunState, t: int):
        step_size, floored = state.step_size, np.zeros(C, bool)
        if adapting and 0 < t <= burn_in:  # the previous iteration was a burn-in one
            step_size, floored = adapt_step_size(
                step_size,
                np.asarray(state.acceptance_rate),
                speed=cfg.step_size_adaptation_speed,
                target=cfg.target_accept_rate,
                floor=floor,
            )
        steps, clamped = clamped_num_steps(
            cfg.trajectory_len, step_size, cfg.max_num_leapfrog_steps
        )
        clamped = clamped | floored  # the rule asked for more steps than the bound
        in_burnin = t < burn_in
        do_mh = not (cfg.no_mh or in_burnin)
        new, info = kernel(
            jax.random.split(key, C),
            replicate(mesh, _hmc_state(state)),
            problem.train,
            jnp.asarray(step_size, dtype),
            replicate(mesh, state.inverse_mass_matrix),
            jnp.asarray(steps),
            jnp.asarray(do_mh),
        )
        mass, inv_mass = state.mass_matrix_estimate, state.inverse_mass_matrix
        if in_burnin and cfg.adapt_mass_matrix:
            mass = mass.update(jax.vmap(lambda p: ravel_pytree(p)[0])(new.position))
            if t == burn_in - 1:
                inv_mass = mass.inverse_mass_matrix()
        out = HMCRunState(
            new.position,
            new.logdensity,
            new.logdensity_grad,
            step_size,
            info.acceptance_rate,
            inv_mass,
            mass,
        )
        return out, (info, steps, clamped, do_mh)

    zero_streak = [np.zeros(C, int)]
    nan_streak = [0]  # consecutive iterations whose every proposal had no finite density

    def stats(state: HMCRunState, extra, t: int) -> dict[str, Any]:
        info, steps, clamped, do_mh = extra
        accept = np.asarray(info.acceptance_rate)
        accepted = np.asarray(info.is_accepted)
        divergent = np.asarray(info.is_divergent)
        lp = np.asarray(state.logdensity)
        prior = evaluator.log_prior(state.position)
        notes = []
        if clamped.any():
            notes.append(
                f"the step size asks for more than {option_name('max_num_leapfrog_steps')}="
                f"{cfg.max_num_leapfrog_steps} leapfrog steps: L is clamped to it "
                "(num_leapfrog_steps_clamped counts the chains at the bound)"
            )
        zero_streak[0] = np.where(accepted, 0, zero_streak[0] + 1)
        stuck = np.flatnonzero(zero_streak[0] >= cfg.zero_accept_patience)
        if stuck.size:
            notes.append(
                f"chain(s) {', '.join(map(str, stuck[:8]))} took no proposal for "
                f"{cfg.zero_accept_patience} consecutive iterations (rejected or divergent): "
                "the step size is probably too large"
            )
        proposed = np.asarray(info.proposal_logdensity)
        # NaN at finite positions: the model's or the data's (a step size too large
        # overflows the positions instead: divergences, and a warning)
        at_finite = np.asarray(True if info.proposal_finite is None else info.proposal_finite)
        nan_streak[0] = nan_streak[0] + 1 if (np.isnan(proposed) & at_finite).all() else 0
        record: dict[str, Any] = {}
        if nan_streak[0] >= cfg.zero_accept_patience:
            record["_error"] = (
                "the log density of every proposal of every chain was nan for "
                f"{nan_streak[0]} consecutive iterations ({option_name('zero_accept_patience')})"
            )
        record |= {
            "burn_in": t < burn_in,
            "do_mh": do_mh,
            "accept_prob": float(np.nanmean(accept)) if np.isfinite(accept).any() else 0.0,
            "accepted": int(accepted.sum()),
            "num_rejected": int(C - accepted.sum()),
            "num_divergent": int(divergent.sum()),
            "log_prob": float(lp.mean()),
            "log_likelihood": float((lp - prior).mean()),
            "log_prior": float(prior.mean()),
            "step_size": float(np.mean(state.step_size)),
            "num_leapfrog_steps": int(max(steps)),
            "num_leapfrog_steps_clamped": int(clamped.sum()),
            "_warnings": notes,
        }
        if C > 1:
            record["accept_prob_per_chain"] = accept.tolist()
        return record

    def sample_stats(state: HMCRunState, extra) -> dict[str, np.ndarray]:
        info, steps, _, _ = extra
        return {
            "acceptance_rate": np.asarray(info.acceptance_rate),
            "is_accepted": np.asarray(info.is_accepted),
            "diverging": np.asarray(info.is_divergent),
            "n_steps": np.asarray(steps),
            "step_size": np.asarray(state.step_size),
            "energy": np.asarray(info.energy),
            "lp": np.asarray(state.logdensity),
        }

    def save(state: HMCRunState) -> dict[str, Any]:
        out = state._asdict()
        out["mass_matrix_estimate"] = tuple(state.mass_matrix_estimate)
        out["acceptance_rate"] = np.asarray(state.acceptance_rate)
        return out

    def load(saved: dict) -> HMCRunState:
        return HMCRunState(
            saved["position"],
            saved["logdensity"],
            saved["logdensity_grad"],
            np.asarray(saved["step_size"]),
            np.asarray(saved["acceptance_rate"]),
            jnp.asarray(saved["inverse_mass_matrix"]),
            MassMatrixEstimate(*saved["mass_matrix_estimate"]),
        )

    total = cfg.num_iterations
    is_eval = every(cfg.eval_freq, total)
    sample = lambda t: t >= burn_in  # noqa: E731
    schedule = Schedule(
        sample=sample,
        evaluate=is_eval,
        save=lambda t: True,
        log_every_step=True,
        draw=lambda t: sample(t) or is_eval(t),
    )
    return Algorithm(
        name="hmc",
        unit="iteration",
        num_steps=total,
        init=init,
        step=step,
        schedule=schedule,
        positions=lambda s: s.position,
        stats=stats,
        columns=("burn_in", "accept_prob", "accepted", "log_prob"),
        save=save,
        load=load,
        sample_stats=sample_stats,
        summary=lambda s: {"num_chains": C},
    )


def _hmc_state(state: HMCRunState):
    from blackjax.mcmc.hmc import HMCState

    return HMCState(state.position, state.logdensity, state.logdensity_grad)


def mcmc_summary(records: list[dict]) -> dict[str, Any]:
    """Acceptance and divergences over the run, from its metrics records."""
    post = [r for r in records if not r.get("burn_in")]
    return {
        "mean_accept_prob": float(np.mean([r["accept_prob"] for r in post])) if post else None,
        "num_divergent": int(sum(r.get("num_divergent", 0) for r in records)),
        "num_divergent_after_burn_in": int(sum(r.get("num_divergent", 0) for r in post)),
        "num_rejected": int(sum(r.get("num_rejected", 0) for r in post)),
        "num_leapfrog_steps_clamped": int(
            sum(r.get("num_leapfrog_steps_clamped", 0) for r in records)
        ),
    }


def run_hmc(
    cfg: HMCConfig, *, problem: Problem | None = None, **options: Unpack[RunOptions]
) -> RunResult:
    """Run (or resume) full-batch HMC as configured; returns the :class:`RunResult`.

    Everything is checked before anything is written. Restarting with the same ``--dir``
    resumes from the latest checkpoint and ends in exactly the state an uninterrupted run
    reaches. ``options``: :class:`~ppl_bnn.driver.runner.RunOptions`. An empty
    ``cfg.dir`` runs in memory.
    """
    check_config(cfg)
    problem = problem or build_problem(cfg)
    return run_from_config(
        build_hmc(cfg, problem), cfg, problem, extra_summary=mcmc_summary, **options
    )
