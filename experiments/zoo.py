"""A zoo of small NumPyro models with reference posteriors, to test samplers against.

Each :class:`ZooModel` is a model ``model(x, y=None)``, its data (generated from a fixed
NumPy seed), the scalar quantities to compare and where its reference comes from:

* ``"closed form"``: conjugate or flat-prior Gaussian regressions (Student-t and scaled
  inverse chi-square marginals, normal-inverse-gamma), Gaussian targets, Neal's funnel;
* ``"quadrature"``: a Gaussian linear model whose only non-conjugate parameter is the
  noise scale (a half-Cauchy or half-normal prior), integrated on a fine grid of
  ``log sigma`` (exact to many digits), and one-dimensional targets;
* ``"numpyro-nuts"``: a long NumPyro NUTS run (many chains), stored as summary statistics
  in ``zoo_references.json`` beside this module (``benchmarks/zoo_references.py``
  regenerates it).

:func:`evaluate` compares draws with a reference: means within 4 Monte Carlo standard
errors (the run's and the reference's, combined), sds within ``[0.8, 1.25]`` of the
reference's, R-hat below 1.01 and bulk ESS at least 400 on every quantity.

Models marked ``expected="must-warn"`` (a centred funnel, a bimodal target, centred eight
schools) are ones on which a default sampler is expected to fail: a run on them must
fail loudly (a warning), not pass.

Example:
    >>> from ppl_bnn.experiments import zoo
    >>> len(zoo.MODELS) >= 20
    True
    >>> m = zoo.get("linear_flat_twin")
    >>> x, y = m.data()
    >>> x.shape, x.dtype
    ((434, 1), dtype('float64'))
    >>> sorted(zoo.reference(m))
    ['beta[0]', 'beta[1]', 'sigma']
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MCSE_FACTOR",
    "MODELS",
    "REFERENCES_PATH",
    "SD_RATIO",
    "ESS_MIN",
    "RHAT_MAX",
    "ZooModel",
    "evaluate",
    "flatten",
    "get",
    "load_references",
    "reference",
    "run_numpyro_nuts",
    "summarize",
]

REFERENCES_PATH = Path(__file__).with_name("zoo_references.json")
MCSE_FACTOR = 4.0
SD_RATIO = (0.8, 1.25)
RHAT_MAX = 1.01
ESS_MIN = 400.0

Stats = dict[str, dict[str, float]]  # quantity -> {mean, sd, mcse_mean, mcse_sd}


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo.

    Attributes:
        name: its name (``--models``).
        model: the NumPyro model ``model(x, y=None)``.
        data: ``() -> (x, y)``, deterministic.
        sites: the sites compared (every scalar component of each).
        source: ``"closed form"``, ``"quadrature"`` or ``"numpyro-nuts"``.
        why: what it stresses.
        expected: ``"pass"`` or ``"must-warn"`` (a default sampler is expected to fail;
            the run must say so).
        exact: ``() -> Stats`` for the closed-form and quadrature references.
        reference_of: use another model's stored reference (same posterior, other
            parameterisation).
        reference_options: NumPyro NUTS keywords for the long reference run.
        reference_model: the same posterior in other coordinates, for the long
            reference run (its deterministic sites give ``sites``).
    """

    name: str
    model: Callable
    data: Callable[[], tuple[np.ndarray, np.ndarray]]
    sites: tuple[str, ...]
    source: str
    why: str
    expected: str = "pass"
    exact: Callable[[], Stats] | None = None
    reference_of: str | None = None
    reference_options: Mapping[str, Any] = field(default_factory=dict)
    reference_model: Callable | None = None


# ------------------------------------------------------------------ closed forms
def _stats(mean, sd, names) -> Stats:
    mean, sd = np.atleast_1d(mean), np.atleast_1d(sd)
    return {
        n: {"mean": float(m), "sd": float(s), "mcse_mean": 0.0, "mcse_sd": 0.0}
        for n, m, s in zip(names, mean, sd, strict=True)
    }


def _names(site: str, k: int | None) -> list[str]:
    return [site] if k is None else [f"{site}[{i}]" for i in range(k)]


