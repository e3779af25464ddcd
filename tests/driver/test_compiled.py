"""The in-memory MCMC path: compiled scans in chunks, the same draws as the loop."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from ppl_bnn.config import MCMCConfig
from ppl_bnn.declare.problem import problem_from_arrays
from ppl_bnn.driver import compiled as compiled_lib
from ppl_bnn.driver.mcmc import run_mcmc


def _regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.deterministic("w_norm", np.sqrt(1.0) * (w**2).sum())
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, sigma), obs=y)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2)).astype(np.float32)
    y = (x @ np.array([1.0, -0.5]) + 0.3 * rng.normal(size=60)).astype(np.float32)
    xt = rng.normal(size=(7, 2)).astype(np.float32)
    return problem_from_arrays(
        _regression, x, y, xt, (xt @ np.array([1.0, -0.5])).astype(np.float32)
    )


@pytest.mark.parametrize("kernel", ["hmc", "nuts"])
def test_compiled_scans_give_the_loops_draws(problem, kernel, monkeypatch):
    """Chunks of 7 iterations (a remainder in each phase): samples, statistics, per-row
    log likelihood and the summary's counts are the loop's, bit for bit; predictions and
    metrics to float32 rounding."""
    monkeypatch.setattr(compiled_lib, "DEFAULT_CHUNK", 7)
    cfg = MCMCConfig(dir="", kernel=kernel, num_warmup=30, num_samples=20, num_chains=2, seed=5)
    loop = run_mcmc(cfg, problem=problem, collect=True, log_likelihood=True, compiled=False)
    scan = run_mcmc(cfg, problem=problem, collect=True, log_likelihood=True)
    assert loop.samples and scan.samples and set(loop.samples) == set(scan.samples)
    for k in loop.samples:
        np.testing.assert_array_equal(loop.samples[k], scan.samples[k], err_msg=k)
    for k in loop.sample_stats:
        np.testing.assert_array_equal(loop.sample_stats[k], scan.sample_stats[k], err_msg=k)
    assert loop.log_likelihood and scan.log_likelihood
    np.testing.assert_array_equal(loop.log_likelihood["y"], scan.log_likelihood["y"])
    # predictions of the chunk's draws at once: a float32 matmul of another batch size
    # may round differently in the last bit
    np.testing.assert_allclose(loop.predictions, scan.predictions, rtol=1e-6, atol=1e-7)
    assert loop.summary["final"] == pytest.approx(scan.summary["final"], rel=1e-5)
    for k in ("mean_accept_prob", "num_divergent", "num_rejected", "num_ensembled"):
        assert loop.summary[k] == scan.summary[k], k
    assert scan.samples["w"].shape == (2, 20, 2)


def test_a_compiled_run_takes_no_run_dir(problem):
    cfg = MCMCConfig(dir="somewhere", num_warmup=2, num_samples=2)
    with pytest.raises(ValueError, match="in memory"):
        run_mcmc(cfg, problem=problem, compiled=True)


def _nan_model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0, 1))
    with numpyro.plate("data", x.shape[0]):
        # an infinite scale: every log likelihood term is -inf (a valid distribution)
        numpyro.sample("y", dist.Normal(w, jnp.exp(1e4 + w)), obs=y)


@pytest.mark.parametrize("method", ["nuts", "hmc"])
def test_a_nan_log_density_stops_a_compiled_run_in_one_line(method):
    import ppl_bnn
    from ppl_bnn.driver.loop import NonFiniteError

    x, y = np.zeros((8, 1), np.float32), np.zeros(8, np.float32)
    with pytest.raises(NonFiniteError, match="^the log density at the initial point is -inf"):
        ppl_bnn.infer(_nan_model, x, y, method=method, num_warmup=5, num_samples=5)


def test_every_proposal_diverging_for_too_long_stops_the_run():
    from ppl_bnn.driver.mcmc import DIVERGENT_PATIENCE, DivergenceStreak

    streak = DivergenceStreak()
    for i in range(DIVERGENT_PATIENCE - 1):
        record = {"num_divergent": 4, "accept_prob": 0.0, "log_prob": -1.0}
        streak.update(record, 4)
        assert "_error" not in record, i
    streak.update(
        {"num_divergent": 3, "accept_prob": 0.0, "log_prob": -1.0}, 4
    )  # one chain moved: reset
    assert streak.count == 0
    for _ in range(DIVERGENT_PATIENCE):
        record = {"num_divergent": 4, "accept_prob": 0.0, "log_prob": -1.0}
        streak.update(record, 4)
    assert record["_error"].startswith(
        f"every proposal of every chain diverged for {DIVERGENT_PATIENCE}"
    )
