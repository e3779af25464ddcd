"""Prior families against their closed-form log densities, computed by hand (``math``).

Every family is parametrised by its variance ``v = 1 / weight_decay`` (Student-t: by its
scale ``1 / sqrt(weight_decay)``); the expected values below are written from the textbook
densities, not from NumPyro.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from ppl_bnn.config import CommonConfig
from ppl_bnn.declare import priors
from ppl_bnn.declare.bnn import bnn_model
from ppl_bnn.declare.likelihoods import Categorical
from ppl_bnn.declare.problem import build_prior
from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import make_mesh
from ppl_bnn.models import MLP

pytestmark = pytest.mark.filterwarnings("error")  # a strict harness: warnings fail

POINTS = [-12.0, -3.1, -0.7, 0.0, 0.25, 1.9, 7.5]
WEIGHT_DECAYS = [0.5, 1.0, 15.0, 40.0]


# ---------------------------------------------------------------- hand formulas
def gaussian_logpdf(x: float, v: float) -> float:
    return -0.5 * x * x / v - 0.5 * math.log(2 * math.pi * v)


def mixture_logpdf(x: float, v: float, w: float, r: float) -> float:
    # w * s^2 + (1 - w) * (r s)^2 = v
    s2 = v / (w + (1 - w) * r * r)
    a = math.log(w) + gaussian_logpdf(x, s2)
    b = math.log(1 - w) + gaussian_logpdf(x, r * r * s2)
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))  # explicit logsumexp


def logistic_logpdf(x: float, v: float) -> float:
    s = math.sqrt(3 * v) / math.pi  # variance of Logistic(0, s) is s^2 pi^2 / 3
    z = -abs(x) / s  # symmetric density: use -|x| for a stable log(1 + e^z)
    return z - 2 * math.log1p(math.exp(z)) - math.log(s)


def laplace_logpdf(x: float, v: float) -> float:
    b = math.sqrt(v / 2)  # variance of Laplace(0, b) is 2 b^2
    return -abs(x) / b - math.log(2 * b)


def student_t_logpdf(x: float, v: float, df: float) -> float:
    scale2 = v  # scale = sqrt(1 / weight_decay)
    return (
        math.lgamma((df + 1) / 2)
        - math.lgamma(df / 2)
        - 0.5 * math.log(df * math.pi * scale2)
        - (df + 1) / 2 * math.log1p(x * x / (df * scale2))
    )


# family name -> (builder kwargs, hand formula of (x, variance))
FAMILIES = {
    "gaussian": ({}, gaussian_logpdf),
    "mixture_gaussian": ({}, lambda x, v: mixture_logpdf(x, v, 0.5, 4.0)),
    "mixture_gaussian_w0.8_r10": (
        {"weight": 0.8, "scale_ratio": 10.0},
        lambda x, v: mixture_logpdf(x, v, 0.8, 10.0),
    ),
    "logistic": ({}, logistic_logpdf),
    "laplace": ({}, laplace_logpdf),
    "student_t": ({}, lambda x, v: student_t_logpdf(x, v, 1.0)),
    "student_t_df3.5": ({"df": 3.5}, lambda x, v: student_t_logpdf(x, v, 3.5)),
}


def family_of(key: str) -> str:
    return key.split("_w")[0].split("_df")[0]


def rtol_for(dtype_name: str) -> float:
    # float64: formula-exact; float32: a few units in the last place.
    return 1e-12 if dtype_name == "float64" else 4e-6


@pytest.mark.parametrize("key", list(FAMILIES))
def test_family_log_density_matches_formula(key, dtype_name):
    kwargs, formula = FAMILIES[key]
    x = jnp.asarray(POINTS)
    for wd in WEIGHT_DECAYS:
        prior = priors.PRIOR_FAMILIES[family_of(key)](wd, **kwargs)
        d = prior("Dense_0.kernel", (len(POINTS),))
        got = np.asarray(d.log_prob(x), np.float64)
        want = np.array([formula(p, 1.0 / wd) for p in POINTS])
        np.testing.assert_allclose(
            got, want, rtol=rtol_for(dtype_name), atol=0, err_msg=f"weight_decay={wd}"
        )


@pytest.mark.parametrize("key", ["gaussian", "mixture_gaussian", "logistic", "laplace"])
def test_families_have_variance_one_over_weight_decay(key, x64):
    """Equal variance across families, so priors can be swapped at equal scale (paper Sec. 8)."""
    kwargs, _ = FAMILIES[key]
    d = priors.PRIOR_FAMILIES[key](4.0, **kwargs)("w", (3,))
    assert float(jnp.mean(d.variance)) == pytest.approx(0.25, rel=1e-12)


def test_student_t_scale_is_one_over_sqrt_weight_decay(x64):
    d = priors.student_t(16.0, df=2.5)("w", (1,))
    assert isinstance(d, dist.StudentT)
    assert float(d.scale) == pytest.approx(0.25, rel=1e-12)
    assert float(d.df) == 2.5


def test_mixture_components_and_weights(x64):
    """Weights (w, 1-w), stds s and r*s with w s^2 + (1-w) r^2 s^2 = 1/wd."""
    d = priors.mixture_gaussian(2.0, weight=0.3, scale_ratio=5.0)("w", ())
    s = math.sqrt(0.5 / (0.3 + 0.7 * 25))
    np.testing.assert_allclose(np.asarray(d.weights), [0.3, 0.7], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(d.scales), [s, 5 * s], rtol=1e-12)


def test_mixture_sample_has_the_prior_variance(x64):
    """Draws from the mixture: the sample variance lies within 5 standard errors of 1/wd."""
    d = priors.mixture_gaussian(2.0, weight=0.3, scale_ratio=5.0)("w", ())
    n = 200_000
    x = np.asarray(d.sample(jax.random.key(0), (n,)))
    # standard error of the sample second moment: sqrt((E x^4 - v^2) / n)
    s2 = 0.5 / (0.3 + 0.7 * 25)
    m4 = 3 * (0.3 * s2**2 + 0.7 * (25 * s2) ** 2)
    se = math.sqrt((m4 - 0.25) / n)
    assert abs(np.mean(x**2) - 0.5) < 5 * se


# -------------------------------------------------------------- per parameter
def test_overrides_by_glob_first_match_wins(x64):
    laplace10, student = priors.laplace(10.0), priors.student_t(1.0, df=2.0)
    fixed = dist.Normal(0.0, 3.0)
    prior = priors.per_parameter(
        priors.gaussian(1.0),
        overrides={
            "*.bias": laplace10,
            "Dense_1.*": student,
            "Dense_2.kernel": fixed,
            "Conv_*": lambda path, shape: dist.Normal(1.0, 2.0).expand(shape),
        },
    )
    assert isinstance(prior("Dense_0.kernel", (4, 3)), dist.Normal)
    assert float(prior("Dense_0.kernel", (4, 3)).scale) == pytest.approx(1.0)
    b = prior("Dense_0.bias", (3,))
    assert isinstance(b, dist.Laplace) and float(b.scale) == pytest.approx(math.sqrt(1 / 20))
    # "Dense_1.bias" matches "*.bias" first
    assert isinstance(prior("Dense_1.bias", (3,)), dist.Laplace)
    assert isinstance(prior("Dense_1.kernel", (3, 2)), dist.StudentT)
    assert prior("Dense_2.kernel", (3, 2)) is fixed
    c = prior("Conv_0.kernel", (3, 3, 1, 4))
    assert c.batch_shape == (3, 3, 1, 4) and float(jnp.mean(c.mean)) == 1.0


def test_fan_in():
    assert priors.fan_in((64, 100)) == 64  # Dense (in, out)
    assert priors.fan_in((3, 3, 16, 32)) == 144  # Conv (h, w, in, out)
    assert priors.fan_in((100,)) == 1  # bias
    assert priors.fan_in(()) == 1


@pytest.mark.parametrize("key", list(FAMILIES))
def test_fan_in_scaling_divides_kernel_variance_only(key, x64):
    kwargs, formula = FAMILIES[key]
    family = priors.PRIOR_FAMILIES[family_of(key)](2.0, **kwargs)
    prior = priors.per_parameter(family, fan_in_scaling=True)
    x = jnp.asarray(POINTS)
    for path, shape, fan in [
        ("Dense_0.kernel", (64, 100), 64),
        ("Conv_0.kernel", (3, 3, 16, 32), 144),
        ("Dense_0.bias", (100,), 1),
    ]:
        d = prior(path, shape)
        want = [formula(p, 0.5 / fan) for p in POINTS]
        np.testing.assert_allclose(np.asarray(d.log_prob(x)), want, rtol=1e-12)


def test_fan_in_scaling_off_by_default(x64):
    d = priors.per_parameter(priors.gaussian(2.0))("Dense_0.kernel", (64, 100))
    assert float(d.scale) == pytest.approx(math.sqrt(0.5))


def test_make_prior_and_cli_prior(x64):
    p = priors.make_prior("laplace", 4.0, fan_in_scaling=True)
    assert float(p("Dense_0.kernel", (8, 2)).scale) == pytest.approx(math.sqrt(1 / (4 * 8) / 2))
    cfg = CommonConfig(
        dir="x",
        prior_family="student_t",
        weight_decay=4.0,
        student_t_df=3.0,
        bias_weight_decay=100.0,
    )
    p = build_prior(cfg)
    k, b = p("Dense_0.kernel", (8, 2)), p("Dense_0.bias", (2,))
    assert isinstance(k, dist.StudentT) and float(k.df) == 3.0
    assert float(k.scale) == pytest.approx(0.5) and float(b.scale) == pytest.approx(0.1)
    cfg = CommonConfig(
        dir="x",
        prior_family="mixture_gaussian",
        weight_decay=1.0,
        mixture_weight=0.2,
        mixture_scale_ratio=3.0,
    )
    d = build_prior(cfg)("Dense_0.kernel", (2, 2))
    np.testing.assert_allclose(np.asarray(d.weights), [0.2, 0.8])


@pytest.mark.parametrize("bad", ["cauchy", "Gaussian", ""])
def test_unknown_family_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match=f"unknown prior family {bad!r}"):
        priors.make_prior(bad)
    with pytest.raises(ValueError, match=f"unknown prior family {bad!r}"):
        build_prior(CommonConfig(dir="x", prior_family=bad))


@pytest.mark.parametrize(
    "build",
    [
        lambda: priors.gaussian(0.0),
        lambda: priors.laplace(-1.0),
        lambda: priors.student_t(1.0, df=0.0),
        lambda: priors.mixture_gaussian(1.0, weight=1.0),
        lambda: priors.mixture_gaussian(1.0, scale_ratio=0.0),
    ],
)
def test_invalid_parameters_are_value_errors(build):
    with pytest.raises(ValueError):
        build()


# ------------------------------------------------------- the prior inside a BNN
def _net_params(ld: LogDensity, position: dict) -> dict[str, np.ndarray]:
    """``{"Dense_0.kernel": array, ...}`` from a position of a ``bnn_model``."""
    assert all(n.startswith("net/") for n in ld.latent_sites)
    return {n[len("net/") :]: np.asarray(v, np.float64) for n, v in position.items()}


@pytest.mark.parametrize(
    ("key", "fan_in_scaling", "temperature"),
    [(k, True, 0.3) for k in FAMILIES] + [("gaussian", False, 1.0), ("laplace", False, 2.0)],
)
def test_log_prior_of_a_bnn_is_the_formula_summed_over_parameters(
    key, fan_in_scaling, temperature, x64
):
    kwargs, formula = FAMILIES[key]
    wd = 3.0
    prior = priors.per_parameter(
        priors.PRIOR_FAMILIES[family_of(key)](wd, **kwargs), fan_in_scaling=fan_in_scaling
    )
    net = MLP(hidden=(5,), num_outputs=3)
    model = bnn_model(net, prior, Categorical(), temperature=temperature)
    x = np.random.default_rng(0).normal(size=(4, 2, 2))
    y = np.array([0, 1, 2, 1])
    ld = LogDensity(model, make_mesh(), (x[:2], y[:2]))
    assert sorted(ld.latent_sites) == [
        "net/Dense_0.bias",
        "net/Dense_0.kernel",
        "net/Dense_1.bias",
        "net/Dense_1.kernel",
    ]
    rng = np.random.default_rng(1)  # any position: log_prior is a function of it
    position = {k: jnp.asarray(0.7 * rng.standard_t(3, size=s)) for k, s in ld.shapes.items()}
    want = 0.0
    for value in _net_params(ld, position).values():
        fan = priors.fan_in(value.shape) if fan_in_scaling else 1
        want += sum(formula(float(t), 1.0 / wd / fan) for t in value.ravel())
    got = float(ld.log_prior(position))
    assert got == pytest.approx(want / temperature, rel=1e-10)


def test_log_prior_float32_bnn(dtype_name):
    """The same sum in the default precision (float32) and in float64."""
    prior = priors.per_parameter(priors.gaussian(2.0))
    model = bnn_model(MLP(hidden=(7,), num_outputs=2), prior, Categorical(), temperature=0.5)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    ld = LogDensity(model, make_mesh(), (x[:2], np.array([0, 1])))
    rng = np.random.default_rng(3)
    position = {k: jnp.asarray(rng.normal(size=shape)) for k, shape in ld.shapes.items()}
    want = (
        sum(
            gaussian_logpdf(float(t), 0.5)
            for v in _net_params(ld, position).values()
            for t in v.ravel()
        )
        / 0.5
    )
    assert np.asarray(ld.log_prior(position)).dtype == np.dtype(dtype_name)
    assert float(ld.log_prior(position)) == pytest.approx(want, rel=rtol_for(dtype_name) * 10)