def flat_prior_regression(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The posterior of ``y ~ N(X beta, sigma)`` with ``p(beta, sigma) ∝ 1`` (flat on
    ``beta`` and on ``sigma > 0``), ``X = [1, x]``.

    Integrating ``beta`` out leaves ``p(sigma | y) ∝ sigma^-(n - k) exp(-S / (2 sigma^2))``
    (``S`` the residual sum of squares at the least-squares ``beta_hat``): ``sigma^2`` is
    scaled-inverse-chi-square with ``nu = n - k - 1`` degrees of freedom and scale
    ``s^2 = S / nu``, and ``beta`` is multivariate Student-t with ``nu`` degrees of
    freedom, location ``beta_hat`` and scale matrix ``s^2 (X'X)^-1``.

    Returns ``{"nu", "s2", "beta_hat", "scale"}`` and the marginal moments ``"stats"``.
    """
    from scipy.special import gammaln

    X = np.column_stack([np.ones(len(x)), x])
    n, k = X.shape
    beta_hat, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta_hat
    nu = n - k - 1
    s2 = float(resid @ resid) / nu
    scale = s2 * np.linalg.inv(X.T @ X)
    beta_sd = np.sqrt(np.diag(scale) * nu / (nu - 2))
    # sigma = s sqrt(nu) / chi_nu: E[1 / chi_nu] = Gamma((nu - 1) / 2) / (sqrt(2) Gamma(nu / 2))
    e_inv_chi = math.exp(gammaln((nu - 1) / 2) - gammaln(nu / 2)) / math.sqrt(2)
    sigma_mean = math.sqrt(s2 * nu) * e_inv_chi
    sigma_sd = math.sqrt(s2 * nu / (nu - 2) - sigma_mean**2)
    stats = _stats(beta_hat, beta_sd, _names("beta", k))
    stats.update(_stats(sigma_mean, sigma_sd, ["sigma"]))
    return {"nu": nu, "s2": s2, "beta_hat": beta_hat, "scale": scale, "stats": stats}


def sigma_quadrature(
    X: np.ndarray,
    y: np.ndarray,
    log_prior_sigma: Callable[[np.ndarray], np.ndarray],
    prior_mean: np.ndarray | None = None,
    prior_cov: np.ndarray | None = None,
    num_points: int = 4001,
) -> Stats:
    """Posterior moments of ``y ~ N(X beta, sigma)``, ``beta ~ N(prior_mean, prior_cov)``
    (flat when ``prior_cov`` is ``None``) and any prior on ``sigma``, by integrating on a
    grid of ``log sigma``: given ``sigma`` everything is Gaussian, so ``p(y | sigma)``,
    ``E[beta | sigma, y]`` and ``Cov[beta | sigma, y]`` are exact; a coarse grid finds
    where the posterior of ``log sigma`` lives, a fine one (trapezoid rule, spectrally
    accurate for this smooth, rapidly decaying integrand) integrates it.
    """
    n, k = X.shape
    if prior_cov is None:
        xtx = X.T @ X
        beta_hat = np.linalg.solve(xtx, X.T @ y)
        rss = float(np.sum((y - X @ beta_hat) ** 2))
        _, logdet_xtx = np.linalg.slogdet(xtx)

        def cond(log_s):
            s2 = np.exp(2 * log_s)
            # log p(y | sigma) up to a constant: N(y; X beta_hat, s2) * (2 pi s2)^(k/2) / |X'X|^1/2
            ll = -(n - k) * log_s - rss / (2 * s2) - 0.5 * logdet_xtx
            means = np.broadcast_to(beta_hat, (len(log_s), k))
            covs = s2[:, None, None] * np.linalg.inv(xtx)[None]
            return ll, means, covs

    else:
        m0 = np.zeros(k) if prior_mean is None else np.asarray(prior_mean, float)
        chol = np.linalg.cholesky(prior_cov)
        Z = X @ chol  # beta = m0 + chol u, u ~ N(0, I)
        r = y - X @ m0
        lam, U = np.linalg.eigh(Z.T @ Z)
        lam = np.clip(lam, 0.0, None)
        zr = U.T @ (Z.T @ r)
        rr = float(r @ r)

        def cond(log_s):
            s2 = np.exp(2 * log_s)[:, None]
            d = lam[None] / s2 + 1.0  # posterior precision of U'u, diagonal
            mu_u = (zr[None] / s2) / d
            # log N(r; 0, s2 I + Z Z') by the matrix determinant lemma and Woodbury
            quad = rr / s2[:, 0] - np.sum(zr[None] ** 2 / s2**2 / d, axis=1)
            ll = -0.5 * (n * np.log(s2[:, 0]) + np.sum(np.log(d), axis=1) + quad)
            means = m0[None] + (mu_u @ U.T) @ chol.T
            covs = np.einsum("ij,gj,kj->gik", chol @ U, 1.0 / d, chol @ U)
            return ll, means, covs

    def log_post(log_s):
        ll = cond(log_s)[0]
        return ll + log_prior_sigma(np.exp(log_s)) + log_s  # d sigma = sigma d log sigma

    coarse = np.linspace(-40.0, 40.0, 16001)
    lp = log_post(coarse)
    keep = coarse[lp > lp.max() - 60.0]
    grid = np.linspace(keep.min() - 0.05, keep.max() + 0.05, num_points)
    ll, means, covs = cond(grid)
    logw = ll + log_prior_sigma(np.exp(grid)) + grid
    w = np.exp(logw - logw.max())
    w /= w.sum()
    sig = np.exp(grid)
    sigma_mean = float(w @ sig)
    sigma_sd = math.sqrt(max(float(w @ sig**2) - sigma_mean**2, 0.0))
    beta_mean = w @ means
    second = np.einsum("g,gij->ij", w, covs) + np.einsum("g,gi,gj->ij", w, means, means)
    beta_sd = np.sqrt(np.diag(second) - beta_mean**2)
    stats = _stats(beta_mean, beta_sd, _names("beta", k))
    stats.update(_stats(sigma_mean, sigma_sd, ["sigma"]))
    return stats


def gaussian_known_sigma(X, y, sigma: float, prior_sd: np.ndarray) -> Stats:
    """``y ~ N(X beta, sigma)`` (known ``sigma``), ``beta ~ N(0, diag(prior_sd^2))``."""
    prec = X.T @ X / sigma**2 + np.diag(1.0 / np.asarray(prior_sd) ** 2)
    cov = np.linalg.inv(prec)
    mean = cov @ (X.T @ y) / sigma**2
    return _stats(mean, np.sqrt(np.diag(cov)), _names("beta", X.shape[1]))


def nig_regression(X, y, v0: float, a0: float, b0: float) -> Stats:
    """Normal-inverse-gamma: ``sigma2 ~ InvGamma(a0, b0)``, ``beta | sigma2 ~
    N(0, sigma2 v0 I)``: ``beta`` is Student-t (``2 a_n`` degrees of freedom, scale
    ``b_n / a_n V_n``), ``sigma2`` inverse-gamma ``(a_n, b_n)``."""
    n, k = X.shape
    vn = np.linalg.inv(X.T @ X + np.eye(k) / v0)
    mn = vn @ X.T @ y
    an = a0 + n / 2
    bn = b0 + 0.5 * float(y @ y - mn @ np.linalg.solve(vn, mn))
    dof = 2 * an
    beta_sd = np.sqrt(np.diag(vn) * bn / an * dof / (dof - 2))
    s2_mean = bn / (an - 1)
    s2_sd = bn / ((an - 1) * math.sqrt(an - 2))
    stats = _stats(mn, beta_sd, _names("beta", k))
    stats.update(_stats(s2_mean, s2_sd, ["sigma2"]))
    return stats


def one_dim_quadrature(log_density: Callable[[np.ndarray], np.ndarray], lo, hi, n=200_001):
    """Mean and sd of a one-dimensional density on ``[lo, hi]`` (trapezoid rule)."""
    t = np.linspace(lo, hi, n)
    lp = log_density(t)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = float(w @ t)
    return mean, math.sqrt(float(w @ (t - mean) ** 2))


# ------------------------------------------------------------------ models
def _np():
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    return jnp, numpyro, dist, constraints


def linear_flat(x, y=None):
    """The public twin: flat priors on the coefficients and on the noise scale."""
    jnp, numpyro, dist, constraints = _np()
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (2,)))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(beta[0] + beta[1] * x[:, 0], sigma), obs=y)


def _linear_halfcauchy(scale: float):
    def model(x, y=None):
        jnp, numpyro, dist, constraints = _np()
        beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (2,)))
        sigma = numpyro.sample("sigma", dist.HalfCauchy(scale))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(beta[0] + beta[1] * x[:, 0], sigma), obs=y)

    model.__name__ = f"linear_halfcauchy_{scale:g}"
    return model


def _twin_data(scale: float = 1.0, n: int = 434, seed: int = 0):
    def data():
        rng = np.random.default_rng(seed)
        x = rng.normal(100, 15, size=(n, 1))
        y = 26 + 0.6 * x[:, 0] + rng.normal(0, 18, size=n)
        return x * scale, y * scale

    return data


def _flat_exact(data):
    return lambda: flat_prior_regression(*data())["stats"]


def _halfcauchy_exact(data, scale):
    def exact():
        x, y = data()
        X = np.column_stack([np.ones(len(x)), x])
        return sigma_quadrature(X, y, lambda s: -np.log1p((s / scale) ** 2))

    return exact


def years_regression(x, y=None):
    """A linear trend in calendar years: the covariate is far from 0, so the intercept
    and the slope are correlated at -0.9999."""
    jnp, numpyro, dist, constraints = _np()
    beta = numpyro.sample("beta", dist.Normal(0.0, jnp.array([100.0, 1.0])).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(beta[0] + beta[1] * x[:, 0], sigma), obs=y)


def _years_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    year = rng.uniform(1990, 2020, size=(60, 1))
    y = -40.0 + 0.02 * year[:, 0] + rng.normal(0, 0.3, size=60)
    return year, y


def _years_exact():
    x, y = _years_data()
    X = np.column_stack([np.ones(len(x)), x])
    return sigma_quadrature(X, y, lambda s: -0.5 * s**2, prior_cov=np.diag([100.0**2, 1.0**2]))


def nig(x, y=None):
    """Conjugate normal-inverse-gamma regression (``sigma2`` and ``beta | sigma2``)."""
    jnp, numpyro, dist, constraints = _np()
    sigma2 = numpyro.sample("sigma2", dist.InverseGamma(3.0, 2.0))
    beta = numpyro.sample(
        "beta", dist.Normal(0.0, jnp.sqrt(sigma2 * 10.0)).expand([x.shape[1]]).to_event(1)
    )
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ beta, jnp.sqrt(sigma2)), obs=y)


def _nig_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = np.column_stack([np.ones(40), rng.normal(size=(40, 2))])
    y = x @ np.array([1.0, -0.5, 2.0]) + rng.normal(0, 1.2, size=40)
    return x, y


def _gaussian_regression(prior_sd: np.ndarray | None = None, sigma: float = 1.0):
    def model(x, y=None):
        jnp, numpyro, dist, constraints = _np()
        sd = jnp.ones(x.shape[1]) if prior_sd is None else jnp.asarray(prior_sd)
        beta = numpyro.sample("beta", dist.Normal(0.0, sd).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(x @ beta, sigma), obs=y)

    return model


def _high_dim_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n, d = 200, 100
    z = rng.normal(size=(n, d))
    x = np.empty_like(z)  # AR(1) correlated columns, rho 0.5
    x[:, 0] = z[:, 0]
    for j in range(1, d):
        x[:, j] = 0.5 * x[:, j - 1] + math.sqrt(0.75) * z[:, j]
    beta = rng.normal(size=d) * (rng.uniform(size=d) < 0.2)
    return x, x @ beta + rng.normal(size=n)


SCALES = 10.0 ** np.arange(-3, 4)  # covariate scales 1e-3 ... 1e3


def _scales_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(100, len(SCALES))) * SCALES
    y = x @ (0.5 / SCALES) + rng.normal(size=100)
    return x, y


def logistic(x, y=None):
    """Logistic regression, weakly informative priors."""
    jnp, numpyro, dist, constraints = _np()
    a = numpyro.sample("alpha", dist.Normal(0.0, 2.5))
    b = numpyro.sample("beta", dist.Normal(0.0, 2.5).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=a + x @ b), obs=y)


def _logistic_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 4))
    logits = 0.3 + x @ np.array([1.0, -1.5, 0.5, 0.0])
    return x, (rng.uniform(size=200) < 1 / (1 + np.exp(-logits))).astype(np.float64)


def logistic_unstandardised(x, y=None):
    """Logistic regression on raw age (years) and income (dollars)."""
    jnp, numpyro, dist, constraints = _np()
    a = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    b = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=a + x @ b), obs=y)


def _logistic_unstd_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(6)
    age = rng.normal(45, 12, size=300)
    income = rng.lognormal(math.log(5e4), 0.4, size=300)
    logits = -4.0 + 0.05 * age + 2e-5 * income
    y = (rng.uniform(size=300) < 1 / (1 + np.exp(-logits))).astype(np.float64)
    return np.column_stack([age, income]), y


def _logistic_unstandardised_reference(x, y=None):
    """The same posterior as :func:`logistic_unstandardised`, sampled in standardised
    coordinates (a linear map, constant Jacobian): the long reference run's model."""
    jnp, numpyro, dist, constraints = _np()
    mean, scale = jnp.mean(x, 0), jnp.std(x, 0)
    a_s = numpyro.sample("a_s", dist.ImproperUniform(constraints.real, (), ()))
    b_s = numpyro.sample("b_s", dist.ImproperUniform(constraints.real, (), (2,)))
    beta = numpyro.deterministic("beta", b_s / scale)
    alpha = numpyro.deterministic("alpha", a_s - jnp.sum(beta * mean))
    prior = dist.Normal(0.0, 10.0).log_prob(alpha) + dist.Normal(0.0, 1.0).log_prob(beta).sum()
    numpyro.factor("prior", prior)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=a_s + ((x - mean) / scale) @ b_s), obs=y)


