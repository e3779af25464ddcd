"""The run loop and the original HMC's burn-in: bounded step-size rule and clamped L,
divergent proposals not taken, stuck-chain warnings, nothing written before the first
checkpoint, lowering the total refused, ``--eval_freq``, in-memory runs."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from ppl_bnn.config import HMCConfig
from ppl_bnn.declare.problem import problem_from_arrays
from ppl_bnn.driver import hmc as runner
from ppl_bnn.driver.hmc import adapt_step_size, clamped_num_steps


def regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 100.0).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


@pytest.fixture(scope="module")
def unstandardised():
    """Covariates on scales 1 and 100 and coefficients 100 times apart: the posterior sds
    differ by 1e4, so one step size is far too large for one coordinate."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 2)) * np.array([1.0, 100.0])
    y = x @ np.array([50.0, 0.5]) + rng.normal(size=30)
    return problem_from_arrays(regression, x.astype(np.float32), y.astype(np.float32))


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 2)).astype(np.float32)
    y = (x @ np.array([1.0, -1.0]) + rng.normal(size=20)).astype(np.float32)
    xt = rng.normal(size=(6, 2)).astype(np.float32)
    yt = (xt @ np.array([1.0, -1.0])).astype(np.float32)
    return problem_from_arrays(regression, x, y, xt, yt)


# ------------------------------------------------------------ the step-size rule
def test_step_size_rule_is_bounded_and_treats_nan_as_zero():
    eps = np.array([1.0, 1.0, 1.0, 1.0])
    accept = np.array([np.nan, 0.0, 1.0, 0.8])
    out, at_floor = adapt_step_size(eps, accept, speed=100.0, target=0.8, floor=0.0)
    np.testing.assert_allclose(out, [0.5, 0.5, 2.0, 1.0])  # at most halve or double
    assert not at_floor.any()
    slow, _ = adapt_step_size(eps, accept, speed=0.5, target=0.8, floor=0.0)
    np.testing.assert_allclose(slow, np.exp(0.5 * (np.array([0.0, 0.0, 1.0, 0.8]) - 0.8)))
    low, at_floor = adapt_step_size(eps * 1e-3, np.zeros(4), speed=1.0, target=0.8, floor=7e-4)
    np.testing.assert_allclose(low, 7e-4)
    assert at_floor.all()


def test_num_steps_clamped_at_the_bound():
    steps, clamped = clamped_num_steps(1.0, np.array([0.1, 1e-6, 0.5]), 100)
    assert steps.tolist() == [10, 100, 2] and clamped.tolist() == [False, True, False]


def test_adaptation_on_an_unstandardised_regression_clamps_and_finishes(unstandardised, capsys):
    """The rule used to shrink the step size every iteration (acceptance 0 far from the
    mode) until L = trajectory_len / eps exceeded the bound and the run died."""
    cfg = HMCConfig(
        dir="",
        step_size=0.05,
        trajectory_len=0.5,
        max_num_leapfrog_steps=40,
        num_iterations=14,
        num_burn_in_iterations=12,
        step_size_adaptation_speed=5.0,
        num_chains=2,
        seed=0,
    )
    result = runner.run_hmc(cfg, problem=unstandardised, progress=False)
    summary = result.summary
    assert summary["complete"] and summary["iterations_done"] == 14
    assert summary["num_leapfrog_steps_clamped"] > 0
    assert np.all(result.sample_stats["n_steps"] <= 40)
    err = capsys.readouterr().err
    assert err.count("warning: the step size asks for more than --max_num_leapfrog_steps=40") == 1


# ----------------------------------------------------------- divergences in burn-in
def _kernel_setup(problem, chains=3, start=None):
    from ppl_bnn.inference.hmc import build_init, build_kernel

    ld = problem.logdensity
    positions = {"w": jnp.zeros((chains, 2)) if start is None else jnp.asarray(start, jnp.float32)}
    state = build_init(ld)(positions, problem.train)
    return state, build_kernel(ld, divergence_threshold=1000.0)


def _run(kernel, state, problem, eps, steps, do_mh, chains=3):
    return kernel(
        jax.random.split(jax.random.key(0), chains),
        state,
        problem.train,
        jnp.full((chains,), eps),
        jnp.ones((chains, 2)),
        jnp.full((chains,), steps),
        jnp.asarray(do_mh),
    )


