"""``ppl_bnn.infer``: keyword validation, result shapes, the one-line swap of methods,
in memory vs a run directory, and resume of a window-adapted run.

The statistical acceptance tests (posteriors against closed forms and long references)
are in ``tests/test_posteriors.py``; here every run is tiny.
"""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppl_bnn
from ppl_bnn.api import METHODS

N, D = 40, 2


def model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 10.0).expand([x.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.deterministic("w_total", w.sum())
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, sigma), obs=y)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0]) + 0.5 * rng.normal(size=N)).astype(np.float32)
    return x, y


SMALL = dict(num_warmup=30, num_samples=12, num_chains=2)
NUTS = dict(num_warmup=150, num_samples=60, num_chains=2)  # az.loo needs a few dozen draws


# --------------------------------------------------------------------------- validation
def test_unknown_keyword_is_one_line_naming_it_and_the_accepted_ones(data):
    x, y = data
    with pytest.raises(ValueError) as e:
        ppl_bnn.infer(model, x, y, method="nuts", schedule="cyclical")
    msg = str(e.value)
    assert "\n" not in msg
    assert "'schedule'" in msg and "target_accept" in msg and "dense_mass" in msg
    with pytest.raises(ValueError, match="unknown method 'foo'; choose one of nuts, hmc"):
        ppl_bnn.infer(model, x, y, method="foo")
    with pytest.raises(ValueError, match="takes no keyword 'guide'"):
        ppl_bnn.infer(model, x, y, method="sgld", guide="AutoNormal")


def test_original_hmc_needs_both_its_numbers(data):
    x, y = data
    with pytest.raises(ValueError, match="needs both step_size and trajectory_len"):
        ppl_bnn.infer(model, x, y, method="hmc", step_size=0.01)
    with pytest.raises(ValueError, match="belongs to hmc with the original's semantics"):
        ppl_bnn.infer(model, x, y, method="hmc", no_mh=True)


def test_every_method_takes_the_common_keywords():
    from ppl_bnn import methods

    assert set(METHODS) == set(methods.REGISTRY)
    assert {"nuts", "hmc", "sgld", "sghmc", "vi", "sgd", "map", "ensemble"} <= set(METHODS)
    for options in METHODS.values():
        assert not {"num_warmup", "num_samples", "num_chains", "seed", "step_size"} & set(options)


# ------------------------------------------------------------------------------ shapes
@pytest.fixture(scope="module")
def nuts(data):
    x, y = data
    return ppl_bnn.infer(model, x, y, method="nuts", x_test=x[:5], y_test=y[:5], **NUTS)


def test_result_shapes(nuts):
    r = nuts
    C, S = NUTS["num_chains"], NUTS["num_samples"]
    assert r.samples["w"].shape == (C, S, D)
    assert r.samples["sigma"].shape == (C, S)
    np.testing.assert_allclose(r.samples["w_total"], r.samples["w"].sum(-1), rtol=1e-5)
    assert np.all(r.samples["sigma"] > 0)  # constrained values
    for name in ("acceptance_rate", "diverging", "n_steps", "step_size", "energy", "lp"):
        assert r.sample_stats[name].shape == (C, S), name
    assert r.log_likelihood["y"].shape == (C, S, N)
    assert r.predictions.shape == (C, S, 5, 2)
    np.testing.assert_array_equal(r.observed["y"], r.observed["y"])
    assert r.summary["method"] == "nuts" and r.summary["complete"]
    assert r.summary["iterations_done"] == NUTS["num_warmup"] + NUTS["num_samples"]
    assert r.run_dir is None


def test_to_datatree_has_every_group_and_arviz_reads_it(nuts):
    import warnings

    import arviz as az

    dt = nuts.to_datatree()
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert group in dt.children, group
    assert set(dt["posterior"].data_vars) >= {"w", "sigma", "w_total"}
    summary = az.summary(dt, var_names=["w", "sigma"])
    assert len(summary) == D + 1
    with warnings.catch_warnings():  # 120 draws: Pareto k warnings are expected
        warnings.simplefilter("ignore")
        loo = az.loo(dt)
    assert np.isfinite(float(loo.elpd))


def test_per_row_log_likelihood_sums_to_the_model_likelihood(nuts, data):
    """The stored per-row terms are the model's: their sum is the log likelihood at the
    draw's parameter values (computed independently with scipy)."""
    from scipy.stats import norm

    x, y = data
    w, sigma = nuts.samples["w"][0, -1], nuts.samples["sigma"][0, -1]
    want = norm.logpdf(y, x @ w, sigma)
    np.testing.assert_allclose(nuts.log_likelihood["y"][0, -1], want, rtol=1e-4, atol=1e-4)


