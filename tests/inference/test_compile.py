"""Compile counts: numbers go to the step, only graph-changing options to the builder.

The step size, the number of leapfrog steps, the mass matrix and the MH switch are traced
arguments of the HMC kernel: changing them between iterations must not retrace or
recompile it (a silent recompile per iteration would dominate a run's time).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax import monitoring

import ppl_bnn.driver.hmc as runner
from ppl_bnn.config import HMCConfig
from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import make_mesh, shard_batch
from ppl_bnn.inference.hmc import build_init, build_kernel, split_keys
from ppl_bnn.store.rundir import RunDir

pytestmark = pytest.mark.filterwarnings("error")  # a strict harness: warnings fail

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


class TraceCounting(LogDensity):
    """A LogDensity that counts how often it is traced (Python calls happen only then)."""

    traces = 0

    def __call__(self, position, batch):
        type(self).traces += 1
        return super().__call__(position, batch)


def _model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)


def test_kernel_traces_and_compiles_once():
    x = np.random.default_rng(0).normal(size=(10, 3))
    y = x @ np.array([1.0, -1.0, 0.5])
    mesh = make_mesh()
    ld = TraceCounting(_model, mesh, (x[:2], y[:2]))
    batch = shard_batch(mesh, x, y)
    chains = 2
    init = build_init(ld)
    state = init({"w": jnp.zeros((chains, 3))}, batch)
    kernel = build_kernel(ld)
    key = jax.random.key(0)
    # (step size, leapfrog steps, inverse mass, MH) differ at every iteration
    settings = [
        (0.05, 3, 1.0, False),
        (0.05, 3, 1.0, True),
        (0.02, 7, 1.0, True),
        (0.1, 1, 2.0, False),
        (0.03, 12, 0.5, True),
    ]
    traces_after_first = None
    for i, (eps, steps, inv_mass, do_mh) in enumerate(settings):
        key, keys = split_keys(key, chains)
        state, info = kernel(
            keys,
            state,
            batch,
            jnp.asarray([eps, eps / 2]),
            jnp.full((chains, 3), inv_mass),
            jnp.asarray([steps, steps + 1]),
            jnp.asarray(do_mh),
        )
        jax.block_until_ready(state)
        if i == 0:
            traces_after_first = TraceCounting.traces
            assert traces_after_first > 0
    assert TraceCounting.traces == traces_after_first  # no retrace
    assert kernel._cache_size() == 1  # and one compiled executable
    # init: a second stack of positions does not recompile either
    init({"w": jnp.ones((chains, 3))}, batch)
    assert init._cache_size() == 1


def _tiny_config(tmp_path, **overrides) -> HMCConfig:
    base = dict(
        dir=str(tmp_path / "run"),
        dataset_name="digits",
        model_name="logistic_regression",
        subset_train_to=40,
        weight_decay=1.0,
        step_size=1e-3,
        trajectory_len=4.5e-3,  # L = 5, then L changes as the step size adapts
        num_iterations=5,
        num_burn_in_iterations=2,  # iterations 1-2 without MH, 3-5 with
        step_size_adaptation_speed=0.5,
        target_accept_rate=0.8,
        num_chains=2,
    )
    base.update(overrides)
    return HMCConfig(**base)


def _compiles_per_iteration(cfg, monkeypatch) -> tuple[list[list[str]], list]:
    """Run ``run_hmc``; the backend compilations between consecutive metrics records."""
    events: list = []
    kernels: list = []

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            events.append(("compile", kwargs.get("fun_name")))

    original_log = RunDir.log

    def log(self, step, metrics):
        events.append(("iteration", step, metrics["num_leapfrog_steps"], metrics["do_mh"]))
        return original_log(self, step, metrics)

    def recording_build_kernel(ld, **kwargs):
        kernels.append(build_kernel(ld, **kwargs))
        return kernels[-1]

    monkeypatch.setattr(RunDir, "log", log)
    monkeypatch.setattr(runner, "build_kernel", recording_build_kernel)
    monitoring.register_event_duration_secs_listener(listener)
    try:
        runner.run_hmc(cfg, progress=False)
    finally:
        monitoring.unregister_event_duration_listener(listener)
    per_iteration, current, marks = [], [], []
    for e in events:
        if e[0] == "iteration":
            per_iteration.append(current)
            marks.append(e[1:])
            current = []
        else:
            current.append(e[1])
    assert len(kernels) == 1
    return per_iteration, marks, kernels[0]


def test_run_hmc_compiles_nothing_after_the_first_iteration(tmp_path, monkeypatch):
    """Burn-in -> MH, an adapting step size and a changing L: no compilation at all."""
    cfg = _tiny_config(tmp_path)
    per_iteration, marks, kernel = _compiles_per_iteration(cfg, monkeypatch)
    assert len(per_iteration) == 5
    assert [m[2] for m in marks] == [False, False, True, True, True]  # do_mh switched on
    assert len({m[1] for m in marks}) > 1, marks  # L changed with the step size
    assert "jit(one)" in per_iteration[0]  # the kernel compiled here
    assert per_iteration[1:] == [[]] * 4, per_iteration[1:]
    assert kernel._cache_size() == 1


def test_run_hmc_mass_matrix_adaptation_does_not_recompile(tmp_path, monkeypatch):
    """The estimate is set once, at the end of burn-in; the kernel must not recompile.

    (Its one-off estimate itself runs a few small eager operations, compiled once.)
    """
    cfg = _tiny_config(tmp_path, adapt_mass_matrix=True)
    per_iteration, marks, kernel = _compiles_per_iteration(cfg, monkeypatch)
    later = [name for names in per_iteration[1:] for name in names]
    assert "jit(one)" not in later, per_iteration[1:]
    assert kernel._cache_size() == 1
