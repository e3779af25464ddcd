"""The one run loop: every method is an :class:`Algorithm`, every run goes through :func:`run`.

A method (HMC, SG-MCMC, SGD, deep ensembles, VI, ...) is written in BlackJAX's shape::

    state = algorithm.init(key)                      # a pytree (host numbers allowed)
    state, info = algorithm.step(key, state, t)      # one iteration / epoch, 0-based t

and says, through its :class:`Schedule`, which steps are posterior samples, which are
evaluated and which are checkpointed, and through its kind (:mod:`ppl_bnn.driver.kinds`)
whether it is a sampler or an approximation. The loop owns everything else, once for all
methods: the run key (split once per step: ``key, step_key = split(key)``), predictions
and metrics (:mod:`ppl_bnn.driver.evaluator`), the online Bayesian model average
(:mod:`ppl_bnn.evaluation.bma`), draws, checkpoints, the metrics file, TensorBoard, the
console table, the progress bar, stopping and resuming, and the summary
(:mod:`ppl_bnn.driver.result`).

**Resume is exact.** A checkpoint holds the run key, the algorithm's state
(``algorithm.save``), the online average and the elapsed time; a restarted run reloads
it and replays the following steps with the same keys, so it ends in the state an
uninterrupted run reaches, bit for bit.

**Host work overlaps the next step.** A step is dispatched asynchronously; the files of
step ``t`` (draw, metrics line, checkpoint) are written after step ``t + 1`` has been
dispatched, while the device computes it. What they contain was fixed before, so the
order of writes on disk (draw, metrics, checkpoint) is unchanged, and a run killed while
writing them resumes from the previous checkpoint as before.

**In memory.** With an empty ``dir`` nothing is written; the :class:`RunResult` then
holds the samples (constrained site values, deterministic sites included), their
statistics and the predictions, as it does for an on-disk run of this call.

:class:`RunResult`, :class:`~ppl_bnn.driver.evaluator.Evaluator`, ``site_values``,
``pointwise_log_likelihood``, ``check_initial_point``, ``NonFiniteError`` and the kinds
are importable from this module too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from ppl_bnn.declare.problem import Problem
from ppl_bnn.density.distributed import check_same, sync
from ppl_bnn.driver.evaluator import Evaluator, NonFiniteError, check_initial_point, finite
from ppl_bnn.driver.evaluator import pointwise_log_likelihood as pointwise_log_likelihood
from ppl_bnn.driver.evaluator import site_values as site_values
from ppl_bnn.driver.kinds import ApproximationKind as ApproximationKind
from ppl_bnn.driver.kinds import Kind, SamplerKind
from ppl_bnn.driver.result import Kept, RunResult, finish
from ppl_bnn.evaluation.bma import ensemble_init
from ppl_bnn.evaluation.predictive import ParamTracker
from ppl_bnn.methods import option_name
from ppl_bnn.store.rundir import ConsoleTable, RunDir
from ppl_bnn.types import PRNGKey

__all__ = ["Algorithm", "RunResult", "Schedule", "every", "run"]


class Schedule(NamedTuple):
    """Which 0-based steps do what. Each is ``fn(t) -> bool``.

    ``sample``: the state's positions are posterior draws (averaged, kept as draws);
    ``evaluate``: train/test metrics are computed and logged; ``save``: a checkpoint is
    written (the last step of every call is always checkpointed); ``log_every_step``:
    a metrics line for every step (the sampler's own statistics), else only at
    evaluations; ``draw``: test predictions are kept as a draw (default: at samples).
    """

    sample: Callable[[int], bool]
    evaluate: Callable[[int], bool]
    save: Callable[[int], bool]
    log_every_step: bool = False
    draw: Callable[[int], bool] | None = None


def every(freq: int, total: int) -> Callable[[int], bool]:
    """``t -> bool``: whether 0-based step ``t`` ends a period of ``freq`` steps or the run."""
    freq = max(int(freq), 1)
    return lambda t: (t + 1) % freq == 0 or t + 1 == total


class Algorithm(NamedTuple):
    """A method as the loop runs it.

    Attributes:
        name: the method's name in the summary (``"hmc"``, ``"sghmc-clr"``, ...).
        unit: ``"iteration"`` or ``"epoch"``: the name of a step in metrics and summary.
        num_steps: the configured total of steps.
        init: ``init(key) -> state``, a fresh state (every chain or member).
        step: ``step(key, state, t) -> (state, info)``; may return before the device is
            done (the loop synchronises only where it reads the state).
        schedule: which steps are samples, evaluations and checkpoints.
        positions: ``positions(state)``: the members' unconstrained positions, stacked on
            a leading axis (chains, ensemble members; VI: its mean): what the per-member
            metrics, the draws and the samples are made of.
        stats: ``stats(state, info, t) -> dict``: the step's scalars for the metrics line
            (host numbers; called after the step, may synchronise).
        columns: the method's console columns (between the step and the metrics).
        save: ``save(state) -> dict`` of checkpoint entries (``"position"`` among them,
            so that any checkpoint can start another run).
        load: ``load(entries) -> state``, the inverse of ``save``.
        sample_stats: ``sample_stats(state, info) -> dict name -> (chains,)`` arrays kept
            per draw (acceptance, divergences, ...), or ``None``.
        kind: a :class:`~ppl_bnn.driver.kinds.SamplerKind` (the default: the prediction
            is the online average of the samples) or an
            :class:`~ppl_bnn.driver.kinds.ApproximationKind` (SGD, ensembles, VI: the
            prediction is the average over the approximation's members).
        summary: ``summary(state) -> dict``: the method's own summary entries.
    """

    name: str
    unit: str
    num_steps: int
    init: Callable[[PRNGKey], Any]
    step: Callable[[PRNGKey, Any, int], tuple[Any, Any]]
    schedule: Schedule
    positions: Callable[[Any], dict]
    stats: Callable[[Any, Any, int], dict]
    columns: tuple[str, ...]
    save: Callable[[Any], dict]
    load: Callable[[dict], Any]
    sample_stats: Callable[[Any, Any], dict] | None = None
    kind: Kind = SamplerKind()
    summary: Callable[[Any], dict] = lambda state: {}


# ------------------------------------------------------------------ the loop
class _Clock:
    """Step time, synchronising only where the host reads the state."""

    def __init__(self, elapsed: float):
        self.elapsed = elapsed
        self._start = time.perf_counter()
        self._steps = 0

    def tick(self) -> None:
        self._steps += 1

    def stop(self, state) -> float:
        jax.block_until_ready(state)
        segment = time.perf_counter() - self._start
        self.elapsed += segment
        per_step, self._steps = segment / max(self._steps, 1), 0
        return per_step

    def restart(self) -> None:
        self._start = time.perf_counter()


def run(
    algorithm: Algorithm,
    problem: Problem,
    *,
    rundir: RunDir,
    config: dict[str, Any],
    seed: int,
    argv: list[str] | None = None,
    progress: bool | None = None,
    stop_after: int | None = None,
    tabulate_freq: int = 40,
    num_param_draws: int = 16,
    collect: bool | None = None,
    log_likelihood: bool = False,
    reference: str | None = None,
    extra_summary: Callable[[list[dict]], dict] | None = None,
    console: bool | None = None,
) -> RunResult:
    """Run (or resume) ``algorithm`` on ``problem``; returns the :class:`RunResult`.

    ``config`` is recorded (``config.json``, with the first checkpoint) and compared with
    a resumed run's. ``stop_after`` stops after that many steps of this call, with a
    checkpoint. ``collect`` keeps the samples in memory (default: for in-memory runs);
    ``log_likelihood`` also keeps the per-row log likelihood of every sample. ``console``
    prints the metrics table and warnings (default: for on-disk runs).
    """
    if num_param_draws < 0:
        raise ValueError(
            f"{option_name('num_param_draws')} must be non-negative, got {num_param_draws}"
        )
    t_call = time.perf_counter()
    ds, alg, sched, kind = problem.dataset, algorithm, algorithm.schedule, algorithm.kind
    rd = rundir
    collect = rd.in_memory if collect is None else collect
    evaluator = Evaluator.of(problem)
    total = alg.num_steps

    resumed = rd.latest()
    check_same(
        0 if resumed is None else resumed[0],
        f"the processes see different checkpoints in {option_name('dir')}={rd.path}: it must "
        "be on a filesystem that every process shares",
    )
    if resumed is not None and resumed[0] > total:
        raise ValueError(
            f"{option_name(f'num_{alg.unit}s')}={total} is below the {resumed[0]} {alg.unit}s "
            f"already done in {option_name('dir')}={rd.path}; give at least {resumed[0]}"
        )
    ens_shape = (ds.x_test.shape[0], ds.num_outputs)
    if resumed is None:
        key = jax.random.key(seed)
        key, init_key = jax.random.split(key)
        state = alg.init(init_key)
        check_initial_point(evaluator, alg.positions(state), state)  # before anything is written
        ens, start, elapsed = ensemble_init(ens_shape), 0, 0.0
        rd.start(config, argv)  # inputs all read: the run dir is written with checkpoint 1
        rd.truncate_metrics(0)  # lines of an earlier start that never checkpointed
        rd.truncate_samples(0)
    else:
        start, saved = resumed
        rd.start(config, argv)
        try:
            key = jax.random.wrap_key_data(np.asarray(saved["key"]))  # type: ignore[arg-type]
            state = alg.load(saved)
            ens, elapsed = saved["ensemble"], float(saved["elapsed"])
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            from ppl_bnn.store.checkpoint import CheckpointError

            raise CheckpointError(
                f"checkpoint {rd.store.path(start)} holds no {alg.name} run state "
                f"({type(e).__name__}: {e}): it comes from another kind of run; use a new "
                f"{option_name('dir')}"
            ) from None
        rd.truncate_metrics(start)
        rd.truncate_samples(start)
    tracker = ParamTracker(jax.tree.map(lambda a: a[0], alg.positions(state)), num_param_draws)
    if rd.writes:  # compile the sample store's map now, not in the middle of the run
        evaluator.sites(alg.positions(state))

    console = not rd.in_memory if console is None else console
    write = tqdm.write if (rd.primary and console) else (lambda *_: None)
    table = ConsoleTable(
        [alg.unit, *alg.columns, *_headline(ds.task, problem.has_test), "time"],
        tabulate_freq,
        write=write,
    )
    show = (sys.stderr.isatty() if progress is None else progress) and rd.primary
    bar = tqdm(total=total, initial=start, disable=not show, desc=alg.name)
    end = total if stop_after is None else min(total, start + stop_after)

    kept = Kept(collect, log_likelihood)
    pending: list[Callable[[], None]] = []  # the previous step's writes
    clock, last_end = _Clock(elapsed), time.perf_counter()
    warned: set[str] = set()

    def flush():
        while pending:
            pending.pop(0)()

    try:
        for t in range(start, end):
            key, step_key = jax.random.split(key)
            state, info = alg.step(step_key, state, t)
            clock.tick()
            flush()  # the previous step's files, while the device runs this step
            sample = sched.sample(t)
            is_eval = sched.evaluate(t)
            save = sched.save(t) or t + 1 == end
            draw = (sched.draw or sched.sample)(t) and problem.has_test
            busy = sample or is_eval or save or sched.log_every_step
            step_time = clock.stop(state) if busy else 0.0
            record: dict[str, Any] | None = None
            if sched.log_every_step or is_eval:
                record = {alg.unit: t + 1, **alg.stats(state, info, t)}
                check_record(alg, t, record, warned, show=rd.primary)
            if save and not finite(alg.positions(state)):
                raise NonFiniteError(_stopped(alg, t, "the positions are not finite"))
            positions = alg.positions(state) if (sample or is_eval or draw) else None
            test_preds = None
            if problem.has_test and (sample or draw):
                test_preds = evaluator.test(positions)
            if sample and test_preds is not None:
                ens = kind.average(ens, test_preds, ds.task)
            if sample and (kept.collect or rd.writes):
                values, groups = _draw(evaluator, alg, positions, state, info, log_likelihood)
                kept.add(values, groups, test_preds)
                if rd.writes:
                    pending.append(lambda s=t + 1, v=values, g=groups: rd.append_sample(s, v, g))  # type: ignore[misc]
            if record is not None:
                if is_eval:
                    record.update(kind.evaluation(evaluator, state, t, positions, test_preds, ens))
                record.update(kind.record(ens))
                now = time.perf_counter()
                record["time"] = step_time
                # everything since the previous row: this step, predictions, metrics, and
                # the previous step's draws, metrics line and checkpoint
                if sched.log_every_step:
                    record["iteration_wall"], last_end = now - last_end, now
            checkpoint = None
            if save:
                checkpoint = {
                    "step": t + 1,
                    "key": np.asarray(jax.random.key_data(key)),
                    **alg.save(state),
                    "ensemble": ens,
                    "elapsed": clock.elapsed,
                    "param_names": tracker.names,
                }
            params = tracker.take(positions) if draw else None  # type: ignore[arg-type]
            pending.extend(
                _writes(
                    rd, table, ds.task, t + 1, draw, test_preds, params, sample, record, checkpoint
                )
            )
            if busy:
                clock.restart()
            bar.update(1)
        flush()
    except BaseException:
        rd.close()  # releases the run directory's lock for the next command of this process
        raise
    finally:
        bar.close()
    sync("ppl_bnn.loop.done")  # the primary has written every record
    done = max(start, end)
    try:
        return finish(
            alg,
            problem,
            rd,
            evaluator,
            tracker,
            state,
            ens,
            clock.elapsed,
            done,
            kept,
            config,
            reference,
            extra_summary,
            t_call,
        )
    except BaseException:
        rd.close()
        raise


def check_record(alg: Algorithm, t: int, record: dict, warned: set[str], show: bool = True):
    """Stop on step ``t``'s metrics record when it says the run failed (the method's own
    ``"_error"`` verdict, a non-finite log density); print its ``"_warnings"`` (removed
    from the record), each kind once per run (``warned``), on stderr, even in memory."""
    if "_error" in record:  # the method's own verdict (every proposal NaN, ...)
        raise NonFiniteError(_stopped(alg, t, record["_error"]))
    if not np.isfinite(record.get("log_prob", 0.0)):
        raise NonFiniteError(_stopped(alg, t, f"the log density is {record['log_prob']}"))
    for line in record.pop("_warnings", ()):
        if line not in warned and show:
            warned.add(line)
            tqdm.write(f"warning: {line}", file=sys.stderr)


def _stopped(alg: Algorithm, t: int, why: str) -> str:
    return (
        f"{alg.unit} {t + 1}: {why}: stopped (the checkpoints written before it are kept); "
        "check the data, the model and the step size"
    )


def _headline(task: str, has_test: bool) -> list[str]:
    from ppl_bnn.evaluation.predictive import headline_columns

    cols = headline_columns(task)
    return cols if has_test else [c for c in cols if c.startswith("train/")]


def _writes(rd, table, task, step, draw, test_preds, params, sample, record, checkpoint):
    """The files of one step, in their order on disk: draw, metrics line, checkpoint."""
    out = []
    if draw:
        out.append(
            lambda: rd.save_draw(
                step,
                predictions=test_preds.astype(np.float32),
                params=params,
                burn_in=np.asarray(not sample),
                task=np.asarray(task),
            )
        )
    if record is not None:
        out.append(lambda: (rd.log(step, record), table.row(record)))
    if checkpoint is not None:
        out.append(lambda: rd.save(step, checkpoint))
    return out


def _draw(evaluator, alg, positions, state, info, log_likelihood: bool):
    """One posterior draw as kept in memory and in the sample store: ``(site values,
    {"sample_stats": ..., "log_likelihood": ...})``, every array ``(chain, ...)``."""
    values = evaluator.sites(positions)
    groups: dict[str, dict[str, np.ndarray]] = {}
    if alg.sample_stats is not None:
        groups["sample_stats"] = {
            k: np.asarray(v) for k, v in alg.sample_stats(state, info).items()
        }
    if log_likelihood:
        groups["log_likelihood"] = evaluator.pointwise(positions)
    return values, groups