def test_no_test_split_no_predictions(data):
    x, y = data
    r = ppl_bnn.infer(model, x, y, method="sgd", step_size=1e-3, num_warmup=3, num_chains=1)
    assert r.predictions is None
    assert not any(k.startswith("test/") for k in r.summary["final"])
    assert r.samples["w"].shape == (1, 1, D)


# -------------------------------------------------------------------- one-line swap
@pytest.mark.parametrize(
    "method, extra",
    [
        ("hmc", {}),
        ("hmc", {"step_size": 0.02, "trajectory_len": 0.2}),
        ("sgld", {"step_size": 1e-3}),
        ("sghmc", {"step_size": 1e-3, "schedule": "cyclical", "preconditioner": "RMSprop"}),
        ("vi", {"step_size": 0.05}),
        ("map", {"step_size": 1e-3}),
        ("ensemble", {"step_size": 1e-3}),
    ],
)
def test_the_same_call_runs_every_method(data, method, extra):
    x, y = data
    r = ppl_bnn.infer(model, x, y, method=method, x_test=x[:5], y_test=y[:5], **SMALL, **extra)
    w = r.samples["w"]
    assert w.ndim == 3 and w.shape[2] == D and np.all(np.isfinite(w))
    assert r.predictions.shape[:2] == w.shape[:2]
    assert r.summary["complete"]


def test_vi_takes_any_numpyro_autoguide(data):
    x, y = data
    r = ppl_bnn.infer(
        model, x, y, method="vi", guide="AutoMultivariateNormal", num_warmup=2, num_samples=6
    )
    assert r.summary["method"] == "vi-AutoMultivariateNormal"
    assert r.samples["w"].shape == (4, 6, D)  # num_chains=4 independent fits
    with pytest.raises(ValueError, match="unknown guide 'AutoNothing'; NumPyro's autoguides"):
        ppl_bnn.infer(model, x, y, method="vi", guide="AutoNothing")


# ---------------------------------------------------------------- memory vs run_dir
def test_run_dir_gives_what_memory_gives_and_memory_writes_nothing(
    data, nuts, tmp_path, monkeypatch
):
    x, y = data
    monkeypatch.chdir(tmp_path)
    on_disk = ppl_bnn.infer(
        model, x, y, method="nuts", x_test=x[:5], y_test=y[:5], run_dir="run", **NUTS
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # in memory: nothing else
    for k, v in nuts.samples.items():
        np.testing.assert_array_equal(on_disk.samples[k], v, err_msg=k)
    for k, v in nuts.sample_stats.items():
        np.testing.assert_array_equal(on_disk.sample_stats[k], v, err_msg=k)
    np.testing.assert_array_equal(on_disk.predictions, nuts.predictions)
    assert (tmp_path / "run" / "summary.json").is_file()
    # run again: complete, nothing more to do, the same summary
    again = ppl_bnn.infer(
        model, x, y, method="nuts", x_test=x[:5], y_test=y[:5], run_dir="run", **NUTS
    )
    assert again.summary["iterations_done"] == on_disk.summary["iterations_done"]
    assert again.summary["final"] == on_disk.summary["final"]


def test_window_adapted_run_resumes_bit_for_bit(data, tmp_path):
    """Stopped in the middle of the warmup and resumed: the checkpoints of every later
    iteration equal the uninterrupted run's (adaptation state included)."""
    from ppl_bnn.config import MCMCConfig
    from ppl_bnn.declare.problem import problem_from_arrays
    from ppl_bnn.driver.mcmc import run_mcmc
    from ppl_bnn.store.checkpoint import latest_checkpoint, load_checkpoint

    x, y = data
    problem = problem_from_arrays(model, x, y)
    kw = dict(kernel="hmc", num_warmup=25, num_samples=5, num_chains=2, seed=1)
    run_mcmc(MCMCConfig(dir=str(tmp_path / "a"), **kw), problem=problem, progress=False)
    cfg = MCMCConfig(dir=str(tmp_path / "b"), **kw)
    part = run_mcmc(cfg, problem=problem, progress=False, stop_after=11)
    assert part.summary["iterations_done"] == 11 and not part.summary["complete"]
    rest = run_mcmc(cfg, problem=problem, progress=False)
    assert rest.summary["complete"]
    a, b = (load_checkpoint(latest_checkpoint(tmp_path / d / "checkpoints")) for d in "ab")
    a.pop("elapsed"), b.pop("elapsed")
    import jax

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def _known_noise(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 0.3), obs=y)


