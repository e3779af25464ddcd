"""What every method's run function shares: its per-call keywords and the step from a
config and an :class:`~ppl_bnn.driver.loop.Algorithm` to the loop.

Each method's ``run_<method>(cfg, *, problem=None, **options)`` checks ``cfg``, builds the
problem (unless given one) and its algorithm, and hands them to :func:`run_from_config`;
``options`` are the :class:`RunOptions`, the same for every method.
"""

from __future__ import annotations

from typing import Any, TypedDict

from ppl_bnn.config import applicable
from ppl_bnn.declare.problem import Problem
from ppl_bnn.driver.loop import Algorithm, RunResult
from ppl_bnn.driver.loop import run as run_loop
from ppl_bnn.store.rundir import open_run_dir

__all__ = ["RunOptions", "run_from_config", "run_record"]


class RunOptions(TypedDict, total=False):
    """The per-call keywords of every ``run_<method>`` function (besides ``problem``).

    Attributes:
        argv: the command line recorded with the run (``command.sh``).
        progress: show a progress bar (default: when stderr is a terminal).
        stop_after: stop after that many iterations (epochs) of this call, with a
            checkpoint (tests of resume).
        collect: keep the draws in the returned :class:`RunResult` (default: for a run
            in memory).
        log_likelihood: keep the pointwise log likelihood of every draw.
    """

    argv: list[str] | None
    progress: bool | None
    stop_after: int | None
    collect: bool | None
    log_likelihood: bool


def run_from_config(algorithm: Algorithm, cfg, problem: Problem, **options) -> RunResult:
    """Run ``algorithm`` through the loop with what every method's config holds: its run
    directory, the recorded configuration, the seed, the console and draw settings.
    ``options`` are the loop's per-call keywords (``argv``, ``progress``, ...)."""
    return run_loop(
        algorithm,
        problem,
        rundir=open_run_dir(cfg),
        config=run_record(cfg, problem),
        seed=cfg.seed,
        tabulate_freq=cfg.tabulate_freq,
        num_param_draws=cfg.num_param_draws,
        **options,
    )


def run_record(cfg, problem: Problem) -> dict[str, Any]:
    """The configuration recorded with a run: the run fields of ``cfg`` and what declared
    the problem (``problem.record()``: the applicable problem fields, or the model's name
    for a problem built in Python, whose problem fields in ``cfg`` were not used)."""
    import dataclasses

    from ppl_bnn.config import ProblemConfig

    problem_fields = {f.name for f in dataclasses.fields(ProblemConfig)}
    run = {k: v for k, v in applicable(cfg).items() if k not in problem_fields}
    return {**problem.record(), **run}
