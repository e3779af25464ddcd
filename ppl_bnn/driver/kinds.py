"""Samplers and approximations: what the loop does differently for each kind of method.

An :class:`~ppl_bnn.driver.loop.Algorithm` holds one :class:`Kind`:

* :class:`SamplerKind` (HMC, NUTS, SG-MCMC, ...): the method's prediction is the online
  Bayesian model average of its posterior draws (the positions at sample steps); the
  draws are kept as they are taken, and the run-end checks (R-hat, ESS, divergences,
  ...) judge them.
* :class:`ApproximationKind` (SGD, deep ensembles, VI): the prediction is the average
  over the members of the approximation (ensemble members, variational samples), taken
  at evaluations and at the end; the final members are the run's draws, and no
  convergence check applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ppl_bnn.driver.evaluator import Evaluator
from ppl_bnn.driver.result import Kept, Outcome, from_run_dir, run_members
from ppl_bnn.evaluation.bma import average, ensemble_prediction, ensemble_update

__all__ = ["ApproximationKind", "Kind", "SamplerKind"]


class Kind(Protocol):
    """What differs between samplers and approximations, as the loop asks for it.

    ``ens`` is the online average of :mod:`ppl_bnn.evaluation.bma`, kept (and
    checkpointed) by the loop for every method.
    """

    def average(self, ens: Any, test_preds: np.ndarray, task: str) -> Any:
        """``ens`` after a sample step whose test predictions are ``test_preds``."""
        ...

    def record(self, ens: Any) -> dict[str, Any]:
        """The kind's entries of a metrics line."""
        ...

    def evaluation(
        self, evaluator: Evaluator, state: Any, t: int, positions: Any, test_preds, ens: Any
    ) -> dict[str, float]:
        """The metrics of evaluation step ``t`` (``test_preds``: the positions' test
        predictions when the step computed them, else ``None``)."""
        ...

    def outcome(
        self, alg, problem, rd, evaluator: Evaluator, tracker, state, ens, done: int, kept: Kept
    ) -> Outcome:
        """The draws and the predictive distribution of a run that has done ``done`` steps
        (an approximation writes its final draws here)."""
        ...

    def summary(self, ens: Any) -> dict[str, Any]:
        """The kind's summary entries."""
        ...

    def at_run_end(self, summary: dict, problem, rd, out: Outcome) -> list | None:
        """The failed run-end checks of a complete run, or ``None`` where none apply."""
        ...


@dataclass(frozen=True)
class SamplerKind:
    """A Markov chain: the positions at sample steps are posterior draws, averaged online."""

    def average(self, ens, test_preds, task):
        return ensemble_update(ens, test_preds, task)

    def record(self, ens) -> dict[str, Any]:
        return {"num_ensembled": int(ens.count)}

    def evaluation(self, evaluator, state, t, positions, test_preds, ens) -> dict[str, float]:
        problem = evaluator.problem
        if test_preds is None and problem.has_test:
            test_preds = evaluator.test(positions)
        ens_pred = ensemble_prediction(ens, problem.dataset.task) if ens.count else None
        return evaluator.metrics(evaluator.train(positions), test_preds, ens_pred)

    def outcome(self, alg, problem, rd, evaluator, tracker, state, ens, done, kept) -> Outcome:
        samples = sample_stats = loglik = None
        preds = members = prediction = None
        stored = rd.read_samples() if kept.collect else None
        if stored is not None and len(stored[0]) > len(kept.samples):
            # resumed: the draws of earlier calls are in the run directory
            samples, sample_stats, loglik, preds = from_run_dir(rd, evaluator, kept, stored)
        elif kept.collect and kept.samples:
            samples = Kept.stack(kept.samples)
            sample_stats = Kept.stack(kept.stats) if kept.stats else {}
            loglik = Kept.stack(kept.loglik) if kept.loglik else None
            if kept.preds:
                preds = np.stack(kept.preds, axis=1)
        if ens.count:
            prediction = ensemble_prediction(ens, problem.dataset.task)
            members = run_members(rd, preds)
        return Outcome(samples, sample_stats, loglik, preds, members, prediction)

    def summary(self, ens) -> dict[str, Any]:
        return {"num_ensembled": int(ens.count)}

    def at_run_end(self, summary, problem, rd, out) -> list | None:
        from ppl_bnn.diagnostics.checks import at_run_end

        return at_run_end(
            summary,
            problem,
            rd,
            samples=out.samples,
            sample_stats=out.sample_stats,
            predictions=out.predictions,
        )


