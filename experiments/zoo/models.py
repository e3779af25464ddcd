"""The zoo's NumPyro models, their data (fixed NumPy seeds) and their exact references."""

from __future__ import annotations

import math

import numpy as np

from .exact import (
    Stats,
    _names,
    _stats,
    flat_prior_regression,
    one_dim_quadrature,
    sigma_quadrature,
)


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
