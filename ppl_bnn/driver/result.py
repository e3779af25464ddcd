"""What a run returns: :class:`RunResult`, and :func:`finish`, which builds it at a run's end.

:func:`finish` writes the summary (``summary.json``), the final predictive distribution
(``predictions.npy``) and, for an approximation, its final draws; what differs between
samplers and approximations comes from the algorithm's kind
(:mod:`ppl_bnn.driver.kinds`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import numpy as np

from ppl_bnn.driver.evaluator import Evaluator
from ppl_bnn.store.rundir import RunDir

__all__ = ["Kept", "Outcome", "RunResult", "finish"]


@dataclass
class RunResult:
    """What a run returns (in memory or from a run directory).

    Attributes:
        summary: the summary dictionary (also ``summary.json`` of an on-disk run).
        samples: site name -> ``(chain, draw, *site_shape)``, constrained values of every
            latent and deterministic site (``None`` when not collected). A run directory
            resumed in the middle of its sampling gives every draw of every call, read
            back from its sample store, and so do the three fields below (the statistics
            and log likelihoods stored beside each draw, the predictions of ``draws/``):
            the same groups and values as the uninterrupted run's.
        sample_stats: name -> ``(chain, draw)`` (acceptance rate, divergences, ...).
        predictions: function-space draws on the test inputs ``(chain, draw, n_test, k)``
            (class probabilities, or mean and std), or ``None`` without a test split.
        log_likelihood: observed site -> ``(chain, draw, n_train)``, when asked for.
        observed: the observed data (``{"y": y_train}``).
        run_dir: the run directory, or ``None`` in memory.
    """

    summary: dict[str, Any]
    samples: dict[str, np.ndarray] | None = None
    sample_stats: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: np.ndarray | None = None
    log_likelihood: dict[str, np.ndarray] | None = None
    observed: dict[str, np.ndarray] = field(default_factory=dict)
    run_dir: str | None = None

    def __getitem__(self, key: str) -> Any:  # the summary, as the runners returned it
        return self.summary[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.summary.get(key, default)

    def diagnose(self) -> list:
        """The run's failed checks (divergences, stuck chains, R-hat, ESS, E-BFMI, clamped
        trajectories, saturated trees) as :class:`ppl_bnn.diagnostics.RunDiagnostic`
        records: the ones found at the run's end (``summary["warnings"]``), else computed
        now from the draws; ``[]`` for a run that passed them all, or an approximation
        (SGD, ensembles, VI)."""
        from ppl_bnn.diagnostics.checks import RunDiagnostic, diagnose_result

        if "warnings" in self.summary:
            return [RunDiagnostic.from_dict(d) for d in self.summary["warnings"]]
        return diagnose_result(self)

    def to_datatree(self, **kwargs):
        """The run as an ArviZ ``DataTree`` (posterior, sample_stats, log_likelihood,
        observed_data, predictions): :func:`ppl_bnn.diagnostics.to_datatree`."""
        from ppl_bnn.diagnostics import to_datatree

        kwargs.setdefault("task", self.summary.get("task"))
        return to_datatree(
            self.samples or {},
            sample_stats=self.sample_stats or None,
            log_likelihood=self.log_likelihood,
            observed_data=self.observed or None,
            predictions=self.predictions,
            **kwargs,
        )


class Kept:
    """Samples, statistics, predictions and log likelihoods of this call, in memory."""

    def __init__(self, collect: bool, log_likelihood: bool):
        self.collect, self.log_likelihood = collect, log_likelihood
        self.samples: list[dict] = []
        self.stats: list[dict] = []
        self.preds: list[np.ndarray] = []
        self.loglik: list[dict] = []

    def add(self, values: dict, groups: dict, test_preds) -> None:
        if not self.collect:
            return
        if test_preds is not None:
            self.preds.append(np.asarray(test_preds, np.float32))
        self.samples.append(values)
        if "sample_stats" in groups:
            self.stats.append(groups["sample_stats"])
        if "log_likelihood" in groups:
            self.loglik.append(groups["log_likelihood"])

    @staticmethod
    def stack(draws: list[dict]) -> dict[str, np.ndarray]:
        """Draws of ``(chain, ...)`` arrays stacked on axis 1: ``(chain, draw, ...)``."""
        return {k: np.stack([np.asarray(d[k]) for d in draws], axis=1) for k in draws[0]}


class Outcome(NamedTuple):
    """A finished run's draws and predictive distribution, as its kind gives them.

    Attributes:
        samples: site -> ``(chain, draw, ...)``, or ``None`` when not collected.
        sample_stats: name -> ``(chain, draw)``, or ``None``.
        log_likelihood: observed site -> ``(chain, draw, n_train)``, or ``None``.
        predictions: the test predictions of the draws ``(chain, draw, n_test, k)``.
        members: every member's test prediction ``(members, n_test, k)`` (what is compared
            with a reference), or ``None``.
        prediction: the method's predictive distribution on the test inputs, or ``None``.
    """

    samples: dict[str, np.ndarray] | None = None
    sample_stats: dict[str, np.ndarray] | None = None
    log_likelihood: dict[str, np.ndarray] | None = None
    predictions: np.ndarray | None = None
    members: np.ndarray | None = None
    prediction: np.ndarray | None = None


def finish(
    alg,
    problem,
    rd,
    evaluator,
    tracker,
    state,
    ens,
    elapsed,
    done,
    kept,
    config,
    reference,
    extra_summary,
    t_call,
) -> RunResult:
    """The summary and the :class:`RunResult` of a run of ``alg`` that has done ``done``
    steps (``elapsed`` seconds of them), written to ``rd`` (which is closed)."""
    ds = problem.dataset
    complete = done >= alg.num_steps
    out = alg.kind.outcome(alg, problem, rd, evaluator, tracker, state, ens, done, kept)
    records = rd.read_metrics()
    last = records[-1] if records else {}
    summary = {
        "method": alg.name,
        "dataset": ds.name,
        "task": ds.task,
        "model": problem.model_name,
        "num_parameters": problem.logdensity.num_parameters(),
        f"{alg.unit}s_done": done,
        f"num_{alg.unit}s": alg.num_steps,
        **alg.kind.summary(ens),
        **alg.summary(state),
        **(extra_summary(records) if extra_summary else {}),
        **(
            {"wall_time_sampling": elapsed}
            if alg.unit == "iteration"
            else {"wall_time_training": elapsed, "wall_time_call": time.perf_counter() - t_call}
        ),
        "final": {k: v for k, v in last.items() if "/" in k},
        "complete": complete,
        "config": config,
    }
    if out.prediction is not None and rd.writes:
        summary["predictions"] = str(
            rd.write_array("predictions.npy", out.prediction.astype(np.float32))
        )
    if reference and out.members is not None:
        from ppl_bnn.evaluation.reference import compare_to_reference, load_reference

        ref = load_reference(reference, ds)
        summary["reference"] = {
            "path": str(reference),
            **compare_to_reference(out.members, ref, ds, seed=int(config.get("seed", 0))),
        }
    failed = alg.kind.at_run_end(summary, problem, rd, out) if complete else None
    if failed is not None:
        summary["warnings"] = [f.to_dict() for f in failed]
    rd.write_summary(summary)
    rd.close()
    if failed and rd.primary:
        from ppl_bnn.diagnostics.checks import warn

        warn(failed)
    observed = {site: np.asarray(ds.y_train) for site in problem.logdensity.observed_sites[:1]}
    return RunResult(
        summary=summary,
        samples=out.samples,
        sample_stats=out.sample_stats or {},
        predictions=out.predictions,
        log_likelihood=out.log_likelihood,
        observed=observed,
        run_dir=None if rd.in_memory else str(rd.path),
    )


def from_run_dir(rd: RunDir, evaluator: Evaluator, kept: Kept, stored):
    """``(samples, sample_stats, log_likelihood, predictions)`` of every stored draw of a
    resumed run: what the run directory keeps beside each draw, so that a resumed result
    holds what an uninterrupted one does (the same values: the stored ones)."""
    steps, samples = stored
    if kept.samples and set(kept.samples[0]) - set(samples):
        # stored before deterministic sites were: recompute them from the latent values
        samples = _over_stored(evaluator, samples, evaluator.sites)
    groups = rd.read_sample_stats(steps)
    sample_stats = groups.get("sample_stats", {})
    loglik = groups.get("log_likelihood") if kept.log_likelihood else None
    if kept.log_likelihood and loglik is None:  # not stored: computed from the stored draws
        loglik = _over_stored(evaluator, stored[1], evaluator.pointwise)
    preds = rd.read_predictions(steps) if evaluator.problem.has_test else None
    return samples, sample_stats, loglik, preds


def _over_stored(evaluator: Evaluator, stored: dict[str, np.ndarray], fn) -> dict:
    """``fn`` (``evaluator.sites`` or ``evaluator.pointwise``) of every stored draw, from
    its constrained latent values, stacked ``(chain, draw, ...)``."""
    ld = evaluator.problem.logdensity
    unconstrain = jax.vmap(ld.unconstrain)
    draws = [
        fn(unconstrain({k: stored[k][:, i] for k in ld.latent_sites}))
        for i in range(next(iter(stored.values())).shape[1])
    ]
    return Kept.stack(draws)


def run_members(rd: RunDir, preds: np.ndarray | None) -> np.ndarray | None:
    """Every post-burn-in test prediction of every chain ``(members, n, k)``: from the
    run directory (all calls), else from this call's memory."""
    if not rd.in_memory and rd.primary:
        from ppl_bnn.evaluation.reference import run_predictions

        try:
            return run_predictions(rd.path)
        except ValueError:
            return None
    if preds is None:
        return None
    return preds.reshape((-1,) + preds.shape[2:])
