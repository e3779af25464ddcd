"""What the minibatch runners (SGD, deep ensembles, SG-MCMC, VI) share.

Members (ensemble members, chains) are vectorised: every array of a state has a leading
member axis, and member ``i`` is seeded with ``seed + i``, so member ``i`` of a run
starts and proceeds like a one-member run with that seed. One compiled call runs one
epoch of every member: a ``lax.scan`` over the epoch's minibatches whose step size comes
from the schedule at a traced global step, so no epoch recompiles.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Unpack

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bnn.declare.problem import Problem
from ppl_bnn.density.sharding import ensure_replicated, replicate
from ppl_bnn.driver.loop import RunResult, Schedule, every
from ppl_bnn.driver.runner import RunOptions, run_from_config
from ppl_bnn.evaluation.reference import load_reference
from ppl_bnn.inference.minibatch import epoch_indices, gather, num_batches
from ppl_bnn.methods import option_name
from ppl_bnn.types import PRNGKey

__all__ = [
    "Members",
    "build_epoch",
    "check_minibatch_config",
    "initial_members",
    "member_keys",
    "prepare",
    "run_minibatch",
    "split_member_keys",
    "training_schedule",
]


class Members(NamedTuple):
    """The state of a minibatch method: every member's own key and the inner state
    (``SGDState``, a sampler state, an ``SVIState``), stacked on a leading member axis.

    Member ``i`` carries the key ``key(seed + i)``, so it proceeds like a one-member run
    with that seed; the loop's run key is not used by these methods.
    """

    keys: PRNGKey
    inner: Any


def check_minibatch_config(cfg) -> None:
    """Refuse impossible settings before anything is built or written (the one place
    the minibatch flags shared by SGD, SG-MCMC and VI are validated)."""
    if cfg.num_epochs < 1:
        raise ValueError(f"{option_name('num_epochs')} must be at least 1, got {cfg.num_epochs}")
    if cfg.eval_freq < 1 or cfg.save_freq < 1:
        raise ValueError(
            f"{option_name('eval_freq')} and {option_name('save_freq')} must be at least 1"
        )
    if cfg.init_step_size <= 0:
        raise ValueError(
            f"{option_name('init_step_size')} must be positive, got {cfg.init_step_size}"
        )
    if cfg.batch_size < 1:
        raise ValueError(f"{option_name('batch_size')} must be positive, got {cfg.batch_size}")
    if not 0.0 <= cfg.momentum_decay < 1.0:
        raise ValueError(
            f"{option_name('momentum_decay')} must lie in [0, 1), got {cfg.momentum_decay}"
        )
    for flag in ("init_checkpoint", "mean_init_checkpoint"):
        path = getattr(cfg, flag, None)
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{option_name(flag)}={path} does not exist")


def prepare(cfg, problem: Problem | None) -> Problem:
    """Build the problem; check the batch size, the reference and the augmentation.

    Every input is read and checked before the run directory is written.
    """
    from ppl_bnn.declare.problem import build_problem

    check_minibatch_config(cfg)
    problem = problem or build_problem(cfg)
    num_batches(problem.train.num_examples, cfg.batch_size)  # refuses a bad batch size
    if cfg.reference:
        load_reference(cfg.reference, problem.dataset)
    if cfg.data_augmentation:
        from ppl_bnn.data.augment import check_augmentable

        check_augmentable(problem.dataset)
    return problem


def initial_members(problem: Problem, seed: int, num: int, init_checkpoint: str | None):
    """``(keys, positions)``: member ``i`` starts from ``key(seed + i)`` or the checkpoint."""
    from ppl_bnn.driver.hmc import initial_positions

    keys = member_keys(seed, num)
    keys, init_keys = split_member_keys(keys)
    if init_checkpoint is not None:
        return keys, initial_positions(problem, None, num, init_checkpoint)
    ld = problem.logdensity
    positions = [ld.init(k) for k in init_keys]
    return keys, jax.tree.map(lambda *xs: jnp.stack(xs), *positions)


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

    compiled = jax.jit(epoch_fn)

    def run_epoch(keys, states, epoch):
        # a fresh or restored state is placed as the outputs come back: one program
        keys, states = ensure_replicated(problem.mesh, (keys, states))
        return compiled(keys, states, epoch)

    return run_epoch


def epoch_step(epoch_fn: Callable, mesh) -> Callable:
    """The loop's ``step(key, state, t)`` for a compiled epoch (the run key is unused)."""

    def step(key, state: Members, t: int):
        del key  # members carry their own keys
        keys, inner, infos = epoch_fn(state.keys, state.inner, np.int32(t))
        return Members(keys, inner), infos

    return step


def keys_to_disk(keys) -> np.ndarray:
    return np.asarray(jax.random.key_data(keys))


def keys_from_disk(data) -> PRNGKey:
    return jax.random.wrap_key_data(jnp.asarray(data))


def place_members(problem: Problem, keys, inner) -> Members:
    return Members(keys, replicate(problem.mesh, inner))


def run_minibatch(algorithm, cfg, problem: Problem, **options: Unpack[RunOptions]) -> RunResult:
    """Run a minibatch :class:`~ppl_bnn.driver.loop.Algorithm` through the loop
    (``options``: :class:`~ppl_bnn.driver.runner.RunOptions`, without ``problem``)."""
    return run_from_config(algorithm, cfg, problem, reference=cfg.reference, **options)


def training_schedule(cfg) -> Schedule:
    """The schedule of an optimisation method (SGD, ensembles, VI): no step is a posterior
    sample; evaluate every ``eval_freq`` and checkpoint every ``save_freq`` epochs, and
    after the last."""
    return Schedule(
        sample=lambda t: False,
        evaluate=every(cfg.eval_freq, cfg.num_epochs),
        save=every(cfg.save_freq, cfg.num_epochs),
    )
