"""What the minibatch runners (SGD, deep ensembles, SG-MCMC, VI) share.

Members (ensemble members, chains) are vectorised: every array of a state has a leading
member axis, and member ``i`` is seeded with ``seed + i``, so member ``i`` of a run
starts and proceeds like a one-member run with that seed. One compiled call runs one
epoch of every member: a ``lax.scan`` over the epoch's minibatches whose step size comes
from the schedule at a traced global step, so no epoch recompiles.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bnn.declare.problem import Problem
from ppl_bnn.density.sharding import to_host
from ppl_bnn.driver.rundir import RunDir
from ppl_bnn.evaluation.bma import ensemble_init, ensemble_prediction, ensemble_update
from ppl_bnn.evaluation.predictive import evaluate, mean_over_members
from ppl_bnn.evaluation.reference import compare_to_reference, load_reference
from ppl_bnn.inference.minibatch import epoch_indices, gather, num_batches
from ppl_bnn.types import PRNGKey

__all__ = [
    "start_run",
    "Evaluator",
    "TrainingClock",
    "build_epoch",
    "finish_run",
    "is_due",
    "member_keys",
    "split_member_keys",
]


def start_run(cfg, problem: Problem | None, argv: list[str] | None) -> tuple[Problem, RunDir]:
    """Build the problem, check the reference and augmentation, then open the run dir.

    Every input is read and checked before the run directory is written.
    """
    from ppl_bnn.declare.problem import build_problem

    problem = problem or build_problem(cfg)
    num_batches(problem.train.num_examples, cfg.batch_size)  # refuses a bad batch size
    if cfg.reference:
        load_reference(cfg.reference, problem.dataset)
    if cfg.data_augmentation:
        from ppl_bnn.data.augment import check_augmentable

        check_augmentable(problem.dataset)
    rd = RunDir(cfg.dir)
    rd.start(dataclasses.asdict(cfg), argv)
    return problem, rd


def member_keys(seed: int, num_members: int) -> PRNGKey:
    """``(num_members,)`` keys; member ``i`` gets ``key(seed + i)``."""
    return jnp.stack([jax.random.key(seed + i) for i in range(num_members)])


def split_member_keys(keys: PRNGKey) -> tuple[PRNGKey, PRNGKey]:
    """Advance every member's key once: ``(next keys, this epoch's keys)``."""
    pairs = jax.vmap(jax.random.split)(keys)
    return pairs[:, 0], pairs[:, 1]


def _over_members(fn: Callable, num_members: int) -> Callable:
    """``vmap`` over the member axis; one member runs unbatched (plain matmuls, no vmap)."""
    if num_members > 1:
        return jax.vmap(fn, in_axes=(0, 0, None))

    def single(keys, states, epoch):
        out = fn(keys[0], jax.tree.map(lambda a: a[0], states), epoch)
        return jax.tree.map(lambda a: a[None], out)

    return single


def build_epoch(
    step: Callable,
    problem: Problem,
    batch_size: int,
    num_members: int,
    *,
    schedule: Callable | None = None,
    augment: bool = False,
    step_keys: bool = True,
) -> Callable:
    """``epoch(keys, states, epoch) -> (keys, states, infos)``, jitted, for every member.

    ``keys`` are the members' run keys: each is split once, inside the call, into the next
    run key and this epoch's key (one dispatch per epoch, nothing on the host).

    ``step(rng_key, state, minibatch, step_size) -> (state, info)``; ``step_size`` is
    ``schedule(global step)`` (``None`` without a schedule), ``rng_key`` is ``None`` when
    ``step_keys=False`` (a deterministic step: no key is split). Each epoch draws a fresh
    permutation of the training set; ``augment`` crops and flips each minibatch's images.
    """
    x, y, n = problem.train.x, problem.train.y, problem.train.num_examples
    nb = num_batches(n, batch_size)

    def one_member(key, state, epoch):
        perm_key, steps_key = jax.random.split(key)
        index = epoch_indices(perm_key, n, batch_size)
        first = epoch * nb

        def body(state, inputs):
            i, idx, k = inputs
            mb = gather(x, y, idx)
            step_key = None
            if augment:
                from ppl_bnn.data.augment import augment_images

                aug_key, k = jax.random.split(k)
                mb = mb._replace(x=augment_images(aug_key, mb.x))
            if step_keys:
                step_key = k
            step_size = None if schedule is None else schedule(first + i)
            return step(step_key, state, mb, step_size)

        keys = jax.random.split(steps_key, nb) if (augment or step_keys) else jnp.zeros(nb)
        return jax.lax.scan(body, state, (jnp.arange(nb), index, keys))

    members = _over_members(one_member, num_members)

    def epoch_fn(keys, states, epoch):
        keys, epoch_keys = split_member_keys(keys)
        states, infos = members(epoch_keys, states, epoch)
        return keys, states, infos

    return jax.jit(epoch_fn)


_COMPILED: dict[int, tuple[Any, Callable, Callable]] = {}


def _compiled(problem: Problem) -> tuple[Callable, Callable]:
    """Jitted predictions and log densities, one pair per problem: runs that share a
    ``Problem`` (``compare``, tests) compile them once."""
    hit = _COMPILED.get(id(problem))
    if hit is None or hit[0]() is not problem:
        for key in [k for k, v in _COMPILED.items() if v[0]() is None]:
            del _COMPILED[key]  # problems that are gone
        ld = problem.logdensity
        predict = jax.jit(jax.vmap(ld.predict, in_axes=(0, None)))
        log_prob = jax.jit(jax.vmap(ld, in_axes=(0, None)))
        hit = _COMPILED[id(problem)] = (weakref.ref(problem), predict, log_prob)
    return hit[1], hit[2]


class Evaluator:
    """Predictions of a stack of positions on the test and training sets (host arrays)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self._predict, self._log_prob = _compiled(problem)

    def test(self, positions) -> np.ndarray:
        n = self.problem.dataset.x_test.shape[0]
        return to_host(self._predict(positions, self.problem.test.x))[:, :n]

    def train(self, positions) -> np.ndarray:
        n = self.problem.dataset.x_train.shape[0]
        return to_host(self._predict(positions, self.problem.train.x))[:, :n]

    def log_prob(self, positions) -> np.ndarray:
        """Full-batch tempered log posterior of every member."""
        return np.asarray(self._log_prob(positions, self.problem.train))

    def metrics(self, train_preds, test_preds, ens_pred: np.ndarray | None) -> dict[str, float]:
        """``train/*`` and ``test/*`` (mean over members) and ``test/ens_*`` of ``ens_pred``."""
        ds = self.problem.dataset
        out = {}
        for split, preds in (("train", train_preds), ("test", test_preds)):
            per_member = [evaluate(p, ds, split) for p in preds]
            out.update({f"{split}/{k}": v for k, v in mean_over_members(per_member).items()})
        if ens_pred is not None:
            out.update({f"test/ens_{k}": v for k, v in evaluate(ens_pred, ds, "test").items()})
        return out


