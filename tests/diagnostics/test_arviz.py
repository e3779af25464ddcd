"""ArviZ conversion: every group in ArviZ's schema, and az.summary / az.ess / az.loo /
az.plot_trace working on it; ``diagnose`` on the same conversion; one chain said plainly."""

from __future__ import annotations

import arviz as az
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

from ppl_bnn.diagnostics import to_datatree


def _regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.deterministic("w_norm", jnp.sqrt(jnp.sum(w**2)))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, sigma), obs=y)


def _fake(chains=2, draws=50, n=20, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(chains, draws, 3))
    sigma = np.exp(rng.normal(size=(chains, draws)) * 0.1)
    x = rng.normal(size=(n, 3))
    y = x @ np.array([1.0, -1.0, 0.5]) + rng.normal(size=n)
    loglik = stats.norm.logpdf(y, np.einsum("cdk,nk->cdn", w, x), sigma[..., None])
    probs = rng.dirichlet(np.ones(4), size=(chains, draws, 5))
    stats_ = {
        "acceptance_rate": rng.uniform(size=(chains, draws)),
        "is_divergent": np.zeros((chains, draws), bool),
        "num_integration_steps": np.full((chains, draws), 7),
        "logdensity": rng.normal(size=(chains, draws)),
        "energy": rng.normal(size=(chains, draws)),
        "step_size": np.full((chains, draws), 0.1),
    }
    return {"w": w, "sigma": sigma}, stats_, {"y": loglik}, {"y": y}, probs


def test_to_datatree_groups_names_and_shapes():
    samples, stats_, loglik, observed, probs = _fake()
    dt = to_datatree(
        samples,
        sample_stats=stats_,
        log_likelihood=loglik,
        observed_data=observed,
        predictions=probs,
    )
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data", "predictions"} <= set(
        dt.children
    )
    assert dt["posterior"]["w"].shape == (2, 50, 3)
    assert dt["posterior"]["sigma"].shape == (2, 50)
    ss = dt["sample_stats"]
    assert {"acceptance_rate", "diverging", "n_steps", "lp", "energy", "step_size"} <= set(
        ss.data_vars
    )
    assert ss["diverging"].dtype == bool
    assert dt["log_likelihood"]["y"].dims == ("chain", "draw", "y_dim_0")
    assert dt["observed_data"]["y"].dims == ("y_dim_0",)
    assert dt["predictions"]["test_prob"].dims == ("chain", "draw", "test_point", "class")
    # regression predictions: (mean, std)
    reg = to_datatree({}, predictions=np.ones((2, 5, 3, 2)), task="regression")
    assert set(reg["predictions"].data_vars) == {"test_mean", "test_std"}
    with pytest.raises(ValueError, match="leading axes"):
        to_datatree({"a": np.zeros((2, 5)), "b": np.zeros((3, 5))})


def test_arviz_functions_work_on_it():
    samples, stats_, loglik, observed, probs = _fake(chains=4, draws=100)
    dt = to_datatree(samples, sample_stats=stats_, log_likelihood=loglik, observed_data=observed)
    summary = az.summary(dt)
    assert {"w[0]", "w[1]", "w[2]", "sigma"} <= set(summary.index)
    ess = az.ess(dt)
    assert ess["w"].shape == (3,)
    loo = az.loo(dt)
    assert np.isfinite(loo.elpd) and loo.n_data_points == 20
    # the pointwise elpd is the log-mean-exp of the likelihood draws (a closed form check
    # of the plumbing: with i.i.d. draws PSIS-LOO is close to it minus a small correction)
    lme = np.log(np.mean(np.exp(loglik["y"].reshape(-1, 20)), axis=0))
    assert loo.elpd < lme.sum()
    import matplotlib

    matplotlib.use("Agg")
    az.plot_trace(dt, var_names=["sigma"])


def test_infer_result_converts_completely():
    """A hand-written NumPyro model through ``ppl_bnn.infer`` (NUTS): every latent and
    deterministic site, stats, log likelihood, observed data and test predictions."""
    from ppl_bnn import infer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    y = (x @ np.array([1.0, -0.5]) + 0.3 * rng.normal(size=40)).astype(np.float32)
    result = infer(
        _regression,
        x,
        y,
        method="nuts",
        num_warmup=100,
        num_samples=60,
        num_chains=2,
        x_test=x[:5],
        log_likelihood=True,
    )
    dt = result.to_datatree()
    post = dt["posterior"]
    assert post["w"].shape == (2, 60, 2)
    assert post["sigma"].shape == (2, 60)
    assert "w_norm" in post.data_vars
    np.testing.assert_allclose(
        post["w_norm"].values, np.sqrt((post["w"].values ** 2).sum(-1)), rtol=1e-5
    )
    assert float(post["sigma"].min()) > 0  # constrained values
    ss = dt["sample_stats"]
    assert {"acceptance_rate", "diverging", "step_size", "n_steps", "lp"} <= set(ss.data_vars)
    assert dt["log_likelihood"]["y"].shape == (2, 60, 40)
    np.testing.assert_allclose(dt["observed_data"]["y"].values, y)
    assert "predictions" in dt.children
    assert np.isfinite(az.loo(dt).elpd)
    assert "w[0]" in az.summary(dt).index


def test_diagnose_says_when_rhat_cannot_be_computed(tmp_path):
    from ppl_bnn import infer
    from ppl_bnn.diagnostics import diagnose_runs, from_run_dir

    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 2)).astype(np.float32)
    y = (x @ np.array([1.0, -0.5]) + 0.3 * rng.normal(size=30)).astype(np.float32)
    run = tmp_path / "one"
    infer(
        _regression,
        x,
        y,
        method="nuts",
        num_warmup=30,
        num_samples=20,
        num_chains=1,
        x_test=x[:4],
        run_dir=str(run),
    )
    report = diagnose_runs([run])
    text = report.format()
    assert report.num_chains == 1
    assert "R-hat: not computed (one chain" in text
    assert "R-hat > 1.1" not in text
    dt = from_run_dir(run)
    assert dt["predictions"]["test_mean"].shape[:2] == (1, 20)


def test_site_names_with_a_slash():
    """BNN sites are named ``net/<module path>``; DataTree reserves ``/`` for groups."""
    dt = to_datatree({"net/Dense_0.kernel": np.zeros((2, 5, 3, 4)), "s": np.ones((2, 5))})
    assert dt["posterior"]["net.Dense_0.kernel"].shape == (2, 5, 3, 4)
    assert "net.Dense_0.kernel" in az.ess(dt).data_vars
