"""Likelihoods through ``LogDensity.log_likelihood`` against hand-written formulas.

The network outputs are recomputed by hand (numpy, float64) from the position, and the
log likelihood written out from the textbook densities; the library's value comes from
NumPyro's trace of the model, summed inside ``shard_map`` with the padding mask.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from ppl_bnn.declare import likelihoods, priors
from ppl_bnn.declare.bnn import bnn_model
from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import make_mesh, shard_batch
from ppl_bnn.models import MLP

pytestmark = pytest.mark.filterwarnings("error")  # a strict harness: warnings fail

RNG = np.random.default_rng(42)
X = RNG.normal(size=(7, 3))
Y_CLASS = np.array([0, 2, 1, 1, 0, 2, 2], np.int32)
Y_REG = RNG.normal(size=7)


def mlp_outputs(position: dict, x: np.ndarray) -> np.ndarray:
    """The MLP(hidden=(5,)) forward pass, by hand."""
    p = {k: np.asarray(v, np.float64) for k, v in position.items()}
    h = np.maximum(x.reshape(len(x), -1) @ p["net/Dense_0.kernel"] + p["net/Dense_0.bias"], 0)
    return h @ p["net/Dense_1.kernel"] + p["net/Dense_1.bias"]


def softplus(z):
    return np.logaddexp(0.0, z)


def normal_logpdf(y, mean, std):
    return -0.5 * ((y - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)


def hand_categorical(out, y):
    logz = np.log(np.sum(np.exp(out - out.max(1, keepdims=True)), 1)) + out.max(1)
    return np.sum(out[np.arange(len(y)), y] - logz)


def hand_heteroscedastic(out, y):
    return np.sum(normal_logpdf(y, out[:, 0], softplus(out[:, 1])))


@functools.cache
def _position(ld: LogDensity, dtype: str, values: tuple) -> dict:
    # LogDensity.init runs Flax's initialisers eagerly (about a second): once per model
    position = ld.init(jax.random.key(0), values=dict(values))
    # non-zero biases, larger weights: outputs of both signs and sizeable spread
    return {k: (2 * v + 0.2 if k.startswith("net/") else v) for k, v in position.items()}


@functools.cache
def _log_density(likelihood, num_outputs: int, temperature: float, y_dtype: str, dtype: str):
    model = bnn_model(
        MLP(hidden=(5,), num_outputs=num_outputs),
        priors.gaussian(1.0),
        likelihood,
        temperature=temperature,
    )
    y = Y_CLASS if y_dtype == "int" else Y_REG
    return LogDensity(model, make_mesh(), (X[:2], y[:2]))


def make(likelihood, num_outputs, y, temperature=1.0, values=None):
    """A LogDensity of an MLP(hidden=(5,)) BNN and a position (shared between temperatures)."""
    y_dtype = "int" if y.dtype.kind == "i" else "float"
    dtype = str(jnp.zeros(()).dtype)  # one LogDensity per precision
    ld = _log_density(likelihood, num_outputs, temperature, y_dtype, dtype)
    base = _log_density(likelihood, num_outputs, 1.0, y_dtype, dtype)
    return ld, _position(base, dtype, tuple(sorted((values or {}).items())))


CASES = {
    "categorical": (likelihoods.Categorical(), 3, Y_CLASS, hand_categorical),
    "heteroscedastic": (likelihoods.HeteroscedasticGaussian(), 2, Y_REG, hand_heteroscedastic),
    "homoscedastic_fixed": (
        likelihoods.HomoscedasticGaussian(noise_std=0.3),
        1,
        Y_REG,
        lambda out, y: np.sum(normal_logpdf(y, out[:, 0], 0.3)),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_log_likelihood_matches_formula(name, temperature, x64):
    lik, k, y, formula = CASES[name]
    ld, position = make(lik, k, y, temperature)
    batch = shard_batch(ld.mesh, X, y)
    want = formula(mlp_outputs(position, X), y) / temperature
    assert float(jax.jit(ld.log_likelihood)(position, batch)) == pytest.approx(want, rel=1e-10)


def test_homoscedastic_learned_noise_likelihood_prior_and_jacobian(x64):
    """noise_std is a latent site on (0, inf), sampled in log space.

    The likelihood uses the constrained noise; the prior adds HalfNormal(scale) for it and
    the log-Jacobian log(sigma) of exp, which is *not* tempered (so that the tempered
    posterior over sigma is exactly p(sigma | D)^(1/T)).
    """
    lik = likelihoods.HomoscedasticGaussian(noise_prior_scale=2.0)
    T = 0.5
    ld, position = make(lik, 1, Y_REG, T, values={"noise_std": 0.7})
    assert "noise_std" in ld.latent_sites
    assert float(position["noise_std"]) == pytest.approx(math.log(0.7), rel=1e-12)
    batch = shard_batch(ld.mesh, X, Y_REG)
    out = mlp_outputs(position, X)
    want_lik = np.sum(normal_logpdf(Y_REG, out[:, 0], 0.7)) / T
    assert float(jax.jit(ld.log_likelihood)(position, batch)) == pytest.approx(want_lik, rel=1e-10)

    half_normal = math.log(2) + float(normal_logpdf(0.7, 0.0, 2.0))
    weights = sum(
        float(np.sum(normal_logpdf(np.asarray(v, np.float64), 0.0, 1.0)))
        for k, v in position.items()
        if k.startswith("net/")
    )
    want_prior = (weights + half_normal) / T + math.log(0.7)
    assert float(ld.log_prior(position)) == pytest.approx(want_prior, rel=1e-10)


@pytest.mark.parametrize("name", list(CASES))
def test_temperature_scales_the_log_likelihood_by_one_over_t(name):
    lik, k, y, _ = CASES[name]
    ld1, position = make(lik, k, y, 1.0)
    ld3, _ = make(lik, k, y, 3.0)
    batch = shard_batch(ld1.mesh, X, y)
    v1 = float(jax.jit(ld1.log_likelihood)(position, batch))
    v3 = float(jax.jit(ld3.log_likelihood)(position, batch))
    assert v3 == pytest.approx(v1 / 3.0, rel=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_padding_does_not_change_value_or_gradient(name):
    """7 examples padded to 8 (one masked row), and in 2 microbatches of 4, equal 7 unpadded."""
    lik, k, y, _ = CASES[name]
    ld, position = make(lik, k, y)
    ld_micro = LogDensity(ld.model, ld.mesh, (X[:2], y[:2]), microbatch_size=4)
    plain = shard_batch(ld.mesh, X, y)
    padded = shard_batch(ld.mesh, X, y, multiple=8)
    assert plain.x.shape[0] == 7 and padded.x.shape[0] == 8
    assert padded.num_examples == 7 and np.asarray(padded.mask).tolist() == [1] * 7 + [0]

    def vg(logdensity, batch):
        return jax.jit(jax.value_and_grad(logdensity.log_likelihood))(position, batch)

    v0, g0 = vg(ld, plain)
    for logdensity in (ld, ld_micro):
        v, g = vg(logdensity, padded)
        np.testing.assert_allclose(float(v), float(v0), rtol=1e-6)
        for key in g0:
            np.testing.assert_allclose(g[key], g0[key], rtol=1e-5, atol=1e-6)


def positive_model(x, y=None):
    """A plain NumPyro model whose observations live on (0, inf)."""
    loc = numpyro.sample("loc", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.LogNormal(loc + x[:, 0], 0.5), obs=y)


def test_padding_with_observations_on_a_bounded_support():
    x = np.linspace(-1, 1, 7)[:, None]
    y = np.exp(np.linspace(-1, 1, 7))
    ld = LogDensity(positive_model, make_mesh(), (x[:2], y[:2]))
    position = {"loc": jnp.asarray(0.3)}
    log_likelihood = jax.jit(ld.log_likelihood)
    plain = float(log_likelihood(position, shard_batch(ld.mesh, x, y)))
    padded = float(log_likelihood(position, shard_batch(ld.mesh, x, y, multiple=8)))
    assert np.isfinite(plain)
    assert padded == pytest.approx(plain, rel=1e-6)


def test_log_density_is_prior_plus_likelihood():
    lik, k, y, _ = CASES["categorical"]
    ld, position = make(lik, k, y, 0.5)
    batch = shard_batch(ld.mesh, X, y)
    total = float(jax.jit(ld)(position, batch))
    assert total == pytest.approx(
        float(ld.log_prior(position)) + float(jax.jit(ld.log_likelihood)(position, batch)), rel=1e-6
    )


def test_make_likelihood_names():
    assert isinstance(likelihoods.make_likelihood("categorical"), likelihoods.Categorical)
    assert isinstance(likelihoods.make_likelihood("gaussian"), likelihoods.HeteroscedasticGaussian)
    h = likelihoods.make_likelihood("homoscedastic", noise_std=0.1)
    assert h.noise_std == 0.1 and h.num_outputs == 1
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        likelihoods.make_likelihood("poisson")


def test_model_without_observations_is_refused():
    def model(x, y=None):
        numpyro.sample("a", dist.Normal(0, 1))

    with pytest.raises(ValueError, match="no observed site"):
        LogDensity(model, make_mesh(), (np.zeros((2, 1)), np.zeros(2)))


def test_predictive_stats_of_each_head():
    """predict(): class probabilities; [mean, std] for the Gaussian heads."""
    for name, (lik, k, y, _) in CASES.items():
        ld, position = make(lik, k, y)
        batch = shard_batch(ld.mesh, X, y)
        pred = np.asarray(jax.jit(ld.predict)(position, batch.x))
        out = mlp_outputs(position, X)
        if name == "categorical":
            p = np.exp(out - out.max(1, keepdims=True))
            np.testing.assert_allclose(pred, p / p.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
        elif name == "heteroscedastic":
            np.testing.assert_allclose(pred[:, 0], out[:, 0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(pred[:, 1], softplus(out[:, 1]), rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_allclose(pred[:, 0], out[:, 0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(pred[:, 1], 0.3, rtol=1e-6)
    assert jnp.zeros(()).dtype == jnp.float32
