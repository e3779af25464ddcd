"""The one run loop: every method is an :class:`Algorithm`, every run goes through :func:`run`.

A method (HMC, SG-MCMC, SGD, deep ensembles, VI, ...) is written in BlackJAX's shape::

    state = algorithm.init(key)                      # a pytree (host numbers allowed)
    state, info = algorithm.step(key, state, t)      # one iteration / epoch, 0-based t

and says, through its :class:`Schedule`, which steps are posterior samples, which are
evaluated and which are checkpointed. The loop owns everything else, once for all
methods: the run key (split once per step: ``key, step_key = split(key)``), predictions
and metrics, the online Bayesian model average (:mod:`ppl_bnn.evaluation.bma`), draws,
checkpoints, the metrics file, TensorBoard, the console table, the progress bar,
stopping and resuming, and the summary.

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
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from ppl_bnn.declare.problem import Problem
from ppl_bnn.density.distributed import check_same, sync
from ppl_bnn.density.sharding import to_host
from ppl_bnn.evaluation.bma import (
    average,
    ensemble_init,
    ensemble_prediction,
    ensemble_update,
)
from ppl_bnn.evaluation.predictive import ParamTracker, evaluate, mean_over_members
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
        sample_stats: ``sample_stats(state, info) -> dict name -> (chains,)`` arrays kept
            per draw (acceptance, divergences, ...), or ``None``.
        columns: the method's console columns (between the step and the metrics).
        save: ``save(state) -> dict`` of checkpoint entries (``"position"`` among them,
            so that any checkpoint can start another run).
        load: ``load(entries) -> state``, the inverse of ``save``.
        approximation: for approximate methods (SGD, ensembles, VI) ``approximation(state,
            t)``: the stacked positions whose predictions are averaged into the method's
            predictive distribution (ensemble members, variational samples); ``None`` for
            samplers, whose prediction is the online average of their samples.
        approximation_as_chains: the final approximation's members are chains of one draw
            (ensemble members) rather than draws of ``approximation_chains`` chains
            (variational samples of independent fits, chain after chain).
        approximation_chains: the number of chains of an approximation whose members
            are draws (``approximation_as_chains=False``).
        summary: ``summary(state) -> dict``: the method's own summary entries.
        check_resume: ``check_resume(steps_done)``: refuse a configuration that cannot
            continue a run of ``steps_done`` steps.
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
    approximation: Callable[[Any, int], dict] | None = None
    approximation_as_chains: bool = True
    approximation_chains: int = 1
    summary: Callable[[Any], dict] = lambda state: {}


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


# ------------------------------------------------------------------ evaluation
class Evaluator:
    """Jitted predictions and site values of stacks of positions (host arrays out).

    One per problem: runs sharing a ``Problem`` (``compare``, tests) compile once.
    """

    _cache: dict[int, tuple[Any, Evaluator]] = {}

    def __init__(self, problem: Problem):
        self.problem = problem
        ld = problem.logdensity
        self._predict = jax.jit(jax.vmap(ld.predict, in_axes=(0, None)))
        self._log_prob = jax.jit(jax.vmap(ld, in_axes=(0, None)))
        self._value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(ld), in_axes=(0, None)))
        self._log_prior = jax.jit(jax.vmap(ld.log_prior))
        self._sites = jax.jit(jax.vmap(lambda p: site_values(problem, p)))
        self._constrained = jax.jit(jax.vmap(ld.constrain))
        self._pointwise = jax.jit(jax.vmap(lambda p: pointwise_log_likelihood(problem, p)))

    @classmethod
    def of(cls, problem: Problem) -> Evaluator:
        import weakref

        hit = cls._cache.get(id(problem))
        if hit is None or hit[0]() is not problem:
            for k in [k for k, v in cls._cache.items() if v[0]() is None]:
                del cls._cache[k]
            hit = cls._cache[id(problem)] = (weakref.ref(problem), cls(problem))
        return hit[1]

    def test(self, positions) -> np.ndarray:
        n = self.problem.dataset.x_test.shape[0]
        return to_host(self._predict(positions, self.problem.test.x))[:, :n]  # type: ignore[union-attr]

    def train(self, positions) -> np.ndarray:
        n = self.problem.dataset.x_train.shape[0]
        return to_host(self._predict(positions, self.problem.train.x))[:, :n]

    def log_prob(self, positions) -> np.ndarray:
        """Full-batch tempered log posterior of every member."""
        return np.asarray(self._log_prob(positions, self.problem.train))

    def value_and_grad(self, positions):
        """Full-batch log posterior and its gradient of every member."""
        return jax.device_get(self._value_and_grad(positions, self.problem.train))

    def log_prior(self, positions) -> np.ndarray:
        return np.asarray(self._log_prior(positions))

    def constrained(self, positions) -> dict[str, np.ndarray]:
        """Constrained values of the latent sites (what the sample store keeps)."""
        return jax.device_get(self._constrained(positions))

    def sites(self, positions) -> dict[str, np.ndarray]:
        return jax.device_get(self._sites(positions))

    def pointwise(self, positions) -> dict[str, np.ndarray]:
        return jax.device_get(self._pointwise(positions))

    def metrics(self, train_preds, test_preds, ens_pred) -> dict[str, float]:
        """``train/*`` and ``test/*`` (mean over members) and ``test/ens_*`` of ``ens_pred``."""
        ds = self.problem.dataset
        out: dict[str, float] = {}
        for split, preds in (("train", train_preds), ("test", test_preds)):
            if preds is None:
                continue
            per_member = [evaluate(p, ds, split) for p in preds]
            out.update({f"{split}/{k}": v for k, v in mean_over_members(per_member).items()})
        if ens_pred is not None:
            out.update({f"test/ens_{k}": v for k, v in evaluate(ens_pred, ds, "test").items()})
        return out


def site_values(problem: Problem, position: dict) -> dict:
    """Constrained values of every latent and deterministic site at one position.

    Deterministic sites are evaluated on the first two training rows when they depend on
    the data: only data-free deterministic sites are meaningful as posterior variables.
    """
    from numpyro import handlers

    ld = problem.logdensity
    values = ld.constrain(position)
    model = handlers.substitute(handlers.seed(ld.model, 0), {**ld._params, **values})
    x, y = problem.dataset.x_train, problem.dataset.y_train
    trace = handlers.trace(model).get_trace(x[:2], y[:2])
    n = min(2, x.shape[0])
    for name, site in trace.items():
        if site["type"] == "deterministic":
            v = site["value"]
            if np.ndim(v) and np.shape(v)[0] == n and n != 1:
                continue  # a per-row quantity, not a posterior variable
            values[name] = v
    return values


def pointwise_log_likelihood(problem: Problem, position: dict) -> dict:
    """Observed site -> per-row log likelihood ``(n_train,)`` (untempered scale as traced)."""
    from numpyro import handlers

    ld = problem.logdensity
    model = handlers.substitute(ld.model, {**ld._params, **ld.constrain(position)})
    x, y = problem.dataset.x_train, problem.dataset.y_train
    trace = handlers.trace(model).get_trace(x, y)
    out = {}
    for name in ld.observed_sites:
        site = trace[name]
        lp = site["fn"].log_prob(site["value"])
        out[name] = lp.reshape((x.shape[0], -1)).sum(-1) if np.ndim(lp) else lp[None]
    return out


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
    ds, alg, sched = problem.dataset, algorithm, algorithm.schedule
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
        check_initial_point(evaluator, alg.positions(state))  # before anything is written
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

    kept = _Kept(collect, log_likelihood)
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
            if save and not _finite(alg.positions(state)):
                raise NonFiniteError(_stopped(alg, t, "the positions are not finite"))
            positions = alg.positions(state) if (sample or is_eval or draw) else None
            test_preds = None
            if problem.has_test and (sample or draw or (is_eval and alg.approximation is None)):
                test_preds = evaluator.test(positions)
            if sample and alg.approximation is None and test_preds is not None:
                ens = ensemble_update(ens, test_preds, ds.task)
            if sample and (kept.collect or rd.writes):
                values, groups = _draw(evaluator, alg, positions, state, info, log_likelihood)
                kept.add(values, groups, test_preds)
                if rd.writes:
                    pending.append(lambda s=t + 1, v=values, g=groups: rd.append_sample(s, v, g))  # type: ignore[misc]
            if record is not None:
                if is_eval:
                    record.update(_evaluation(alg, evaluator, state, t, positions, test_preds, ens))
                record["num_ensembled"] = int(ens.count) if alg.approximation is None else 0
                now = time.perf_counter()
                record["time"] = step_time
                # everything since the previous row: this step, predictions, metrics, and
                # the previous step's draws, metrics line and checkpoint
                if sched.log_every_step:
                    record["iteration_wall"], last_end = now - last_end, now
                if alg.approximation is not None:
                    record.pop("num_ensembled")
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
        return _finish(
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


class NonFiniteError(ValueError):
    """The log density, its gradient or the state is NaN or infinite: the run stops."""


def _finite(tree) -> bool:
    return all(bool(jax.numpy.isfinite(a).all()) for a in jax.tree.leaves(tree))


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


def check_initial_point(evaluator: Evaluator, positions) -> None:
    """A one-line :class:`NonFiniteError` when the log density or its gradient is NaN or
    infinite at any member's initial position (NaN or Inf in the data, a model undefined
    there): nothing is written."""
    ld = evaluator.problem.logdensity
    bad = None
    if not _finite(positions):
        bad = "the initial positions are not finite"
    else:
        value, grad = evaluator.value_and_grad(positions)
        lp = np.asarray(value)
        if not np.isfinite(lp).all():
            i = int(np.flatnonzero(~np.isfinite(lp))[0])
            bad = f"the log density at the initial point is {lp[i]} (chain {i})"
        else:
            for name in ld.latent_sites:
                g = np.asarray(grad[name])
                if not np.isfinite(g).all():
                    bad = (
                        "the gradient of the log density at the initial point is not "
                        f"finite (site {name!r})"
                    )
                    break
    if bad is not None:
        raise NonFiniteError(
            f"{bad}: check the data (NaN or Inf inputs or targets) and the model; nothing was "
            "written"
        )


def _headline(task: str, has_test: bool) -> list[str]:
    from ppl_bnn.evaluation.predictive import headline_columns

    cols = headline_columns(task)
    return cols if has_test else [c for c in cols if c.startswith("train/")]


def _evaluation(alg, evaluator, state, t, positions, test_preds, ens) -> dict[str, float]:
    """The metrics of an evaluation step."""
    problem = evaluator.problem
    ens_pred = None
    if alg.approximation is None:
        if ens.count:
            ens_pred = ensemble_prediction(ens, problem.dataset.task)
    elif problem.has_test:
        approx = alg.approximation(state, t)
        members = evaluator.test(approx)
        ens_pred = average(members, problem.dataset.task)
        if test_preds is None:
            test_preds = members if approx is positions else evaluator.test(positions)
    return evaluator.metrics(evaluator.train(positions), test_preds, ens_pred)


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


class _Kept:
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
    def _stack(draws: list[dict]) -> dict[str, np.ndarray]:
        # each draw is (chain, ...): stack on axis 1 -> (chain, draw, ...)
        return {k: np.stack([np.asarray(d[k]) for d in draws], axis=1) for k in draws[0]}


def _finish(
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
    ds = problem.dataset
    complete = done >= alg.num_steps
    samples = sample_stats = loglik = None
    preds = None
    members = None
    prediction = None
    if alg.approximation is None:
        stored = rd.read_samples() if kept.collect else None
        if stored is not None and len(stored[0]) > len(kept.samples):
            # resumed: the draws of earlier calls are in the run directory
            samples, sample_stats, loglik, preds = _from_run_dir(rd, evaluator, kept, stored)
        elif kept.collect and kept.samples:
            samples = _Kept._stack(kept.samples)
            sample_stats = _Kept._stack(kept.stats) if kept.stats else {}
            loglik = _Kept._stack(kept.loglik) if kept.loglik else None
            if kept.preds:
                preds = np.stack(kept.preds, axis=1)
        if ens.count:
            prediction = ensemble_prediction(ens, ds.task)
            members = _members(rd, preds)
    else:
        approx = alg.approximation(state, max(done, 1) - 1)
        as_chains = alg.approximation_as_chains
        chains = 1 if as_chains else alg.approximation_chains

        def shape(a):  # (members, ...) -> (chain, draw, ...)
            a = np.asarray(a)
            return a[:, None] if as_chains else a.reshape((chains, -1, *a.shape[1:]))

        def per_draw(arrays: dict) -> list[tuple[int, dict]]:
            """``(step, name -> (chain, ...))`` per draw: step ``num_steps`` for chains of
            one draw (ensemble members), else 1, 2, ... (the draws of each chain)."""
            by_draw = {k: shape(v) for k, v in arrays.items()}
            num = next(iter(by_draw.values())).shape[1]
            return [
                (alg.num_steps if as_chains else i + 1, {k: v[:, i] for k, v in by_draw.items()})
                for i in range(num)
            ]

        if complete and rd.writes:
            draws = per_draw(evaluator.sites(approx))
            pointwise = per_draw(evaluator.pointwise(approx)) if kept.log_likelihood else None
            for i, (step, values) in enumerate(draws):
                groups = {"log_likelihood": pointwise[i][1]} if pointwise else None
                rd.append_sample(step, values, groups)
        if problem.has_test:
            members = evaluator.test(approx)
            prediction = average(members, ds.task)
            preds = shape(members)
            if complete and rd.writes:
                found = {"predictions": members.astype(np.float32), "params": tracker.take(approx)}
                for step, arrays in per_draw(found):
                    rd.save_draw(step, **arrays, burn_in=np.asarray(False))
        if kept.collect:
            samples = {k: shape(v) for k, v in evaluator.sites(approx).items()}
            sample_stats = {}
            if kept.log_likelihood:
                loglik = {k: shape(v) for k, v in evaluator.pointwise(approx).items()}

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
        **({"num_ensembled": int(ens.count)} if alg.approximation is None else {}),
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
    if prediction is not None and rd.writes:
        summary["predictions"] = str(
            rd.write_array("predictions.npy", prediction.astype(np.float32))
        )
    if reference and members is not None:
        from ppl_bnn.evaluation.reference import compare_to_reference, load_reference

        ref = load_reference(reference, ds)
        summary["reference"] = {
            "path": str(reference),
            **compare_to_reference(members, ref, ds, seed=int(config.get("seed", 0))),
        }
    failed = None
    if alg.approximation is None and complete:  # samplers: what says the run failed
        from ppl_bnn.diagnostics.checks import at_run_end

        failed = at_run_end(
            summary, problem, rd, samples=samples, sample_stats=sample_stats, predictions=preds
        )
        summary["warnings"] = [f.to_dict() for f in failed]
    rd.write_summary(summary)
    rd.close()
    if failed and rd.primary:
        from ppl_bnn.diagnostics.checks import warn

        warn(failed)
    observed = {site: np.asarray(ds.y_train) for site in problem.logdensity.observed_sites[:1]}
    return RunResult(
        summary=summary,
        samples=samples,
        sample_stats=sample_stats or {},
        predictions=preds,
        log_likelihood=loglik,
        observed=observed,
        run_dir=None if rd.in_memory else str(rd.path),
    )


def _from_run_dir(rd: RunDir, evaluator: Evaluator, kept: _Kept, stored):
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
    return _Kept._stack(draws)


def _members(rd: RunDir, preds: np.ndarray | None) -> np.ndarray | None:
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