def poisson(x, y=None):
    """Poisson regression with a log link and an exposure offset (``x[:, 0]``)."""
    jnp, numpyro, dist, constraints = _np()
    a = numpyro.sample("alpha", dist.Normal(0.0, 5.0))
    b = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([x.shape[1] - 1]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        rate = jnp.exp(jnp.log(x[:, 0]) + a + x[:, 1:] @ b)
        numpyro.sample("y", dist.Poisson(rate), obs=y)


def _poisson_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    exposure = rng.uniform(0.5, 5.0, size=150)
    z = rng.normal(size=(150, 3))
    rate = exposure * np.exp(0.5 + z @ np.array([0.4, -0.3, 0.1]))
    return np.column_stack([exposure, z]), rng.poisson(rate).astype(np.float64)


EIGHT_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def _eight_data() -> tuple[np.ndarray, np.ndarray]:
    return np.stack([np.arange(8.0), EIGHT_SIGMA], axis=1), EIGHT_Y.copy()


def eight_schools_noncentred(x, y=None):
    """Eight schools (Rubin 1981), non-centred: ``theta = mu + tau * theta_tilde``."""
    jnp, numpyro, dist, constraints = _np()
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", 8):
        tt = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
    theta = numpyro.deterministic("theta", mu + tau * tt)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(theta[x[:, 0].astype(jnp.int32)], x[:, 1]), obs=y)


