"""Checks that say when an MCMC run failed: one warning line per kind of failure.

Stan's and NumPyro's run-end diagnostics are the model. Each check reads the draws kept
after warmup (every sampler's ``sample_stats``, the posterior sites or the function-space
draws) and returns a :class:`RunDiagnostic` when it fails, else ``None``:

* ``divergences``: transitions after warmup that diverged (``diverging``);
* ``stuck_chains``: chains whose mean acceptance probability after warmup is below
  :data:`STUCK_ACCEPT` (``acceptance_rate``), or whose log density stays more than
  :data:`LP_GAP` standard deviations below the best chain's (``lp``);
* ``rhat``: rank-normalised split R-hat above :data:`RHAT_MAX` on any quantity;
* ``ess``: bulk ESS below :data:`ESS_MIN_PER_CHAIN` per chain on any quantity;
* ``ebfmi``: E-BFMI below :data:`EBFMI_MIN` in any chain (Stan's rule; ``energy``);
* ``trajectory_clamped``: trajectories that hit the bound on their leapfrog steps
  (HMC's ``max_num_steps``; ``n_steps``);
* ``tree_depth``: NUTS trajectories that reached ``max_num_doublings`` (``tree_depth``).

R-hat and ESS (ArviZ's figures, computed for all quantities at once by
``ppl_bnn.diagnostics.fast``) are computed on the model's sites for ordinary
models (parameter space) and on the test predictions for ppl_bnn's neural networks
(function space: network weights are permutation symmetric, so their R-hat says little;
without a test split, on the log density). At most :data:`MAX_QUANTITIES` scalar
quantities are checked, evenly spaced over each site, so that the checks cost little
whatever the model's size.

Approximations (SGD, ensembles, VI) get none of these; SG-MCMC gets R-hat and ESS (it has
no acceptance test, trajectories or energies).

One module (about 650 lines) on purpose: a dozen short checks sharing their thresholds,
the :class:`RunDiagnostic` record and the wording of their one-line warnings;
:func:`diagnose` runs them in one order.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppl_bnn.diagnostics import fast

__all__ = [
    "EBFMI_MIN",
    "ESS_MIN_PER_CHAIN",
    "LP_GAP",
    "MAX_QUANTITIES",
    "RHAT_MAX",
    "STUCK_ACCEPT",
    "RunDiagnostic",
    "RunWarning",
    "check_divergences",
    "check_ebfmi",
    "check_ess",
    "check_rhat",
    "check_stuck_chains",
    "check_tree_depth",
    "check_trajectory_clamped",
    "convergence_quantities",
    "diagnose",
    "diagnose_result",
    "diagnose_run_dir",
    "is_approximation",
    "is_bnn",
    "warn",
]

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100.0
EBFMI_MIN = 0.3
STUCK_ACCEPT = 0.05
LP_GAP = 10.0
MAX_QUANTITIES = 256


class RunWarning(UserWarning):
    """An MCMC run whose draws may not be from the posterior (see :func:`diagnose`)."""


# every run warning is shown, even when the same message comes again (another run)
warnings.filterwarnings("always", category=RunWarning)


@dataclass(frozen=True)
class RunDiagnostic:
    """One failed check.

    Attributes:
        kind: ``divergences``, ``stuck_chains``, ``rhat``, ``ess``, ``ebfmi``,
            ``trajectory_clamped`` or ``tree_depth``.
        message: the warning line.
        chains: the chains concerned (0-based), for per-chain checks.
        sites: the quantities concerned (``sigma``, ``beta[1]``, ``test_prob[12, 3]``),
            worst first, at most 8.
        count: how many transitions, chains or quantities failed.
        total: out of how many.
        value: the worst figure (R-hat, bulk ESS per chain, E-BFMI, acceptance, share of
            transitions).
        threshold: the check's threshold.
    """

    kind: str
    message: str
    chains: tuple[int, ...] = ()
    sites: tuple[str, ...] = ()
    count: int = 0
    total: int = 0
    value: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["chains"], out["sites"] = list(self.chains), list(self.sites)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunDiagnostic:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        fields["chains"] = tuple(int(c) for c in fields.get("chains", ()))
        fields["sites"] = tuple(str(s) for s in fields.get("sites", ()))
        return cls(**fields)

    def __str__(self) -> str:
        return self.message


# ------------------------------------------------------------------ the checks
def _chains_text(chains: Sequence[int]) -> str:
    shown = ", ".join(map(str, chains[:8])) + (", ..." if len(chains) > 8 else "")
    return f"chain{'s' if len(chains) > 1 else ''} {shown}"


def _share(count: int, total: int) -> str:
    return f"{count} of {total} transitions after warmup ({100 * count / max(total, 1):.1f}%)"


def check_divergences(diverging) -> RunDiagnostic | None:
    """Divergent transitions after warmup ``(chain, draw)``: count and share."""
    d = np.asarray(diverging, bool)
    count, total = int(d.sum()), int(d.size)
    if not count:
        return None
    chains = tuple(int(c) for c in np.flatnonzero(d.any(axis=-1))) if d.ndim == 2 else ()
    return RunDiagnostic(
        "divergences",
        f"{_share(count, total)} diverged: the sampler cannot follow the posterior's "
        "curvature there, so the draws are biased; use a smaller step size (raise "
        "target_accept) or reparameterise the model",
        chains=chains,
        count=count,
        total=total,
        value=count / total,
        threshold=0.0,
    )


def check_stuck_chains(
    acceptance_rate=None, lp=None, threshold: float = STUCK_ACCEPT, *, lp_gap: float = LP_GAP
) -> RunDiagnostic | None:
    """Chains stuck after warmup, from ``(chain, draw)`` arrays: those whose mean
    acceptance probability is below ``threshold`` (a non-finite one counts as 0), and
    those whose log density ``lp`` stays far below the best accepting chain's (its mean
    more than ``lp_gap`` within-chain standard deviations, and ``lp_gap`` nats, lower,
    and its 90% quantile below that chain's 10% quantile: a chain that moves, but away
    from the posterior's bulk, such as a scale parameter drifting off under a flat
    prior)."""
    parts, stuck_all = [], set()
    value = None
    if acceptance_rate is not None and np.ndim(acceptance_rate) == 2:
        a = np.asarray(acceptance_rate, np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        per_chain = a.mean(axis=1) if a.shape[1] else np.ones(a.shape[0])
        stuck = np.flatnonzero(per_chain < threshold)
        if stuck.size:
            lo, hi = (f"{per_chain[stuck].min():.2f}", f"{per_chain[stuck].max():.2f}")
            rate = lo if lo == hi else f"{lo} to {hi}"
            verb = "accept" if stuck.size > 1 else "accepts"
            others = np.delete(per_chain, stuck)
            rest = f"; the other chains accept {others.mean():.2f}" if others.size else ""
            parts.append(
                f"{_chains_text(stuck.tolist())} {verb} {rate} of proposals after warmup "
                f"(stuck){rest}"
            )
            stuck_all.update(stuck.tolist())
            value = float(per_chain[stuck].min())
    if lp is not None and np.ndim(lp) == 2 and np.shape(lp)[0] > 1 and np.shape(lp)[1] > 1:
        x = np.asarray(lp, np.float64)
        moving = np.array([c not in stuck_all for c in range(x.shape[0])])
        if np.isfinite(x).all() and moving.sum() > 1:  # among the chains that do accept
            means, sds = x.mean(axis=1), x.std(axis=1)
            best = int(np.argmax(np.where(moving, means, -np.inf)))
            gap = lp_gap * max(float(np.median(sds[moving])), 1.0)
            apart = np.quantile(x, 0.9, axis=1) < np.quantile(x[best], 0.1)  # no overlap
            low = np.flatnonzero(moving & apart & (means < means[best] - gap))
            if low.size:
                verb = "stay" if low.size > 1 else "stays"
                parts.append(
                    f"{_chains_text(low.tolist())} {verb} at a log density far below chain "
                    f"{best}'s (mean {means[low].min():.4g} against {means[best]:.4g}; "
                    "stuck)"
                )
                stuck_all.update(low.tolist())
    if not parts:
        return None
    chains = tuple(sorted(int(c) for c in stuck_all))
    return RunDiagnostic(
        "stuck_chains",
        "; ".join(parts) + f": {'their' if len(chains) > 1 else 'its'} draws are not from "
        "the posterior; rerun with another seed, a smaller step size or standardised data",
        chains=chains,
        count=len(chains),
        total=int(np.shape(acceptance_rate if acceptance_rate is not None else lp)[0]),
        value=value,
        threshold=threshold,
    )


def _flat(values: Mapping[str, np.ndarray], cap: int = MAX_QUANTITIES):
    """``(names, (m, chain, draw))``: every site's scalar coordinates (evenly spaced, at
    most about ``cap`` in all), moved to the front."""
    sites = {k: np.asarray(v) for k, v in values.items() if np.ndim(v) >= 2}
    sites = {k: v for k, v in sites.items() if np.issubdtype(v.dtype, np.number)}
    if not sites:
        return [], np.zeros((0, 1, 1))
    per_site = max(1, cap // len(sites))
    names, arrays = [], []
    for name, v in sites.items():
        shape = v.shape[2:]
        size = int(np.prod(shape, dtype=int))
        idx = np.unique(np.linspace(0, size - 1, min(size, per_site)).round().astype(int))
        flat = v.reshape((*v.shape[:2], size))[..., idx].astype(np.float64)
        for i in idx:
            if shape:
                where = ", ".join(map(str, np.unravel_index(int(i), shape)))
                names.append(f"{name}[{where}]")
            else:
                names.append(name)
        arrays.append(np.moveaxis(flat, -1, 0))
    return names, np.concatenate(arrays, axis=0)


def _worst(names, figures, order) -> tuple[str, ...]:
    return tuple(names[i] for i in order[:8])


def check_rhat(
    values: Mapping[str, np.ndarray], threshold: float = RHAT_MAX, *, space: str = "parameter"
) -> RunDiagnostic | None:
    """Rank-normalised split R-hat of every quantity (site -> ``(chain, draw, ...)``)
    above ``threshold``; needs two chains and four draws. A quantity whose chains are
    each constant at different values has an infinite R-hat; a constant one none."""
    names, x = _flat(values)
    if not names or x.shape[1] < 2 or x.shape[2] < 4:
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = fast.rhat(np.moveaxis(x, 0, -1)).reshape(len(names))
    varies = np.ptp(x.reshape(len(names), -1), axis=1) > 0
    frozen = np.ptp(x, axis=2).max(axis=1) == 0  # every chain constant
    r = np.where(np.isfinite(r) & ~frozen, r, np.where(varies, np.inf, np.nan))
    bad = np.flatnonzero(r > threshold)
    if not bad.size:
        return None
    order = bad[np.argsort(-r[bad])]
    worst = float(r[order[0]])
    return RunDiagnostic(
        "rhat",
        f"R-hat above {threshold} on {bad.size} of {len(names)} {_quantities(space)} "
        f"(worst {_figure(worst)}, {names[order[0]]}): the chains disagree, they have not "
        "converged; run a longer warmup, or look for a multimodal or badly scaled posterior",
        sites=_worst(names, r, order),
        count=int(bad.size),
        total=len(names),
        value=worst,
        threshold=threshold,
    )


def check_ess(
    values: Mapping[str, np.ndarray],
    min_per_chain: float = ESS_MIN_PER_CHAIN,
    *,
    space: str = "parameter",
) -> RunDiagnostic | None:
    """Bulk ESS of every quantity below ``min_per_chain`` times the number of chains
    (Stan's rule); needs four draws per chain."""
    names, x = _flat(values)
    if not names or x.shape[2] < 4:
        return None
    chains = x.shape[1]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        e = fast.ess_bulk(np.moveaxis(x, 0, -1)).reshape(len(names))
    varies = np.ptp(x.reshape(len(names), -1), axis=1) > 0
    e = np.where(np.isfinite(e) | ~varies, e, 0.0)
    bad = np.flatnonzero(e < min_per_chain * chains)
    if not bad.size:
        return None
    order = bad[np.argsort(e[bad])]
    lowest = float(e[order[0]])
    short = x.shape[2] < min_per_chain
    advice = (
        f"keep at least {int(min_per_chain)} draws per chain"
        if short
        else "run more samples, or fix what slows the chains down"
    )
    return RunDiagnostic(
        "ess",
        f"bulk ESS below {int(min_per_chain)} per chain on {bad.size} of {len(names)} "
        f"{_quantities(space)} (lowest {lowest / chains:.1f} per chain, {names[order[0]]}): "
        "too few effective draws for "
        f"reliable means and R-hat; {advice}",
        sites=_worst(names, e, order),
        count=int(bad.size),
        total=len(names),
        value=lowest / chains,
        threshold=min_per_chain,
    )


def _figure(r: float) -> str:
    return f"{r:.3f}" if abs(r) < 100 else f"{r:.3g}"


def _quantities(space: str) -> str:
    return {
        "function": "test predictions",
        "parameter": "parameters",
        "log density": "log densities",
    }.get(space, "quantities")


def check_ebfmi(energy, threshold: float = EBFMI_MIN) -> RunDiagnostic | None:
    """Chains whose E-BFMI (of the Hamiltonian ``energy`` ``(chain, draw)``) is below
    ``threshold``: the momentum resampling explores the energy poorly."""
    from arviz_stats.base import array_stats

    en = np.asarray(energy, np.float64)
    if en.ndim != 2 or en.shape[1] < 4 or not np.isfinite(en).all():
        return None
    with np.errstate(all="ignore"):
        b = np.asarray(array_stats.bfmi(en), np.float64).reshape(en.shape[0])
    low = np.flatnonzero(np.nan_to_num(b, nan=np.inf) < threshold)
    if not low.size:
        return None
    figures = ", ".join(f"{b[c]:.2f}" for c in low[:8])
    return RunDiagnostic(
        "ebfmi",
        f"E-BFMI below {threshold} in {_chains_text(low.tolist())} ({figures}): the momentum "
        "resampling explores the energy poorly (heavy tails or a funnel); reparameterise "
        "the model or use a better mass matrix",
        chains=tuple(int(c) for c in low),
        count=int(low.size),
        total=int(en.shape[0]),
        value=float(b[low].min()),
        threshold=threshold,
    )


def check_trajectory_clamped(
    n_steps, max_num_steps: int, *, option: str = "max_num_steps"
) -> RunDiagnostic | None:
    """Transitions whose leapfrog steps ``(chain, draw)`` reached the bound: the
    trajectory is shorter than its rule wants (each draw moves less)."""
    s = np.asarray(n_steps)
    hit = s >= max_num_steps
    count, total = int(hit.sum()), int(s.size)
    if not count:
        return None
    return RunDiagnostic(
        "trajectory_clamped",
        f"trajectories clamped at {option}={max_num_steps} leapfrog steps in "
        f"{_share(count, total)}: the step size is small for the trajectory length, so "
        f"each draw moves less than it should; raise {option}, or improve the mass matrix "
        "(dense_mass) or the data's scaling",
        chains=tuple(int(c) for c in np.flatnonzero(hit.any(axis=-1))) if hit.ndim == 2 else (),
        count=count,
        total=total,
        value=count / total,
        threshold=float(max_num_steps),
    )


def check_tree_depth(tree_depth, max_num_doublings: int) -> RunDiagnostic | None:
    """NUTS transitions whose tree depth ``(chain, draw)`` reached ``max_num_doublings``:
    the trajectory stopped before it turned."""
    d = np.asarray(tree_depth)
    hit = d >= max_num_doublings
    count, total = int(hit.sum()), int(d.size)
    if not count:
        return None
    return RunDiagnostic(
        "tree_depth",
        f"tree depth saturated at max_num_doublings={max_num_doublings} in "
        f"{_share(count, total)}: NUTS stopped before the trajectory turned, so the "
        "chains move slowly; raise max_num_doublings or reparameterise the model",
        chains=tuple(int(c) for c in np.flatnonzero(hit.any(axis=-1))) if hit.ndim == 2 else (),
        count=count,
        total=total,
        value=count / total,
        threshold=float(max_num_doublings),
    )


# ------------------------------------------------------------------ all of them
def diagnose(
    sample_stats: Mapping[str, np.ndarray] | None,
    quantities: Mapping[str, np.ndarray] | None,
    *,
    space: str = "parameter",
    max_num_steps: int | None = None,
    max_steps_option: str = "max_num_steps",
    max_num_doublings: int | None = None,
) -> list[RunDiagnostic]:
    """Every check that applies, in a fixed order: sampler statistics first (what went
    wrong), then R-hat and ESS (what it did to the draws).

    Args:
        sample_stats: name -> ``(chain, draw)`` after warmup (ArviZ's or the kernels'
            names: ``diverging``/``is_divergent``, ``acceptance_rate``, ``energy``,
            ``n_steps``/``num_integration_steps``, ``tree_depth``); missing ones are not
            checked.
        quantities: name -> ``(chain, draw, ...)``: what R-hat and ESS are computed on.
        space: ``"parameter"``, ``"function"`` or ``"log density"`` (for the messages).
        max_num_steps: the bound on the leapfrog steps of one trajectory (HMC).
        max_steps_option: that bound's option name (for the message).
        max_num_doublings: NUTS's bound on the tree depth.
    """
    stats = dict(sample_stats or {})

    def get(*names):
        for n in names:
            if n in stats and np.size(stats[n]):
                return np.asarray(stats[n])
        return None

    found: list[RunDiagnostic | None] = []
    diverging = get("diverging", "is_divergent")
    if diverging is not None:
        found.append(check_divergences(diverging))
    # a network's chains may sit in modes of different log density: its stuck chains are
    # the ones that accept nothing, its disagreeing ones what function-space R-hat finds
    accept = get("acceptance_rate")
    lp = get("lp") if space == "parameter" else None
    if accept is not None or lp is not None:
        found.append(check_stuck_chains(accept, lp))
    energy = get("energy")
    if energy is not None:
        found.append(check_ebfmi(energy))
    steps = get("n_steps", "num_integration_steps")
    if steps is not None and max_num_steps:
        found.append(check_trajectory_clamped(steps, max_num_steps, option=max_steps_option))
    depth = get("tree_depth")
    if depth is not None and max_num_doublings:
        found.append(check_tree_depth(depth, max_num_doublings))
    if quantities:
        found.append(check_rhat(quantities, space=space))
        found.append(check_ess(quantities, space=space))
    return [f for f in found if f is not None]


def is_bnn(model=None, sites: Sequence[str] = ()) -> bool:
    """Whether a model is a ppl_bnn neural network (it carries a ``net``, or its sites
    are a network's ``net/...`` parameters): then R-hat and ESS go to function space."""
    if model is not None and hasattr(model, "net"):
        return True
    return any(s == "net" or s.startswith(("net/", "net.")) for s in sites)


def convergence_quantities(
    samples: Mapping[str, np.ndarray] | None,
    predictions: np.ndarray | None,
    *,
    bnn: bool,
    task: str | None = None,
    sample_stats: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """``(quantities, space)`` on which R-hat and ESS are checked: the sites (parameter
    space) of an ordinary model; for a network the test predictions (function space:
    ``test_prob`` per test point and class, or ``test_mean``), else its log density."""
    if not bnn:
        return dict(samples or {}), "parameter"
    if predictions is not None and np.ndim(predictions) == 4:
        p = np.asarray(predictions)
        if task == "regression" and p.shape[-1] == 2:
            return {"test_mean": p[..., 0]}, "function"
        return {"test_prob": p}, "function"
    lp = (sample_stats or {}).get("lp")
    if lp is not None and np.ndim(lp) == 2:
        return {"lp": np.asarray(lp)}, "log density"
    return {}, "function"


def _bounds(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The trajectory bounds of the run's configuration, for :func:`diagnose`."""
    config = summary.get("config") or {}
    method = summary.get("method")
    out: dict[str, Any] = {}
    if method == "hmc" and config.get("max_num_leapfrog_steps"):
        out.update(
            max_num_steps=int(config["max_num_leapfrog_steps"]),
            max_steps_option="max_num_leapfrog_steps",
        )
    elif method == "hmc-window" and config.get("max_num_steps"):
        out["max_num_steps"] = int(config["max_num_steps"])
    elif method == "nuts" and config.get("max_num_doublings"):
        out["max_num_doublings"] = int(config["max_num_doublings"])
    return out


def diagnose_result(result, *, bnn: bool | None = None) -> list[RunDiagnostic]:
    """The checks of a :class:`~ppl_bnn.driver.loop.RunResult` (what
    ``RunResult.diagnose()`` returns when its summary holds none)."""
    summary = result.summary or {}
    if is_approximation(summary.get("method")):
        return []
    samples = result.samples or {}
    if bnn is None:
        bnn = is_bnn(sites=list(samples)) or (not samples and result.predictions is not None)
    quantities, space = convergence_quantities(
        samples,
        result.predictions,
        bnn=bnn,
        task=summary.get("task"),
        sample_stats=result.sample_stats,
    )
    return diagnose(result.sample_stats, quantities, space=space, **_bounds(summary))


def at_run_end(
    summary: Mapping[str, Any],
    problem,
    rd,
    *,
    samples: Mapping[str, np.ndarray] | None,
    sample_stats: Mapping[str, np.ndarray] | None,
    predictions: np.ndarray | None,
) -> list[RunDiagnostic]:
    """The checks of a finished sampler run on ``problem``, from what it kept in memory
    or, when it kept nothing there, from its run directory ``rd``."""
    bnn = is_bnn(problem.model, list(problem.logdensity.shapes))
    if samples is None and not sample_stats and predictions is None and rd.writes:
        sample_stats, samples, predictions, _ = _stored(rd, bnn)
    quantities, space = convergence_quantities(
        samples, predictions, bnn=bnn, task=summary.get("task"), sample_stats=sample_stats
    )
    return diagnose(sample_stats, quantities, space=space, **_bounds(summary))


def _stored(rd, bnn: bool):
    """``(sample_stats, samples, predictions, task)`` read back from a run directory: for
    a network its test draws after burn-in and no weights, else every stored site."""
    sample_stats: dict = {}
    samples = predictions = task = None
    steps = rd.samples.steps() if rd.samples is not None else []
    if steps:
        sample_stats = rd.read_sample_stats(steps).get("sample_stats", {})
        if not bnn:
            stored = rd.read_samples()
            samples = stored[1] if stored is not None else None
    if bnn:
        from ppl_bnn.diagnostics.convergence import load_run_draws

        try:
            draws = load_run_draws(rd.path)
            predictions, task = draws["predictions"], draws["task"]
        except (FileNotFoundError, ValueError):
            pass
    return sample_stats, samples, predictions, task


def diagnose_run_dir(run_dir) -> list[RunDiagnostic]:
    """The checks of a run directory, recomputed from its files (a run still going, or
    one stopped before its end, included); ``[]`` for an approximation (SGD, VI)."""
    from ppl_bnn.store.rundir import RunDir

    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {path} does not exist")
    summary: dict[str, Any] = {}
    for name in ("summary.json", "config.json"):
        f = path / name
        if f.is_file():
            try:
                loaded = json.loads(f.read_text())
            except ValueError as e:  # a torn file: named, in one line
                raise ValueError(f"{f} is not readable JSON ({e}): restore it") from None
            summary = loaded if name == "summary.json" else {"config": loaded}
            break
    config = summary.get("config") or {}
    summary = {**summary, "method": summary.get("method") or _method_of(config)}
    if is_approximation(summary["method"]):
        return []
    rd = RunDir(path, primary=True)
    # a user's model is recorded by its name or file ("model"), a network by its fields
    bnn = not config.get("model")
    sample_stats, samples, predictions, task = _stored(rd, bnn)
    if not bnn and is_bnn(sites=list(samples or {})):
        bnn = True
        predictions, task = _stored(rd, True)[2:]
    task = summary.get("task") or task
    quantities, space = convergence_quantities(
        samples, predictions, bnn=bnn, task=task, sample_stats=sample_stats
    )
    return diagnose(sample_stats, quantities, space=space, **_bounds(summary))


def is_approximation(method: str | None) -> bool:
    """Whether a method's draws come from an approximation (SGD, ensembles, VI), to which
    no MCMC check applies."""
    m = str(method or "")
    return m in ("sgd", "ensemble", "map", "mfvi") or m.startswith("vi")


def _method_of(config: Mapping[str, Any]) -> str | None:
    """A run's method from its configuration alone (a run without a summary yet)."""
    if "kernel" in config:  # nuts, hmc (window-adapted: "hmc-window"), mams, chees, mclmc
        return "hmc-window" if config["kernel"] == "hmc" else str(config["kernel"])
    if "max_num_leapfrog_steps" in config:
        return "hmc"
    if "vi_guide" in config:
        return "vi"
    if "step_size_schedule" in config:
        return "sgmcmc"
    if "init_step_size" in config:
        return "sgd"
    return None


def warn(found: Sequence[RunDiagnostic]) -> None:
    """One :class:`RunWarning` per failed check, attributed to the first caller outside
    ppl_bnn (the line that started the run); under the commands (``ppl-bnn hmc``, ...)
    one printed ``warning: ...`` line each instead."""
    import os

    import ppl_bnn
    from ppl_bnn.cli.diagnose import PRINT_RUN_WARNINGS

    stream = PRINT_RUN_WARNINGS.get()
    if stream is not None:
        for f in found:
            print(f"warning: {f.message}", file=stream, flush=True)
        return
    inside = (os.path.dirname(ppl_bnn.__file__), os.path.dirname(__file__))
    for f in found:
        warnings.warn(f.message, RunWarning, skip_file_prefixes=inside)