def average(members: np.ndarray, task: str) -> np.ndarray:
    """The Bayesian model average of a stack of member predictions ``(m, n, k)``."""
    ens = ensemble_update(ensemble_init(members.shape[1:]), members, task)
    return ensemble_prediction(ens, task)


def is_due(epoch: int, freq: int, num_epochs: int) -> bool:
    """Whether 0-based ``epoch`` ends a period of ``freq`` epochs or the run."""
    return (epoch + 1) % max(freq, 1) == 0 or epoch + 1 == num_epochs


class TrainingClock:
    """Training time, without a device sync after every epoch.

    Epochs are dispatched asynchronously; the clock stops (and waits for the device) only
    where the host needs the state: evaluations, checkpoints, the end. Evaluation and
    checkpointing are not counted (``restart`` after them).
    """

    def __init__(self, elapsed: float = 0.0):
        self.elapsed = elapsed
        self._start = time.perf_counter()
        self._epochs = 0

    def tick(self) -> None:
        self._epochs += 1

    def stop(self, state) -> float:
        """Wait for ``state``; add the segment; return its mean seconds per epoch."""
        jax.block_until_ready(state)
        segment = time.perf_counter() - self._start
        self.elapsed += segment
        per_epoch, self._epochs = segment / max(self._epochs, 1), 0
        return per_epoch

    def restart(self) -> None:
        self._start = time.perf_counter()


class Timer:
    """Wall time of the whole call, for the summary."""

    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def finish_run(
    rd: RunDir,
    cfg,
    problem: Problem,
    *,
    method: str,
    members: np.ndarray | None,
    prediction: np.ndarray | None,
    epochs_done: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Write ``predictions.npy`` and ``summary.json`` (with reference metrics) and return it.

    ``members``: ``(m, n, k)`` test predictions whose average is ``prediction`` (the
    members of an ensemble, the draws of a sampler, samples of a variational posterior).
    """
    records = rd.read_metrics()
    last = records[-1] if records else {}
    ds = problem.dataset
    summary = {
        "method": method,
        "dataset": ds.name,
        "task": ds.task,
        "model": cfg.model_name,
        "num_parameters": problem.logdensity.num_parameters(),
        "epochs_done": epochs_done,
        "num_epochs": cfg.num_epochs,
        **extra,
        "final": {k: v for k, v in last.items() if "/" in k},
        "complete": epochs_done >= cfg.num_epochs,
        "config": dataclasses.asdict(cfg),
    }
    if prediction is not None and rd.primary:
        np.save(rd.path / "predictions.npy", np.asarray(prediction, np.float32))
        summary["predictions"] = str(rd.path / "predictions.npy")
    if cfg.reference and members is not None:
        ref = load_reference(cfg.reference, ds)
        summary["reference"] = {
            "path": str(cfg.reference),
            **compare_to_reference(members, ref, ds, seed=cfg.seed),
        }
    rd.write_summary(summary)
    return summary