def eight_schools_centred(x, y=None):
    """Eight schools, centred: ``theta ~ N(mu, tau)`` (a funnel in ``tau``)."""
    jnp, numpyro, dist, constraints = _np()
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", 8):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(theta[x[:, 0].astype(jnp.int32)], x[:, 1]), obs=y)


def hierarchical_centred(x, y=None):
    """Varying intercepts, centred, with much data per group (where centring is right)."""
    jnp, numpyro, dist, constraints = _np()
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("group", 6):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(theta[x[:, 0].astype(jnp.int32)], sigma), obs=y)


def _hier_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(6), 30)
    theta = rng.normal(1.0, 1.5, size=6)
    return g[:, None].astype(np.float64), theta[g] + rng.normal(0, 1.0, size=len(g))


def student_t(x, y=None):
    """Robust regression: a Student-t likelihood with unknown degrees of freedom."""
    jnp, numpyro, dist, constraints = _np()
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    nu = numpyro.sample("nu", dist.Gamma(2.0, 0.1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.StudentT(nu, beta[0] + beta[1] * x[:, 0], sigma), obs=y)


def _student_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(100, 1))
    return x, 1.0 + 2.0 * x[:, 0] + rng.standard_t(3, size=100) * 0.8


def mixture_ordered(x, y=None):
    """Two Gaussian components with ordered means (no label switching)."""
    jnp, numpyro, dist, constraints = _np()
    from numpyro.distributions.transforms import OrderedTransform

    mu = numpyro.sample(
        "mu", dist.TransformedDistribution(dist.Normal(0.0, 5.0).expand([2]), OrderedTransform())
    )
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
    w = numpyro.sample("w", dist.Beta(2.0, 2.0))
    mix = dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.stack([w, 1.0 - w])), dist.Normal(mu, sigma)
    )
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", mix, obs=y)


def _mixture_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(10)
    first = rng.uniform(size=200) < 0.35
    y = np.where(first, rng.normal(-1.5, 0.7, size=200), rng.normal(2.0, 1.0, size=200))
    return np.zeros((200, 1)), y


