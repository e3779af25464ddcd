"""Correctness without tuning: ``ppl_bnn.infer`` with DEFAULT settings on posteriors known
exactly or computed independently.

For HMC with the window warmup and for NUTS: every parameter mean within 4 Monte Carlo
standard errors (ours and the reference's combined), sd ratio in [0.9, 1.1], R-hat < 1.01
and bulk ESS >= 400 from 4 chains x 1000 draws (``slow``). The default run has smaller
versions with the same MCSE-based checks and correspondingly looser ESS and sd bounds,
over two seeds.

* conjugate Bayesian linear regression on un-standardised data (covariates on scales 1
  and 100, an un-centred covariate, coefficients 100x apart; known noise): the exact
  Gaussian posterior in closed form;
* non-centred eight schools against a long NumPyro NUTS run (tests/reference/);
* Neal's funnel, non-centred (exact: v ~ N(0, 3), z ~ N(0, 1)) and centred (what
  happens: divergences are reported and the neck is under-explored).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from mcmc_helpers import check_against, summary

from ppl_bnn import infer

REFERENCE = Path(__file__).parent / "reference"
FULL = {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}
FULL_BOUNDS = {"min_ess": 400, "max_rhat": 1.01, "sd_ratio": (0.9, 1.1)}
FAST = {"num_warmup": 400, "num_samples": 400, "num_chains": 4}
FAST_BOUNDS = {"min_ess": 150, "max_rhat": 1.03, "sd_ratio": (0.8, 1.2)}


# ------------------------------------------------------ conjugate linear regression
PRIOR_SD, NOISE_SD = 10.0, 0.5


def _blr_data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    x1 = 100.0 + 20.0 * rng.normal(size=n)  # un-centred, scale 100
    x2 = rng.normal(size=n)  # scale 1
    x = np.stack([np.ones(n), x1, x2], axis=1)
    beta = np.array([1.0, 0.01, 1.0])  # coefficients 100x apart
    y = x @ beta + NOISE_SD * rng.normal(size=n)
    return x.astype(np.float32), y.astype(np.float32)


def _blr(x, y=None):
    beta = numpyro.sample("beta", dist.Normal(0.0, PRIOR_SD).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ beta, NOISE_SD), obs=y)


def _blr_exact(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    precision = x.T @ x / NOISE_SD**2 + np.eye(x.shape[1]) / PRIOR_SD**2
    cov = np.linalg.inv(precision)
    return cov @ x.T @ y / NOISE_SD**2, np.sqrt(np.diag(cov))


def _check_blr(method, size, bounds, seed):
    x, y = _blr_data(seed=seed)
    mean, sd = _blr_exact(x, y)
    result = infer(_blr, x, y, method=method, seed=seed, **size)
    check_against(result.samples["beta"], mean, sd, name=f"{method} blr", **bounds)


@pytest.mark.parametrize("method", ["hmc", "nuts"])
@pytest.mark.parametrize("seed", [0, 1])
def test_linear_regression_unstandardised_fast(method, seed):
    _check_blr(method, FAST, FAST_BOUNDS, seed)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hmc", "nuts"])
def test_linear_regression_unstandardised(method):
    _check_blr(method, FULL, FULL_BOUNDS, 0)


# ------------------------------------------------------------------ eight schools
def _eight_schools():
    import importlib.util

    spec = importlib.util.spec_from_file_location("eight_schools", REFERENCE / "eight_schools.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_eight_schools(method, size, bounds, seed):
    es = _eight_schools()
    ref = json.loads((REFERENCE / "eight_schools.json").read_text())
    x, y = (a.astype(np.float32) for a in es.data())
    result = infer(es.model, x, y, method=method, seed=seed, **size)
    draws = es.flat(result.samples)
    names = list(draws)
    stacked = np.stack([draws[n] for n in names], axis=-1)
    check_against(
        stacked,
        [ref[n]["mean"] for n in names],
        [ref[n]["sd"] for n in names],
        ref_mcse=np.array([ref[n]["mcse_mean"] for n in names]),
        name=f"{method} eight schools {names}",
        **bounds,
    )
    # the deterministic site is there, constrained and consistent
    theta = result.samples["theta"]
    expected = (
        result.samples["mu"][..., None]
        + result.samples["tau"][..., None] * (result.samples["theta_tilde"])
    )
    np.testing.assert_allclose(theta, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["hmc", "nuts"])
@pytest.mark.parametrize("seed", [0, 1])
def test_eight_schools_noncentred_fast(method, seed):
    _check_eight_schools(method, FAST, FAST_BOUNDS, seed)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hmc", "nuts"])
def test_eight_schools_noncentred(method):
    _check_eight_schools(method, FULL, FULL_BOUNDS, 0)


# ------------------------------------------------------------------- Neal's funnel
FUNNEL_DIM = 9


def _funnel_noncentred(x, y=None):
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([FUNNEL_DIM]).to_event(1))
    numpyro.deterministic("x", z * jnp.exp(v / 2))
    with numpyro.plate("data", x.shape[0]):  # no data: an observed site of zero weight
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


def _funnel_centred(x, y=None):
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([FUNNEL_DIM]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


_NO_DATA = (np.zeros((2, 1), np.float32), np.zeros(2, np.float32))


@pytest.mark.parametrize("method", ["hmc", "nuts"])
def test_funnel_noncentred_fast(method):
    """Non-centred, the funnel is a standard Gaussian: exact."""
    result = infer(_funnel_noncentred, *_NO_DATA, method=method, seed=3, **FAST)
    draws = np.concatenate([result.samples["v"][..., None], result.samples["z"]], axis=-1)
    check_against(draws, np.zeros(10), [3.0] + [1.0] * 9, name=f"{method} funnel", **FAST_BOUNDS)
    assert result.sample_stats["diverging"].sum() == 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hmc", "nuts"])
def test_funnel_centred_fails_loudly(method):
    """Centred, no step size fits both the mouth and the neck of the funnel: the default
    sampler reports divergences and under-explores the neck (v's lower tail), so its sd
    of v falls short of 3. This test documents that behaviour (a user must read the
    divergences and reparameterise); if it ever samples the centred funnel correctly,
    the figures here should be revisited."""
    result = infer(_funnel_centred, *_NO_DATA, method=method, seed=0, **FULL)
    divergent = result.sample_stats["diverging"]
    v = result.samples["v"]
    s = summary(v[..., None])
    print(
        f"{method} centred funnel: {int(divergent.sum())} divergent of {divergent.size}, "
        f"sd(v) {s['sd'][0]:.2f} (true 3), 1% quantile {np.quantile(v, 0.01):.2f} (true -6.98), "
        f"R-hat {s['rhat'][0]:.3f}, bulk ESS {s['ess'][0]:.0f}"
    )
    assert divergent.sum() > 0, "no divergence reported on the centred funnel"
    assert np.quantile(v, 0.01) > -7.0  # true 1% quantile: 3 * -2.33 = -7.0
    assert s["sd"][0] < 3.0


# ------------------------------------------------------------------- BNN on digits
def _digits(n_train=300, n_test=20):
    from ppl_bnn.data import load_dataset

    d = load_dataset("digits")
    x = d.x_train.reshape(len(d.x_train), -1)[:n_train]
    xt = d.x_test.reshape(len(d.x_test), -1)[:n_test]
    return x.astype(np.float32), d.y_train[:n_train], xt.astype(np.float32)


def _mlp(x, y=None, hidden=16, classes=10):
    """A one-hidden-layer BNN (64-16-10), N(0, 1) priors, hand-written in NumPyro."""
    w1 = numpyro.sample("w1", dist.Normal(0, 1).expand([x.shape[1], hidden]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0, 1).expand([hidden]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0, 1).expand([hidden, classes]).to_event(2))
    b2 = numpyro.sample("b2", dist.Normal(0, 1).expand([classes]).to_event(1))
    logits = jnp.tanh(x @ w1 + b1) @ w2 + b2
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Categorical(logits=logits), obs=y)


def _mlp_logits(samples, xt):
    """The network's outputs f(x) for every draw, ``(chain, draw, n, classes)``."""
    h = np.tanh(np.einsum("ni,cdih->cdnh", xt, samples["w1"]) + samples["b1"][:, :, None])
    return np.einsum("cdnh,cdhk->cdnk", h, samples["w2"]) + samples["b2"][:, :, None]


def _mlp_probs(samples, xt):
    logits = _mlp_logits(samples, xt)
    logits -= logits.max(-1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def digits_reference():
    """Long NumPyro NUTS run (8 chains x 2000 draws after 1000 warmup) on the BNN: mean,
    sd and MCSEs of the test logits and of the test predictive probabilities."""
    import jax
    from numpyro.infer import MCMC, NUTS

    x, y, xt = _digits()
    mcmc = MCMC(
        NUTS(_mlp),
        num_warmup=1000,
        num_samples=2000,
        num_chains=8,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(7), x, y)
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(True).items()}
    return {"logits": summary(_mlp_logits(samples, xt)), "probs": summary(_mlp_probs(samples, xt))}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hmc", "nuts"])
def test_bnn_digits_function_space(method, digits_reference):
    """Function space, where a BNN posterior is identifiable: our default HMC / NUTS
    against the long NumPyro reference, 4 chains x 1000 draws.

    The network's outputs f(x) (logits) get the module's whole criterion (means
    within 4 MCSE, sd ratio in [0.9, 1.1], R-hat < 1.01, bulk ESS >= 400). The predictive
    probabilities get it for their means, R-hat and ESS, but not for their sds: most are
    near 0 with rare excursions, so heavy-tailed that the Monte Carlo error of their sd is
    8-15% in both runs (measured: 92% of them above 2.5%) and a 10% band cannot be
    resolved; their sd ratios are printed."""
    x, y, xt = _digits()
    result = infer(_mlp, x, y, method=method, seed=0, **FULL)
    ref = digits_reference

    def flat(a):
        return a.reshape(a.shape[:2] + (-1,))

    logits = ref["logits"]
    check_against(
        flat(_mlp_logits(result.samples, xt)),
        logits["mean"],
        logits["sd"],
        ref_mcse=logits["mcse"],
        ref_mcse_sd=logits["mcse_sd"],
        name=f"{method} digits BNN logits",
        **FULL_BOUNDS,
    )
    probs = ref["probs"]
    keep = probs["sd"] > 1e-3  # probabilities pinned at 0 or 1 have no spread to compare
    check_against(
        flat(_mlp_probs(result.samples, xt))[..., keep],
        probs["mean"][keep],
        probs["sd"][keep],
        ref_mcse=probs["mcse"][keep],
        ref_mcse_sd=probs["mcse_sd"][keep],
        name=f"{method} digits BNN probabilities",
        **{**FULL_BOUNDS, "sd_ratio": (0.0, np.inf)},
    )
