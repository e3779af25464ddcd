"""The model zoo: its references (closed forms against independent Monte Carlo), the
pass/fail logic, a fast subset of runs; the slow tier runs the zoo for nuts and hmc."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from ppl_bnn.experiments import zoo


@pytest.fixture(scope="module")
def x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def _moments_close(draws: dict, stats: dict, z: float = 5.0) -> None:
    """Monte Carlo means and sds of iid ``draws`` within ``z`` standard errors."""
    for q, s in stats.items():
        d = draws[q]
        n = d.size
        assert abs(d.mean() - s["mean"]) < z * s["sd"] / math.sqrt(n), q
        kurt = np.mean((d - d.mean()) ** 4) / d.var() ** 2
        se_sd = s["sd"] * math.sqrt((kurt - 1) / (4 * n))
        assert abs(d.std() - s["sd"]) < z * se_sd, q


# ------------------------------------------------------------------ the zoo itself
def test_zoo_has_twenty_models_each_with_a_reference():
    assert len(zoo.MODELS) >= 20
    refs = zoo.load_references()
    for m in zoo.MODELS.values():
        assert m.source in ("closed form", "quadrature", "numpyro-nuts"), m.name
        assert m.expected in ("pass", "must-warn"), m.name
        if m.exact is None:
            key = m.reference_of or m.name
            assert key in refs and refs[key].get("quantities"), m.name
            for s in refs[key]["quantities"].values():
                assert s["mcse_mean"] > 0 and s["sd"] > 0
        # the data are deterministic
        (x1, y1), (x2, y2) = m.data(), m.data()
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
        assert x1.shape[0] == y1.shape[0]
    assert {m.name for m in zoo.MODELS.values() if m.expected == "must-warn"} >= {
        "funnel_centred",
        "bimodal",
    }


def test_the_public_twin_is_the_one_written_down():
    rng = np.random.default_rng(0)
    x = rng.normal(100, 15, size=(434, 1))
    y = 26 + 0.6 * x[:, 0] + rng.normal(0, 18, size=434)
    m = zoo.get("linear_flat_twin")
    gx, gy = m.data()
    assert gx.dtype == np.float64 and gy.dtype == np.float64
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)


def test_flatten_names_every_scalar():
    s = {"a": np.zeros((2, 3)), "b": np.zeros((2, 3, 2)), "c": np.zeros((2, 3, 2, 2))}
    assert list(zoo.flatten(s, ["a", "b", "c"])) == [
        "a",
        "b[0]",
        "b[1]",
        "c[0,0]",
        "c[0,1]",
        "c[1,0]",
        "c[1,1]",
    ]


# ------------------------------------------------------------------ closed forms vs Monte Carlo
def test_flat_prior_regression_matches_direct_sampling():
    """Student-t / scaled-inverse-chi-square marginals against direct draws of
    ``sigma^2 | y`` then ``beta | sigma, y`` (no formula for the marginals involved)."""
    x, y = zoo.get("linear_flat_n50").data()
    post = zoo.flat_prior_regression(x, y)
    rng = np.random.default_rng(1)
    n = 400_000
    X = np.column_stack([np.ones(len(x)), x])
    nu = len(y) - 2 - 1
    s2 = post["s2"]
    sigma2 = nu * s2 / rng.chisquare(nu, size=n)
    chol = np.linalg.cholesky(np.linalg.inv(X.T @ X))
    beta = post["beta_hat"] + np.sqrt(sigma2)[:, None] * (rng.normal(size=(n, 2)) @ chol.T)
    draws = {"beta[0]": beta[:, 0], "beta[1]": beta[:, 1], "sigma": np.sqrt(sigma2)}
    _moments_close(draws, post["stats"])


def test_flat_posterior_of_sigma_is_what_its_density_says():
    """The degrees of freedom: ``p(sigma | y) ∝ sigma^-(n - k) exp(-S / 2 sigma^2)`` on a
    grid against the closed form (quadrature independent of the chi-square algebra)."""
    x, y = zoo.get("linear_flat_n50").data()
    post = zoo.flat_prior_regression(x, y)
    X = np.column_stack([np.ones(len(x)), x])
    rss = float(np.sum((y - X @ post["beta_hat"]) ** 2))
    mean, sd = zoo.one_dim_quadrature(
        lambda s: -(len(y) - 2) * np.log(s) - rss / (2 * s**2), 1.0, 60.0
    )
    assert mean == pytest.approx(post["stats"]["sigma"]["mean"], rel=1e-8)
    assert sd == pytest.approx(post["stats"]["sigma"]["sd"], rel=1e-6)


def test_sigma_quadrature_matches_the_closed_forms():
    x, y = zoo.get("linear_flat_twin").data()
    X = np.column_stack([np.ones(len(x)), x])
    exact = zoo.flat_prior_regression(x, y)["stats"]
    flat = zoo.sigma_quadrature(X, y, lambda s: np.zeros_like(s))
    # a Gaussian prior so wide that it is flat: the Gaussian-prior branch
    wide = zoo.sigma_quadrature(X, y, lambda s: np.zeros_like(s), prior_cov=np.eye(2) * 1e14)
    for q, s in exact.items():
        for got in (flat, wide):
            assert got[q]["mean"] == pytest.approx(s["mean"], rel=1e-7)
            assert got[q]["sd"] == pytest.approx(s["sd"], rel=1e-5)
    # a prior that pins sigma at 1: the known-sigma conjugate posterior
    X, y = zoo._scales_data()
    pinned = zoo.sigma_quadrature(
        X, y, lambda s: -1e7 * np.log(s) ** 2, prior_cov=np.diag((100.0 / zoo.SCALES) ** 2)
    )
    known = zoo.gaussian_known_sigma(X, y, 1.0, 100.0 / zoo.SCALES)
    for q, s in known.items():
        assert pinned[q]["mean"] == pytest.approx(s["mean"], rel=1e-4)
        assert pinned[q]["sd"] == pytest.approx(s["sd"], rel=1e-4)


def test_halfcauchy_quadrature_matches_importance_sampling():
    """The half-Cauchy twin by self-normalised importance sampling from the flat-prior
    posterior (weights: the half-Cauchy density)."""
    m = zoo.get("linear_flat_n50")
    x, y = m.data()
    post = zoo.flat_prior_regression(x, y)
    X = np.column_stack([np.ones(len(x)), x])
    rng = np.random.default_rng(2)
    n = 400_000
    sigma2 = post["nu"] * post["s2"] / rng.chisquare(post["nu"], size=n)
    chol = np.linalg.cholesky(np.linalg.inv(X.T @ X))
    beta = post["beta_hat"] + np.sqrt(sigma2)[:, None] * (rng.normal(size=(n, 2)) @ chol.T)
    w = 1.0 / (1.0 + sigma2 / 5.0**2)
    w /= w.sum()
    quad = zoo.sigma_quadrature(X, y, lambda s: -np.log1p((s / 5.0) ** 2))
    ess = 1.0 / np.sum(w**2)
    for q, v in {"beta[0]": beta[:, 0], "beta[1]": beta[:, 1], "sigma": np.sqrt(sigma2)}.items():
        mean = w @ v
        sd = math.sqrt(w @ (v - mean) ** 2)
        assert abs(mean - quad[q]["mean"]) < 5 * sd / math.sqrt(ess), q
        assert sd == pytest.approx(quad[q]["sd"], rel=0.01), q


def test_nig_matches_direct_sampling():
    x, y = zoo._nig_data()
    stats = zoo.nig_regression(x, y, v0=10.0, a0=3.0, b0=2.0)
    k = x.shape[1]
    vn = np.linalg.inv(x.T @ x + np.eye(k) / 10.0)
    mn = vn @ x.T @ y
    an = 3.0 + len(y) / 2
    bn = 2.0 + 0.5 * float(y @ y - mn @ np.linalg.solve(vn, mn))
    rng = np.random.default_rng(3)
    n = 400_000
    sigma2 = bn / rng.gamma(an, size=n)
    beta = mn + np.sqrt(sigma2)[:, None] * (rng.normal(size=(n, k)) @ np.linalg.cholesky(vn).T)
    draws = {f"beta[{i}]": beta[:, i] for i in range(k)} | {"sigma2": sigma2}
    _moments_close(draws, stats)


def test_funnel_and_bimodal_references_match_direct_sampling():
    rng = np.random.default_rng(4)
    n = 400_000
    v = rng.normal(0, 3, size=n)
    x = rng.normal(size=n) * np.exp(v / 2)
    ref = zoo._funnel_exact("x")()
    assert abs(x.std() / ref["x[0]"]["sd"] - 1) < 0.1  # heavy tails: a loose check
    _moments_close({"v": v}, {"v": ref["v"]})
    # bimodal: rejection sampling from the prior N(0, 10) with the likelihood as acceptance
    ref = zoo._bimodal_exact()
    t = rng.normal(0, 10, size=4_000_000)
    for j, yj in enumerate(zoo.BIMODAL_Y):
        keep = t[rng.uniform(size=t.size) < np.exp(-0.5 * (yj - t**2) ** 2)]
        _moments_close({f"theta[{j}]": keep}, {f"theta[{j}]": ref[f"theta[{j}]"]})


# ------------------------------------------------------------------ pass / fail logic
def _iid(stats, rng, chains=4, draws=1000):
    return {q: rng.normal(s["mean"], s["sd"], size=(chains, draws)) for q, s in stats.items()}


def _as_samples(flat):
    return {"beta": np.stack([flat["beta[0]"], flat["beta[1]"]], -1), "sigma": flat["sigma"]}


def test_evaluate_passes_exact_draws_and_fails_each_kind_of_error():
    m = zoo.get("linear_flat_twin")
    ref = zoo.reference(m)
    rng = np.random.default_rng(5)
    ok = zoo.evaluate(_as_samples(_iid(ref, rng)), m)
    assert ok["pass"], ok
    assert ok["max_rhat"] < 1.01 and ok["min_ess_bulk"] > 3000

    flat = _iid(ref, rng)
    flat["beta[1]"] = flat["beta[1]"] + 0.5 * ref["beta[1]"]["sd"]  # biased by 0.5 sd
    bad = zoo.evaluate(_as_samples(flat), m)
    assert not bad["pass"] and bad["failures"] == ["mean beta[1]"]

    flat = _iid(ref, rng)
    flat["sigma"] = ref["sigma"]["mean"] + 1.5 * (flat["sigma"] - ref["sigma"]["mean"])
    assert zoo.evaluate(_as_samples(flat), m)["failures"] == ["sd sigma"]

    flat = _iid(ref, rng)
    flat["beta[0]"][0] += 1.0 * ref["beta[0]"]["sd"]  # one chain elsewhere
    assert "rhat beta[0]" in zoo.evaluate(_as_samples(flat), m)["failures"]

    # strongly autocorrelated draws: exact marginals, ESS far below 400
    flat = _iid(ref, rng)
    e = rng.normal(size=(4, 1000))
    ar = np.zeros_like(e)
    ar[:, 0] = e[:, 0]
    for t in range(1, 1000):
        ar[:, t] = 0.995 * ar[:, t - 1] + math.sqrt(1 - 0.995**2) * e[:, t]
    flat["sigma"] = ref["sigma"]["mean"] + ref["sigma"]["sd"] * ar
    got = zoo.evaluate(_as_samples(flat), m)
    assert "ess sigma" in got["failures"]


def test_evaluate_uses_the_references_mcse_too():
    m = zoo.get("linear_flat_twin")
    ref = {q: dict(s) for q, s in zoo.reference(m).items()}
    rng = np.random.default_rng(6)
    flat = _iid(ref, rng)
    shift = 0.2 * ref["beta[1]"]["sd"]  # ~ 12 MCSE of 4000 iid draws
    flat["beta[1]"] = flat["beta[1]"] + shift
    assert not zoo.evaluate(_as_samples(flat), m, ref)["pass"]
    ref["beta[1]"]["mcse_mean"] = shift  # an imprecise reference: the shift is 1 MCSE
    assert zoo.evaluate(_as_samples(flat), m, ref)["pass"]


def test_pass_table_counts_passes_and_silent_failures():
    recs = [
        {
            "model": "a",
            "method": "nuts",
            "seed": s,
            "expected": "pass",
            "pass": s != 1,
            "warned": False,
        }
        for s in range(3)
    ] + [
        {
            "model": "b",
            "method": "nuts",
            "seed": s,
            "expected": "must-warn",
            "pass": False,
            "warned": True,
        }
        for s in range(3)
    ]
    table = zoo.pass_table(recs)
    assert "| a | pass | 2/3, warned 0/1 |" in table
    assert "| b | must-warn | 0/3, warned 3/3 |" in table
    assert "2/6, 1 silent" in table


# ------------------------------------------------------------------ a fast subset of runs
def test_numpyro_nuts_passes_a_closed_form_model(x64):
    rec = zoo.run(zoo.get("nig_conjugate"), "numpyro-nuts", 0, num_warmup=300, num_samples=300)
    assert rec["pass"], rec["failures"]
    assert rec["grads"] > 0 and rec["grads_warmup"] is None and rec["wall_s"] > 0


@pytest.mark.slow
def test_numpyro_nuts_fails_the_centred_funnel(x64):
    rec = zoo.run(zoo.get("funnel_centred"), "numpyro-nuts", 0, num_warmup=150, num_samples=150)
    assert not rec["pass"]
    if rec["diagnosed"] is not None:  # ppl_bnn's run-end checks, where present
        assert rec["warned"]


def test_infer_nuts_on_the_zoo_through_the_benchmark_record(x64):
    rec = zoo.run(zoo.get("nig_conjugate"), "nuts", 0, num_warmup=200, num_samples=200)
    for k in ("pass", "failures", "max_rhat", "min_ess_bulk", "grads", "wall_s", "warned"):
        assert k in rec
    assert not any(f.startswith(("mean", "sd")) for f in rec["failures"]), rec["failures"]
    assert rec["grads"] > 0


# ------------------------------------------------------------------ slow tier: the zoo
SLOW_SEEDS = (0, 1, 2, 3, 4)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nuts", "hmc"])
@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_zoo(x64, name, method):
    """On every model NumPyro NUTS with defaults passes, every seed passes; wherever a
    seed fails, the run warned (no silent failure)."""
    m = zoo.get(name)
    ref = zoo.reference(m)
    recs = [zoo.run(m, method, s, ref=ref) for s in SLOW_SEEDS]
    silent = [r["seed"] for r in recs if not r["pass"] and not r["warned"]]
    assert not silent, f"{name}/{method}: seeds {silent} failed without a warning"
    baseline = zoo.load_references().get(name, {}).get("numpyro_defaults")
    if m.expected == "pass" and baseline and baseline.get("pass"):
        failed = {r["seed"]: r["failures"][:3] for r in recs if not r["pass"]}
        assert not failed, f"{name}/{method}: {failed}"