BNN_HIDDEN = 33  # 1 -> 33 -> 1: 100 weights and biases, and the noise scale
BNN_PROBES = np.array([-2.0, -0.5, 0.5, 2.0])


def bnn(x, y=None):
    """A one-hidden-layer tanh network (101 parameters) on 40 rows; compared in function
    space (the network at four probe inputs) and on the noise scale."""
    jnp, numpyro, dist, constraints = _np()
    h = BNN_HIDDEN
    w1 = numpyro.sample("w1", dist.Normal(0.0, 1.0).expand([1, h]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([h]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, 1.0 / math.sqrt(h)).expand([h]).to_event(1))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))

    def f(inputs):
        return jnp.tanh(inputs @ w1 + b1) @ w2 + b2

    numpyro.deterministic("f_probe", f(jnp.asarray(BNN_PROBES)[:, None]))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(f(x), sigma), obs=y)


def _bnn_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.uniform(-2.5, 2.5, size=(40, 1))
    return x, np.sin(1.5 * x[:, 0]) + rng.normal(0, 0.2, size=40)


FUNNEL_DIM = 9


def funnel_centred(x, y=None):
    """Neal's funnel, centred: ``v ~ N(0, 3)``, ``x_i ~ N(0, exp(v / 2))``."""
    jnp, numpyro, dist, constraints = _np()
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([FUNNEL_DIM]).to_event(1))
    with numpyro.plate("data", x.shape[0]):  # an observation independent of both
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


def funnel_noncentred(x, y=None):
    """Neal's funnel, non-centred: ``x = z exp(v / 2)``, ``z ~ N(0, 1)``."""
    jnp, numpyro, dist, constraints = _np()
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([FUNNEL_DIM]).to_event(1))
    numpyro.deterministic("x", z * jnp.exp(v / 2))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


def _no_data() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((1, 1)), np.zeros(1)


def _funnel_exact(latent: str):
    def exact():
        stats = _stats(0.0, 3.0, ["v"])
        sd = 1.0 if latent == "z" else math.exp(9.0 / 4.0)  # E[exp(v)] = exp(9 / 2)
        stats.update(_stats(np.zeros(FUNNEL_DIM), np.full(FUNNEL_DIM, sd), _names(latent, 9)))
        return stats

    return exact


BIMODAL_Y = np.array([16.0, 9.0, 25.0])  # y_j ~ N(theta_j^2, 1): modes at +-4, +-3, +-5


def bimodal(x, y=None):
    """Three independent bimodal coordinates: ``theta_j ~ N(0, 10)``, ``y_j ~
    N(theta_j^2, 1)``; chains stay in the mode they find."""
    jnp, numpyro, dist, constraints = _np()
    with numpyro.plate("coordinate", len(BIMODAL_Y)):
        theta = numpyro.sample("theta", dist.Normal(0.0, 10.0))
    with numpyro.plate("data", x.shape[0]):  # row j observes coordinate x[j, 0]
        numpyro.sample("y", dist.Normal(theta[x[:, 0].astype(jnp.int32)] ** 2, 1.0), obs=y)


def _bimodal_exact():
    stats: Stats = {}
    for j, yj in enumerate(BIMODAL_Y):
        _, sd = one_dim_quadrature(
            lambda t, yj=yj: -0.5 * (t / 10.0) ** 2 - 0.5 * (yj - t**2) ** 2, -12.0, 12.0
        )
        stats.update(_stats(0.0, sd, [f"theta[{j}]"]))  # symmetric: mean 0
    return stats