def test_burn_in_does_not_take_a_divergent_proposal(unstandardised):
    state, kernel = _kernel_setup(unstandardised)
    new, info = _run(kernel, state, unstandardised, 1.0, 20, False)
    assert np.all(np.asarray(info.is_divergent))
    assert not np.any(np.asarray(info.is_accepted))
    np.testing.assert_array_equal(np.asarray(new.position["w"]), np.asarray(state.position["w"]))


def test_burn_in_takes_a_poor_but_finite_proposal(small):
    """Not divergent, acceptance probability below 1: MH might refuse it, burn-in takes it."""
    x, y = small.dataset.x_train, small.dataset.y_train
    mode = np.linalg.lstsq(x, y, rcond=None)[0]  # start at the mode: every move is uphill
    state, kernel = _kernel_setup(small, start=np.tile(mode, (3, 1)))
    new, info = _run(kernel, state, small, 0.5, 3, False)
    assert not np.any(np.asarray(info.is_divergent))
    assert np.all(np.asarray(info.acceptance_rate) < 1e-6)  # MH would almost surely refuse
    assert np.all(np.asarray(info.is_accepted))
    np.testing.assert_array_equal(np.asarray(new.logdensity), np.asarray(info.proposal_logdensity))


def test_divergences_counted_and_stuck_chains_reported(unstandardised, capsys):
    cfg = HMCConfig(
        dir="",
        step_size=1.0,
        trajectory_len=20.0,
        num_iterations=4,
        num_burn_in_iterations=2,
        zero_accept_patience=3,
        num_chains=2,
    )
    summary = runner.run_hmc(cfg, problem=unstandardised, progress=False).summary
    assert summary["num_divergent"] == 8 and summary["num_rejected"] == 4
    err = capsys.readouterr().err
    assert err.count("took no proposal for 3 consecutive iterations") == 1
    assert "chain(s) 0, 1" in err


# -------------------------------------------------------------- the run directory
def test_failure_before_the_first_checkpoint_leaves_nothing(small, tmp_path, monkeypatch):
    def broken(ld, **kw):
        def kernel(*args):
            raise ZeroDivisionError("boom")

        return kernel

    monkeypatch.setattr(runner, "build_kernel", broken)
    cfg = HMCConfig(dir=str(tmp_path / "run"), step_size=0.1, trajectory_len=0.3, num_iterations=2)
    with pytest.raises(ZeroDivisionError):
        runner.run_hmc(cfg, problem=small, progress=False)
    assert not (tmp_path / "run").exists()


def test_lowering_the_total_below_the_done_count_is_refused(small, tmp_path):
    kw = dict(dir=str(tmp_path / "run"), step_size=0.1, trajectory_len=0.3, num_chains=1)
    runner.run_hmc(HMCConfig(num_iterations=3, **kw), problem=small, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"] == "regression"
    with pytest.raises(ValueError) as e:
        runner.run_hmc(HMCConfig(num_iterations=2, **kw), problem=small, progress=False)
    assert str(e.value).startswith("--num_iterations=2 is below the 3 iterations already done")
    assert "\n" not in str(e.value)


def test_eval_freq_thins_the_metrics_not_the_average(small, tmp_path):
    """--eval_freq=3 computes train metrics every third iteration (and the last); every
    post-burn-in iteration still enters the average, identically."""
    from ppl_bnn.store.rundir import RunDir

    kw = dict(step_size=0.1, trajectory_len=0.3, num_iterations=7, num_burn_in_iterations=2)
    kw.update(num_chains=2)
    a = runner.run_hmc(HMCConfig(dir=str(tmp_path / "a"), **kw), problem=small, progress=False)
    b = runner.run_hmc(
        HMCConfig(dir=str(tmp_path / "b"), eval_freq=3, **kw), problem=small, progress=False
    )
    assert a.summary["num_ensembled"] == b.summary["num_ensembled"] == 2 * 5
    np.testing.assert_array_equal(
        np.load(tmp_path / "a" / "predictions.npy"), np.load(tmp_path / "b" / "predictions.npy")
    )
    with_train = [
        r["iteration"] for r in RunDir(tmp_path / "b").read_metrics() if "train/rmse" in r
    ]
    assert with_train == [3, 6, 7]
    assert len(RunDir(tmp_path / "b").read_metrics()) == 7  # sampler stats every iteration
    assert a.summary["final"] == b.summary["final"]


def test_in_memory_run_writes_nothing(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = HMCConfig(dir="", step_size=0.1, trajectory_len=0.3, num_iterations=3)
    result = runner.run_hmc(cfg, problem=small, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert result.run_dir is None and result.summary["complete"]
    assert result.samples["w"].shape == (1, 3, 2)