@dataclass(frozen=True)
class ApproximationKind:
    """An approximation of the posterior by a set of members.

    Attributes:
        members: ``members(state, t)``: the stacked positions whose predictions are
            averaged into the method's predictive distribution (ensemble members,
            variational samples) after 0-based step ``t``.
        as_chains: the final members are chains of one draw each (ensemble members)
            rather than draws of ``chains`` chains (variational samples of independent
            fits, chain after chain).
        chains: the number of chains of members that are draws (``as_chains=False``).
    """

    members: Callable[[Any, int], dict]
    as_chains: bool = True
    chains: int = 1

    def average(self, ens, test_preds, task):
        return ens  # the prediction is the members', not an average over steps

    def record(self, ens) -> dict[str, Any]:
        return {}

    def evaluation(self, evaluator, state, t, positions, test_preds, ens) -> dict[str, float]:
        problem = evaluator.problem
        ens_pred = None
        if problem.has_test:
            approx = self.members(state, t)
            members = evaluator.test(approx)
            ens_pred = average(members, problem.dataset.task)
            if test_preds is None:
                test_preds = members if approx is positions else evaluator.test(positions)
        return evaluator.metrics(evaluator.train(positions), test_preds, ens_pred)

    def _shape(self, a) -> np.ndarray:
        """``(members, ...) -> (chain, draw, ...)``."""
        a = np.asarray(a)
        return a[:, None] if self.as_chains else a.reshape((self.chains, -1, *a.shape[1:]))

    def _per_draw(self, arrays: dict, num_steps: int) -> list[tuple[int, dict]]:
        """``(step, name -> (chain, ...))`` per draw: step ``num_steps`` for chains of one
        draw (ensemble members), else 1, 2, ... (the draws of each chain)."""
        by_draw = {k: self._shape(v) for k, v in arrays.items()}
        num = next(iter(by_draw.values())).shape[1]
        return [
            (num_steps if self.as_chains else i + 1, {k: v[:, i] for k, v in by_draw.items()})
            for i in range(num)
        ]

    def outcome(self, alg, problem, rd, evaluator, tracker, state, ens, done, kept) -> Outcome:
        samples: dict[str, np.ndarray] | None = None
        sample_stats: dict[str, np.ndarray] | None = None
        loglik: dict[str, np.ndarray] | None = None
        preds = members = prediction = None
        complete = done >= alg.num_steps
        approx = self.members(state, max(done, 1) - 1)
        if complete and rd.writes:
            draws = self._per_draw(evaluator.sites(approx), alg.num_steps)
            pointwise = (
                self._per_draw(evaluator.pointwise(approx), alg.num_steps)
                if kept.log_likelihood
                else None
            )
            for i, (step, values) in enumerate(draws):
                groups = {"log_likelihood": pointwise[i][1]} if pointwise else None
                rd.append_sample(step, values, groups)
        if problem.has_test:
            members = evaluator.test(approx)
            prediction = average(members, problem.dataset.task)
            preds = self._shape(members)
            if complete and rd.writes:
                found = {"predictions": members.astype(np.float32), "params": tracker.take(approx)}
                for step, arrays in self._per_draw(found, alg.num_steps):
                    rd.save_draw(step, **arrays, burn_in=np.asarray(False))
        if kept.collect:
            samples = {k: self._shape(v) for k, v in evaluator.sites(approx).items()}
            sample_stats = {}
            if kept.log_likelihood:
                loglik = {k: self._shape(v) for k, v in evaluator.pointwise(approx).items()}
        return Outcome(samples, sample_stats, loglik, preds, members, prediction)

    def summary(self, ens) -> dict[str, Any]:
        return {}

    def at_run_end(self, summary, problem, rd, out) -> list | None:
        return None