def _models() -> list[ZooModel]:
    twin = _twin_data()
    small, large = _twin_data(1e-2), _twin_data(1e2)
    twin_50 = _twin_data(1.0, n=50, seed=1)
    large3 = _twin_data(1e3, n=100, seed=2)
    ms = [
        ZooModel(
            "linear_flat_twin",
            linear_flat,
            twin,
            ("beta", "sigma"),
            "closed form",
            "the public twin: un-standardised covariate (mean 100, sd 15), flat priors on "
            "the coefficients and the noise scale",
            exact=_flat_exact(twin),
        ),
        ZooModel(
            "linear_flat_1e-2",
            linear_flat,
            small,
            ("beta", "sigma"),
            "closed form",
            "the twin with x and y in units 100 times larger (noise sd 0.18)",
            exact=_flat_exact(small),
        ),
        ZooModel(
            "linear_flat_1e2",
            linear_flat,
            large,
            ("beta", "sigma"),
            "closed form",
            "the twin with x and y 100 times larger (noise sd 1800, intercept 2600)",
            exact=_flat_exact(large),
        ),
        ZooModel(
            "linear_flat_n50",
            linear_flat,
            twin_50,
            ("beta", "sigma"),
            "closed form",
            "the twin with 50 rows: heavier Student-t tails, wider posterior",
            exact=_flat_exact(twin_50),
        ),
        ZooModel(
            "linear_halfcauchy_twin",
            _linear_halfcauchy(5.0),
            twin,
            ("beta", "sigma"),
            "quadrature",
            "the twin with a half-Cauchy(5) prior on the noise scale",
            exact=_halfcauchy_exact(twin, 5.0),
        ),
        ZooModel(
            "linear_halfcauchy_1e-2",
            _linear_halfcauchy(1.0),
            small,
            ("beta", "sigma"),
            "quadrature",
            "half-Cauchy(1) prior, noise sd 0.18: prior scale far above the data's",
            exact=_halfcauchy_exact(small, 1.0),
        ),
        ZooModel(
            "linear_halfcauchy_1e3",
            _linear_halfcauchy(1.0),
            large3,
            ("beta", "sigma"),
            "quadrature",
            "half-Cauchy(1) prior, noise sd 18000: the data 1e4 times the prior scale",
            exact=_halfcauchy_exact(large3, 1.0),
        ),
        ZooModel(
            "years_trend",
            years_regression,
            _years_data,
            ("beta", "sigma"),
            "quadrature",
            "a covariate of calendar years near 2000, not centred: intercept and slope "
            "correlated at -0.9999",
            exact=_years_exact,
        ),
        ZooModel(
            "nig_conjugate",
            nig,
            _nig_data,
            ("beta", "sigma2"),
            "closed form",
            "conjugate normal-inverse-gamma regression",
            exact=lambda: nig_regression(*_nig_data(), 10.0, 3.0, 2.0),
        ),
        ZooModel(
            "gaussian_100d",
            _gaussian_regression(),
            _high_dim_data,
            ("beta",),
            "closed form",
            "100 coefficients, correlated (AR 0.5) design, known noise: a 100-dimensional "
            "correlated Gaussian",
            exact=lambda: gaussian_known_sigma(*_high_dim_data(), 1.0, np.ones(100)),
        ),
        ZooModel(
            "scales_1e-3_1e3",
            _gaussian_regression(100.0 / SCALES),
            _scales_data,
            ("beta",),
            "closed form",
            "covariates on scales 1e-3 ... 1e3 in one model: posterior sds from 1e-4 to 1e2",
            exact=lambda: gaussian_known_sigma(*_scales_data(), 1.0, 100.0 / SCALES),
        ),
        ZooModel(
            "logistic",
            logistic,
            _logistic_data,
            ("alpha", "beta"),
            "numpyro-nuts",
            "logistic regression, standardised covariates",
        ),
        ZooModel(
            "logistic_unstandardised",
            logistic_unstandardised,
            _logistic_unstd_data,
            ("alpha", "beta"),
            "numpyro-nuts",
            "logistic regression on raw age and income: coefficient scales 1e-1 to 1e-6, "
            "strongly correlated with the intercept",
            reference_model=_logistic_unstandardised_reference,
        ),
        ZooModel(
            "poisson",
            poisson,
            _poisson_data,
            ("alpha", "beta"),
            "numpyro-nuts",
            "Poisson regression with an exposure offset",
        ),
        ZooModel(
            "eight_schools_noncentred",
            eight_schools_noncentred,
            _eight_data,
            ("mu", "tau", "theta"),
            "numpyro-nuts",
            "eight schools, non-centred: a hierarchical model with little data",
            reference_options={"target_accept_prob": 0.95},
        ),
        ZooModel(
            "eight_schools_centred",
            eight_schools_centred,
            _eight_data,
            ("mu", "tau", "theta"),
            "numpyro-nuts",
            "eight schools, centred: the funnel between tau and theta; divergences",
            expected="must-warn",
            reference_of="eight_schools_noncentred",
        ),
        ZooModel(
            "hierarchical_centred",
            hierarchical_centred,
            _hier_data,
            ("mu", "tau", "sigma", "theta"),
            "numpyro-nuts",
            "varying intercepts, centred, 30 rows per group",
        ),
        ZooModel(
            "student_t",
            student_t,
            _student_data,
            ("beta", "sigma", "nu"),
            "numpyro-nuts",
            "a Student-t likelihood with unknown degrees of freedom (skewed posterior of nu)",
        ),
        ZooModel(
            "mixture_ordered",
            mixture_ordered,
            _mixture_data,
            ("mu", "sigma", "w"),
            "numpyro-nuts",
            "a two-component Gaussian mixture with ordered means",
        ),
        ZooModel(
            "bnn_101d",
            bnn,
            _bnn_data,
            ("f_probe", "sigma"),
            "numpyro-nuts",
            "a 1-33-1 tanh network, 101 parameters, 40 rows: compared in function space",
            reference_options={"num_samples": 2500},
        ),
        ZooModel(
            "funnel_noncentred",
            funnel_noncentred,
            _no_data,
            ("v", "z"),
            "closed form",
            "Neal's funnel, non-centred: a 10-dimensional standard Gaussian in disguise",
            exact=_funnel_exact("z"),
        ),
        ZooModel(
            "funnel_centred",
            funnel_centred,
            _no_data,
            ("v", "x"),
            "closed form",
            "Neal's funnel, centred: step sizes from exp(-7) to exp(7) needed at once",
            expected="must-warn",
            exact=_funnel_exact("x"),
        ),
        ZooModel(
            "bimodal",
            bimodal,
            lambda: (np.arange(3.0)[:, None], BIMODAL_Y.copy()),  # row j observes theta_j
            ("theta",),
            "quadrature",
            "three independent bimodal coordinates, modes at +-3, +-4, +-5 behind barriers "
            "of 40 to 300 nats: chains cannot cross, R-hat must flag it",
            expected="must-warn",
            exact=_bimodal_exact,
        ),
    ]
    return ms


MODELS: dict[str, ZooModel] = {m.name: m for m in _models()}