@pytest.mark.parametrize("method", ["sgld", "sghmc", "sgd", "ensemble"])
def test_minibatch_defaults_reach_the_exact_posterior(method):
    """Default step sizes (no step_size given) on a standardised regression with a
    closed-form Gaussian posterior. SGD and ensembles: the MAP, which is the posterior
    mean here, to a quarter of a posterior sd (900 minibatch steps). SG-MCMC: the mean to half a posterior sd
    (stated bias budget: 150 draws of a minibatch chain) and sds within a factor 1.6."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=200)).astype(np.float32)
    precision = np.eye(3) + x.T.astype(np.float64) @ x / 0.09
    cov = np.linalg.inv(precision)
    mean, sd = cov @ (x.T @ y / 0.09), np.sqrt(np.diag(cov))
    r = ppl_bnn.infer(
        _known_noise, x, y, method=method, num_warmup=300, num_samples=150, num_chains=2
    )
    w = r.samples["w"].reshape(-1, 3)
    if method in ("sgd", "ensemble"):
        np.testing.assert_array_less(np.abs(w - mean) / sd, 0.25)
    else:
        np.testing.assert_array_less(np.abs(w.mean(0) - mean) / sd, 0.5)
        ratio = w.std(0) / sd
        assert np.all((ratio > 1 / 1.6) & (ratio < 1.6)), ratio


# ------------------------------------------------------------ resumed run directories
def _groups(result) -> dict[str, dict[str, np.ndarray]]:
    return {
        "samples": result.samples,
        "sample_stats": result.sample_stats,
        "log_likelihood": result.log_likelihood,
        "predictions": {"test": result.predictions},
    }


@pytest.mark.parametrize("kernel", ["nuts", "hmc-original"])
def test_a_run_resumed_mid_sampling_returns_what_an_uninterrupted_one_does(data, tmp_path, kernel):
    """Stopped in the middle of its sampling and resumed, a run directory gives the same
    groups (every draw's sites, deterministic ones included, statistics, per-row log
    likelihoods and predictions) with the same values, bit for bit; and
    ``from_run_dir`` reads the same posterior, statistics and log likelihood back."""
    from ppl_bnn.config import HMCConfig, MCMCConfig
    from ppl_bnn.declare.problem import problem_from_arrays
    from ppl_bnn.diagnostics import from_run_dir
    from ppl_bnn.driver import run_hmc
    from ppl_bnn.driver.mcmc import run_mcmc

    x, y = data
    problem = problem_from_arrays(model, x, y, x[:5], y[:5])
    if kernel == "nuts":
        kw = dict(kernel="nuts", num_warmup=10, num_samples=8, num_chains=2, seed=1)
        run, make = run_mcmc, lambda d: MCMCConfig(dir=str(d), **kw)
    else:
        kw = dict(step_size=0.02, trajectory_len=0.1, num_iterations=18, num_burn_in_iterations=10)
        run, make = run_hmc, lambda d: HMCConfig(dir=str(d), num_chains=2, seed=1, **kw)
    options = dict(problem=problem, progress=False, collect=True, log_likelihood=True)
    whole = run(make(tmp_path / "a"), **options)
    part = run(make(tmp_path / "b"), stop_after=13, **options)
    assert part.summary["iterations_done"] == 13  # 3 of the 8 draws
    resumed = run(make(tmp_path / "b"), **options)
    assert resumed.summary["complete"]
    want, got = _groups(whole), _groups(resumed)
    for group in want:
        assert sorted(got[group]) == sorted(want[group]), group
        for name, value in want[group].items():
            assert value.shape[:2] == (2, 8), (group, name)
            np.testing.assert_array_equal(got[group][name], value, err_msg=f"{group}/{name}")
    assert "w_total" in resumed.samples and "acceptance_rate" in resumed.sample_stats
    dt = from_run_dir(tmp_path / "b")
    for group, var_group in (
        ("samples", "posterior"),
        ("sample_stats", "sample_stats"),
        ("log_likelihood", "log_likelihood"),
    ):
        names = set(dt[var_group].data_vars)
        if var_group == "sample_stats":  # the stats are renamed to ArviZ's names
            assert {"acceptance_rate", "diverging", "lp", "energy", "step_size"} <= names
            continue
        assert names == set(want[group]), var_group
        for name, value in want[group].items():
            np.testing.assert_array_equal(dt[var_group][name].values, value)


def test_run_dir_samples_hold_the_deterministic_sites(data, tmp_path):
    """``numpyro.deterministic`` sites are in every sample file, constrained, named as in
    the model, and in ``from_run_dir``'s posterior as in the in-memory result."""
    from ppl_bnn.diagnostics import from_run_dir

    x, y = data
    r = ppl_bnn.infer(model, x, y, method="nuts", run_dir=str(tmp_path / "r"), **SMALL)
    with np.load(tmp_path / "r" / "samples" / "sample_000031.npz", allow_pickle=False) as f:
        assert sorted(f.files) == ["sigma", "w", "w_total"]
        np.testing.assert_allclose(f["w_total"], f["w"].sum(-1), rtol=1e-5)
        assert np.all(f["sigma"] > 0)
    posterior = from_run_dir(tmp_path / "r")["posterior"]
    for name in ("w", "sigma", "w_total"):
        np.testing.assert_array_equal(posterior[name].values, r.samples[name])