def get(name: str) -> ZooModel:
    """The zoo model ``name``."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; the zoo has {', '.join(MODELS)}")
    return MODELS[name]


# ------------------------------------------------------------------ references
@cache
def load_references(path: str | None = None) -> dict[str, Any]:
    """The stored references (``zoo_references.json``): model -> its record."""
    p = Path(path) if path else REFERENCES_PATH
    return json.loads(p.read_text()) if p.exists() else {}


def reference(m: ZooModel, *, stored: bool = False) -> Stats:
    """``m``'s reference: quantity -> ``{mean, sd, mcse_mean, mcse_sd}`` (exact ones:
    computed here, MCSE 0; with ``stored`` the JSON record even for those)."""
    if m.exact is not None and not stored:
        return m.exact()
    refs = load_references()
    key = m.reference_of or m.name
    if key not in refs:
        raise KeyError(f"no stored reference for {key!r}: run benchmarks/zoo_references.py")
    return refs[key]["quantities"]


def flatten(samples: Mapping[str, Any], sites: Sequence[str]) -> dict[str, np.ndarray]:
    """``site[i]`` -> ``(chain, draw)`` for every scalar component of ``sites``."""
    out = {}
    for site in sites:
        v = np.asarray(samples[site], dtype=np.float64)
        if v.ndim == 2:
            out[site] = v
            continue
        flat = v.reshape(v.shape[0], v.shape[1], -1)
        for i, idx in enumerate(np.ndindex(*v.shape[2:])):
            out[f"{site}[{','.join(map(str, idx))}]"] = flat[:, :, i]
    return out


def summarize(draws: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean, sd, their MCSE, bulk ESS and rank R-hat of each ``(chain, draw)`` array."""
    import arviz_stats as azs

    out = {}
    for name, a in draws.items():
        a = np.asarray(a, dtype=np.float64)
        out[name] = {
            "mean": float(a.mean()),
            "sd": float(a.std(ddof=1)),
            "mcse_mean": float(azs.mcse(a)),
            "mcse_sd": float(azs.mcse(a, method="sd")),
            "ess_bulk": float(azs.ess(a)),
            "rhat": float(azs.rhat(a)),
        }
    return out


def evaluate(samples: Mapping[str, Any], m: ZooModel, ref: Stats | None = None) -> dict:
    """Compare draws (site -> ``(chain, draw, ...)``) with ``m``'s reference.

    Returns ``{"pass", "failures", "max_rhat", "min_ess_bulk", "worst_z", "sd_ratio"}``:
    ``failures`` lists ``"<check> <quantity>"`` for each failed check (``mean``: more than
    :data:`MCSE_FACTOR` combined MCSE off; ``sd``: ratio outside :data:`SD_RATIO`;
    ``rhat``: not below :data:`RHAT_MAX`; ``ess``: bulk ESS below :data:`ESS_MIN`).
    """
    ref = reference(m) if ref is None else ref
    got = summarize(flatten(samples, m.sites))
    missing = sorted(set(ref) - set(got))
    if missing:
        raise KeyError(f"{m.name}: the draws lack {missing[:3]}")
    failures = []
    worst_z, ratios = 0.0, []
    for q, r in ref.items():
        g = got[q]
        err = math.sqrt(g["mcse_mean"] ** 2 + r["mcse_mean"] ** 2)
        z = abs(g["mean"] - r["mean"]) / err if err > 0 else math.inf
        if not np.isfinite(g["mean"]):
            z = math.inf
        worst_z = max(worst_z, z)
        ratio = g["sd"] / r["sd"]
        ratios.append(ratio)
        if not z <= MCSE_FACTOR:
            failures.append(f"mean {q}")
        if not SD_RATIO[0] <= ratio <= SD_RATIO[1]:
            failures.append(f"sd {q}")
        if not g["rhat"] < RHAT_MAX:
            failures.append(f"rhat {q}")
        if not g["ess_bulk"] >= ESS_MIN:
            failures.append(f"ess {q}")
    rhats = [got[q]["rhat"] for q in ref]
    ess = [got[q]["ess_bulk"] for q in ref]
    return {
        "pass": not failures,
        "failures": failures,
        "max_rhat": float(np.nanmax(rhats)) if np.isfinite(rhats).any() else math.inf,
        "min_ess_bulk": float(np.nanmin(ess)) if np.isfinite(ess).any() else 0.0,
        "worst_z": worst_z,
        "sd_ratio": [float(min(ratios)), float(max(ratios))],
    }


def run_numpyro_nuts(
    m: ZooModel,
    seed: int,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    chain_method: str = "vectorized",
    **nuts_options,
) -> dict[str, Any]:
    """NumPyro's own NUTS on ``m`` (its defaults unless ``nuts_options``).

    Returns ``{"samples", "sample_stats", "grads_warmup", "grads"}``: samples
    ``(chain, draw, ...)``, the sampling draws' statistics (``diverging``,
    ``acceptance_rate``, ``energy``, ``n_steps``, ``tree_depth``) and the leapfrog steps
    of warmup and of sampling, summed over chains.
    """
    import jax
    from numpyro.infer import MCMC, NUTS

    x, y = m.data()
    model = nuts_options.pop("model", m.model)
    mcmc = MCMC(
        NUTS(model, **nuts_options),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    key = jax.random.PRNGKey(seed)
    grads_warmup = 0
    if num_warmup:
        mcmc.warmup(key, x, y, collect_warmup=True, extra_fields=("num_steps",))
        grads_warmup = int(np.sum(np.asarray(mcmc.get_extra_fields()["num_steps"])))
        key = mcmc.post_warmup_state.rng_key
    fields = ("num_steps", "diverging", "accept_prob", "energy")
    mcmc.run(key, x, y, extra_fields=fields)
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    steps = extra["num_steps"]
    stats = {
        "diverging": extra["diverging"],
        "acceptance_rate": extra["accept_prob"],
        "energy": extra["energy"],
        "n_steps": steps,
        "tree_depth": np.floor(np.log2(np.maximum(steps, 1))).astype(np.int64) + 1,
    }
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    return {
        "samples": samples,
        "sample_stats": stats,
        "grads_warmup": grads_warmup,
        "grads": int(np.sum(steps)),
    }


# ------------------------------------------------------------------ one benchmark run
def _grads(stats: Mapping[str, np.ndarray]) -> int | None:
    for k in ("n_steps", "num_integration_steps", "num_steps"):
        if k in stats and np.size(stats[k]):
            return int(np.sum(np.asarray(stats[k])))
    return None


def _run_warning_category():
    try:
        from ppl_bnn.diagnostics import checks
    except ImportError:
        return None
    return getattr(checks, "RunWarning", None)


def _diagnose_draws(samples, stats, sites) -> list[str] | None:
    """ppl_bnn's run-end checks on draws from elsewhere (NumPyro), where available."""
    try:
        from ppl_bnn.diagnostics import checks
    except ImportError:
        return None
    fn = getattr(checks, "diagnose", None)
    if fn is None:
        return None
    found = fn(stats, flatten(samples, sites), max_num_doublings=10)
    return [str(d) for d in found]


def run(
    m: ZooModel,
    method: str,
    seed: int,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    ref: Stats | None = None,
    **options,
) -> dict[str, Any]:
    """Run ``method`` (``"numpyro-nuts"``, or any ``ppl_bnn.infer`` method) on ``m`` with
    ``seed``; the JSON record of :func:`evaluate` plus gradients, wall time and warnings.

    ``warned``: the run emitted a run warning (a ``RunWarning``, any warning raised from
    ppl_bnn) or its ``diagnose()`` found something; for NumPyro's NUTS, ppl_bnn's checks
    run on its draws.
    """
    import time
    import warnings

    ref = reference(m) if ref is None else ref
    category = _run_warning_category()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if method == "numpyro-nuts":
            out = run_numpyro_nuts(
                m,
                seed,
                num_warmup=num_warmup,
                num_samples=num_samples,
                num_chains=num_chains,
                **options,
            )
            samples, stats = out["samples"], out["sample_stats"]
            grads_warmup, grads = out["grads_warmup"], out["grads"]
            diagnosed = _diagnose_draws(samples, stats, m.sites)
        else:
            import ppl_bnn

            x, y = m.data()
            result = ppl_bnn.infer(
                m.model,
                x,
                y,
                method=method,
                num_warmup=num_warmup,
                num_samples=num_samples,
                num_chains=num_chains,
                seed=seed,
                **options,
            )
            samples, stats = result.samples or {}, result.sample_stats or {}
            grads = _grads(stats)
            grads_warmup = result.summary.get("num_grad_evals_warmup")
            diagnose = getattr(result, "diagnose", None)
            diagnosed = [str(d) for d in diagnose()] if callable(diagnose) else None
    wall = time.perf_counter() - t0

    def ours(w) -> bool:
        if category is not None and issubclass(w.category, category):
            return True
        return "ppl_bnn" in str(w.filename) or "/diagnostics/" in str(w.filename)

    messages = [str(w.message).splitlines()[0][:200] for w in caught if ours(w)]
    record: dict[str, Any] = {
        "model": m.name,
        "method": method,
        "seed": seed,
        "expected": m.expected,
        **evaluate(samples, m, ref),
        "grads": grads,
        "grads_warmup": grads_warmup,
        "divergent": int(np.sum(stats["diverging"])) if "diverging" in stats else None,
        "wall_s": round(wall, 2),
        "warned": bool(messages) or bool(diagnosed),
        "warnings": messages[:8],
        "diagnosed": diagnosed[:8] if diagnosed else diagnosed,
        "num_chains": num_chains,
        "num_warmup": num_warmup,
        "num_samples": num_samples,
    }
    return record


def pass_table(records: Sequence[Mapping[str, Any]], methods: Sequence[str] | None = None):
    """The markdown pass-rate table of benchmark records: per model and method,
    ``passes/seeds``, and for the failing seeds how many warned (``warned k/f``)."""
    methods = list(methods or dict.fromkeys(r["method"] for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    cell: dict[tuple[str, str], list] = {}
    for r in records:
        cell.setdefault((r["model"], r["method"]), []).append(r)
    lines = [
        "| model | expected | " + " | ".join(methods) + " |",
        "| --- | --- | " + " | ".join("---" for _ in methods) + " |",
    ]
    totals = {k: [0, 0] for k in methods}
    silent = {k: 0 for k in methods}
    for model in models:
        expected = next(r["expected"] for r in records if r["model"] == model)
        row = []
        for k in methods:
            rs = cell.get((model, k), [])
            if not rs:
                row.append("")
                continue
            passed = sum(r["pass"] for r in rs)
            failed = [r for r in rs if not r["pass"]]
            text = f"{passed}/{len(rs)}"
            if failed:
                warned = sum(r["warned"] for r in failed)
                text += f", warned {warned}/{len(failed)}"
                silent[k] += len(failed) - warned
            row.append(text)
            totals[k][0] += passed
            totals[k][1] += len(rs)
        lines.append(f"| {model} | {expected} | " + " | ".join(row) + " |")
    lines.append(
        "| all | | "
        + " | ".join(f"{p}/{n}, {silent[k]} silent" for k, (p, n) in totals.items())
        + " |"
    )
    return "\n".join(lines)
