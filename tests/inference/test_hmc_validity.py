"""HMC samples the right distribution, and its iteration mechanics are the original's.

Statistical tests follow BlackJAX's ``MonteCarloStandardErrorTest``: several chains
(vectorised) on targets whose moments are known in closed form; every estimated moment
must lie within a Bonferroni-corrected normal quantile of the truth, in units of its
Monte Carlo standard error (MCSE = sd / sqrt(ESS), ArviZ's ``mcse(method="mean")``). The
false-alarm rate of a whole test is ``ALPHA``; the thresholds come from that, not from a
seed. Five seeds of each run under ``-m slow``.
"""

from __future__ import annotations

import math

import arviz_stats as azs
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy.stats import norm

from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import make_mesh, shard_batch
from ppl_bnn.inference.hmc import build_init, build_kernel, num_leapfrog_steps, split_keys

pytestmark = pytest.mark.filterwarnings("error")  # a strict harness: warnings fail

ALPHA = 1e-3  # family-wise probability that a correct sampler fails one test


# ------------------------------------------------------------------- targets
def sampler_settings(cov: np.ndarray) -> dict:
    """Step size and trajectory from the target's scales (sd_min .. sd_max).

    A fixed trajectory rotates each principal direction of a Gaussian by about T / sd; a
    rotation near pi or 2 pi (a half or full period) stops that direction from mixing, so
    T = 2 sd_min keeps every angle in (0, 2]. The step size sd_min (2 leapfrog steps) is
    deliberately large: acceptance is about 0.9 and the leapfrog integrator alone would
    inflate the variance of the narrowest direction by a third, so the moments are only
    right if the Metropolis-Hastings correction is (the negative control
    ``test_the_check_detects_a_sampler_without_mh`` fails without it). These are sampler
    settings, not tolerances.
    """
    sd = np.sqrt(np.linalg.eigvalsh(cov))
    return dict(step_size=sd.min(), trajectory_len=2.0 * sd.min())


def gaussian_target():
    """A correlated 4-d Gaussian (principal sds 0.5 to 1.5), plus a constant likelihood."""
    mean = np.array([1.0, -2.0, 0.5, 3.0])
    q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(4, 4)))  # a fixed rotation
    cov = q @ np.diag(np.array([0.5, 0.8, 1.2, 1.5]) ** 2) @ q.T
    chol = np.linalg.cholesky(cov)

    def model(x, y=None):
        numpyro.sample(
            "theta", dist.MultivariateNormal(jnp.asarray(mean), scale_tril=jnp.asarray(chol))
        )
        with numpyro.plate("data", x.shape[0]):  # contributes a constant only
            numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    x, y = np.zeros((3, 1)), np.zeros(3)
    return model, x, y, mean, cov


def linear_regression_target(temperature: float = 1.0):
    """Bayesian linear regression, prior N(0, tau^2 I), known noise sigma, posterior^(1/T).

    Posterior: Sigma = (X'X / sigma^2 + I / tau^2)^-1, mu = Sigma X'y / sigma^2. Raising it
    to the power 1/T keeps the mean and multiplies the covariance by T.
    """
    rng = np.random.default_rng(1234)  # the data; the posterior is exact for any data
    n, d, tau, sigma = 30, 3, 1.0, 0.5
    x = rng.normal(size=(n, d)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, -0.4], [0.0, 0.0, 0.7]])
    y = x @ np.array([1.0, -2.0, 0.5]) + sigma * rng.normal(size=n)
    precision = x.T @ x / sigma**2 + np.eye(d) / tau**2
    cov = np.linalg.inv(precision)
    mean = cov @ x.T @ y / sigma**2

    def model(x, y=None):
        with numpyro.handlers.scale(scale=1.0 / temperature):
            beta = numpyro.sample("beta", dist.Normal(0.0, tau).expand([d]).to_event(1))
            with numpyro.plate("data", x.shape[0]):
                numpyro.sample("y", dist.Normal(x @ beta, sigma), obs=y)

    return model, x, y, mean, temperature * cov


TARGETS = {
    "gaussian": gaussian_target,
    "linreg": linear_regression_target,
    "linreg_T0.5": lambda: linear_regression_target(0.5),
}


# -------------------------------------------------------------------- driver
def run_chains(
    model,
    x,
    y,
    *,
    step_size,
    trajectory_len,
    seed,
    init_center,
    init_scale,
    do_mh=True,
    num_chains=8,
    num_warmup=200,
    num_draws=1000,
    site=None,
):
    """Draws ``(chains, draws, d)`` from the project's HMC over ``LogDensity(model)``.

    Chains start overdispersed, at ``init_center + init_scale * N(0, I)``; warm-up draws
    are discarded.
    """
    mesh = make_mesh()
    ld = LogDensity(model, mesh, (x[:2], y[:2]))
    batch = shard_batch(mesh, x, y)
    (site,) = ld.latent_sites if site is None else (site,)
    d = ld.shapes[site][0]
    key = jax.random.key(seed)
    key, init_key = jax.random.split(key)
    dtype = jnp.zeros(()).dtype
    start = init_center + init_scale * jax.random.normal(init_key, (num_chains, d), dtype)
    start = jnp.asarray(start, dtype)
    state = build_init(ld)({site: start}, batch)
    kernel = build_kernel(ld)
    steps = num_leapfrog_steps(trajectory_len, step_size, 10_000)
    eps = jnp.full((num_chains,), step_size, jnp.zeros(()).dtype)
    inv_mass = jnp.ones((num_chains, d), jnp.zeros(()).dtype)
    num_steps = jnp.full((num_chains,), steps)

    def body(carry, _):
        key, state = carry
        key, chain_keys = split_keys(key, num_chains)
        state, info = kernel(chain_keys, state, batch, eps, inv_mass, num_steps, jnp.asarray(do_mh))
        return (key, state), (state.position[site], info.is_accepted)

    # the (jitted) kernel inside one compiled scan over iterations
    sample = jax.jit(lambda carry, n: jax.lax.scan(body, carry, None, length=n), static_argnums=1)
    carry, _ = sample((key, state), num_warmup)  # warm-up draws are discarded
    _, (draws, accepted) = sample(carry, num_draws)
    return np.swapaxes(np.asarray(draws, np.float64), 0, 1), np.asarray(accepted)


def z_scores(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray):
    """z of every first and second central moment: (estimate - truth) / MCSE."""
    d = draws.shape[-1]
    centred = draws - mean
    funcs, truth, names = [], [], []
    for i in range(d):
        funcs.append(draws[..., i])
        truth.append(mean[i])
        names.append(f"E[x{i}]")
    for i in range(d):
        for j in range(i, d):
            funcs.append(centred[..., i] * centred[..., j])
            truth.append(cov[i, j])
            names.append(f"Cov[x{i},x{j}]")
    f = np.stack(funcs, -1)  # (chains, draws, m)
    ess = np.asarray(azs.ess(f, method="mean"))
    mcse = np.asarray(azs.mcse(f, method="mean"))
    z = (f.mean((0, 1)) - np.asarray(truth)) / mcse
    return z, ess, names


def moment_check(name: str, seed: int, do_mh: bool = True):
    """``(passed, report)`` of the z-test of every first and second moment of a target."""
    model, x, y, mean, cov = TARGETS[name]()
    sd_max = float(np.sqrt(np.linalg.eigvalsh(cov).max()))
    draws, accepted = run_chains(
        model,
        x,
        y,
        seed=seed,
        init_center=mean,
        init_scale=3 * sd_max,
        do_mh=do_mh,
        **sampler_settings(cov),
    )
    z, ess, names = z_scores(draws, mean, cov)
    m = len(z)
    bound = norm.ppf(1 - ALPHA / (2 * m))  # two-sided, Bonferroni over the m moments
    rows = zip(names, z, ess, strict=True)
    report = ", ".join(f"{n}: z={v:+.2f} ess={e:.0f}" for n, v, e in rows)
    report = f"bound {bound:.2f}, acceptance {accepted.mean():.3f}; {report}"
    # the MCSE is only meaningful with enough effective draws
    assert np.all(ess > 200), report
    if do_mh:
        assert 0.5 < accepted.mean() < 1.0, report  # the MH test is active
    return bool(np.all(np.abs(z) < bound)), report


def check_target(name: str, seed: int):
    passed, report = moment_check(name, seed)
    assert passed, report


@pytest.mark.parametrize("name", ["gaussian", "linreg"])
def test_moments_within_monte_carlo_error_float32(name):
    check_target(name, seed=0)


def test_tempered_linear_regression_float64(x64):
    """float64, T = 0.5: the tempered posterior N(mu, T Sigma)."""
    check_target("linreg_T0.5", seed=1)


def test_public_sample_function_on_linear_regression():
    """``ppl_bnn.inference.hmc.sample``, the in-memory entry point for any NumPyro model:
    its own initialisation (uniform in (-2, 2)) and burn-in without MH, then the z-test."""
    from ppl_bnn.inference.hmc import sample

    model, x, y, mean, cov = linear_regression_target()
    settings = sampler_settings(cov)
    steps = num_leapfrog_steps(settings["trajectory_len"], settings["step_size"], 100)
    out = sample(
        jax.random.key(5),
        model,
        x,
        y,
        step_size=settings["step_size"],
        num_leapfrog_steps=steps,
        num_samples=1000,
        num_burn_in=200,
        num_chains=8,
    )
    draws = np.asarray(out.samples["beta"], np.float64)
    assert draws.shape == (8, 1000, 3) and out.is_accepted.shape == (8, 1000)
    z, ess, names = z_scores(draws, mean, cov)
    bound = norm.ppf(1 - ALPHA / (2 * len(z)))
    assert np.all(ess > 200) and np.all(np.abs(z) < bound), dict(zip(names, z, strict=True))


def test_the_check_detects_a_sampler_without_mh():
    """Negative control: the same test, same seed, with the MH correction switched off.

    Plain leapfrog at this step size samples a wider distribution (variance x 4/3 along the
    narrowest direction for a Gaussian), so the check must fail.
    """
    passed, report = moment_check("linreg", seed=0, do_mh=False)
    assert not passed, report


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
@pytest.mark.parametrize("seed", [10, 11, 12, 13, 14])
@pytest.mark.parametrize("float64", [False, True])
def test_moments_within_monte_carlo_error_many_seeds(name, seed, float64):
    jax.config.update("jax_enable_x64", float64)
    check_target(name, seed)


# --------------------------------------------------------------- mechanics
def _scalar_model(nan_outside_zero: bool = False):
    """theta ~ N(0, 1); optionally a likelihood that is NaN anywhere but theta = 0."""

    def model(x, y=None):
        theta = numpyro.sample("theta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        loc = jnp.where(theta[0] == 0.0, 0.0, jnp.nan) if nan_outside_zero else 0.0
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(loc, 1.0), obs=y)

    return model


def _one_step(model, start, step_size, num_steps, do_mh, key=0):
    x, y = np.zeros((2, 1)), np.zeros(2)
    mesh = make_mesh()
    ld = LogDensity(model, mesh, (x, y))
    batch = shard_batch(mesh, x, y)
    c = start.shape[0]
    state = build_init(ld)({"theta": jnp.asarray(start, jnp.float32)}, batch)
    keys = jax.random.split(jax.random.key(key), c)
    new, info = build_kernel(ld)(
        keys,
        state,
        batch,
        jnp.full((c,), step_size),
        jnp.ones((c, 2)),
        jnp.full((c,), num_steps),
        jnp.asarray(do_mh),
    )
    return ld, state, new, info, keys


def test_burn_in_without_mh_takes_every_non_divergent_proposal():
    """eps = 1.99, L = 7 on N(0, 1): energy errors of 30-160 (finite, under the divergence
    threshold of 1000), so MH rejects every proposal (acceptance ~0). Without MH (burn-in,
    --no_mh) each is taken, and the state is exactly BlackJAX's leapfrog endpoint for the
    same key.
    """
    import blackjax

    start = np.full((4, 2), 0.5)
    ld, state, new, info, keys = _one_step(_scalar_model(), start, 1.99, 7, do_mh=False)
    assert np.all(np.asarray(info.is_accepted)) and not np.any(np.asarray(info.is_divergent))
    assert np.all(np.asarray(new.logdensity) < np.asarray(state.logdensity) - 10)
    np.testing.assert_array_equal(np.asarray(new.logdensity), np.asarray(info.proposal_logdensity))
    # the endpoint of BlackJAX's own kernel with the same key, chain by chain
    x, y = np.zeros((2, 1)), np.zeros(2)
    batch = shard_batch(ld.mesh, x, y)
    bj = blackjax.mcmc.hmc.build_kernel()
    logdensity = lambda p: ld(p, batch)  # noqa: E731
    for c in range(4):
        one = jax.tree.map(lambda a, c=c: a[c], state)
        _, bj_info = bj(keys[c], one, logdensity, 1.99, jnp.ones(2), 7)
        np.testing.assert_allclose(
            np.asarray(new.position["theta"][c]),
            np.asarray(bj_info.proposal.position["theta"]),
            rtol=1e-5,
        )

    _, _, kept, info_mh, _ = _one_step(_scalar_model(), start, 1.99, 7, do_mh=True)
    assert not np.any(np.asarray(info_mh.is_accepted))
    np.testing.assert_array_equal(np.asarray(kept.position["theta"]), start.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(kept.logdensity), np.asarray(state.logdensity))


@pytest.mark.parametrize("do_mh", [True, False])
def test_divergent_proposal_is_never_taken(do_mh):
    """eps = 2.5, L = 20 on N(0, 1): the leapfrog is unstable (energy error ~1e20, finite):
    a divergence. It is rejected with MH and, by the burn-in rule, without MH as well."""
    start = np.full((4, 2), 0.5)
    _, state, new, info, _ = _one_step(_scalar_model(), start, 2.5, 20, do_mh=do_mh)
    assert np.all(np.asarray(info.is_divergent)) and not np.any(np.asarray(info.is_accepted))
    np.testing.assert_array_equal(np.asarray(new.position["theta"]), start.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(new.logdensity), np.asarray(state.logdensity))


@pytest.mark.parametrize("do_mh", [True, False])
def test_proposal_with_nan_log_density_is_rejected(do_mh):
    """With MH a NaN proposal is rejected (as in the original: NaN compares false).

    Without MH the library also rejects it (the original's --no_mh would have taken it and
    carried NaN parameters forward).
    """
    start = np.zeros((6, 2))
    _, state, new, info, _ = _one_step(_scalar_model(True), start, 0.5, 3, do_mh=do_mh)
    assert np.all(np.isfinite(np.asarray(state.logdensity)))
    assert np.all(np.isnan(np.asarray(info.proposal_logdensity)))
    assert not np.any(np.asarray(info.is_accepted))
    np.testing.assert_array_equal(np.asarray(new.position["theta"]), start.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(new.logdensity), np.asarray(state.logdensity))
    np.testing.assert_array_equal(
        np.asarray(new.logdensity_grad["theta"]), np.asarray(state.logdensity_grad["theta"])
    )


def _flat_model(x, y=None):
    """A flat target: the gradient (theta / 1e16) vanishes in float32 against the momentum,
    so q_L = q_0 + L * eps * p to rounding. (ImproperUniform would be the natural choice;
    see ``test_model_with_an_improper_prior``.)"""
    numpyro.sample("theta", dist.Normal(0.0, 1e8).expand([5]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


def test_consecutive_iterations_draw_fresh_momenta():
    """Keys are split once per iteration; no momentum (nor any key) is ever reused."""
    x, y = np.zeros((2, 1)), np.zeros(2)
    mesh = make_mesh()
    ld = LogDensity(_flat_model, mesh, (x, y))
    batch = shard_batch(mesh, x, y)
    chains, iterations, eps, num_steps = 3, 12, 0.5, 4
    state = build_init(ld)({"theta": jnp.zeros((chains, 5))}, batch)
    kernel = build_kernel(ld)
    key = jax.random.key(0)
    momenta, all_keys = [], [key]
    for _ in range(iterations):
        key, chain_keys = split_keys(key, chains)
        all_keys += [key, *chain_keys]
        # BlackJAX splits each chain key into (momentum key, MH/integrator key)
        all_keys += [k for ck in chain_keys for k in jax.random.split(ck)]
        new, info = kernel(
            chain_keys,
            state,
            batch,
            jnp.full((chains,), eps),
            jnp.ones((chains, 5)),
            jnp.full((chains,), num_steps),
            jnp.asarray(True),
        )
        assert np.all(np.asarray(info.is_accepted))  # zero energy error on a flat target
        momenta.append((new.position["theta"] - state.position["theta"]) / (eps * num_steps))
        state = new
    p = np.asarray(jnp.concatenate(momenta))  # (iterations * chains, 5)
    assert p.shape == (iterations * chains, 5)
    # every momentum differs from every other one, in every coordinate
    diffs = np.abs(p[:, None, :] - p[None, :, :])[~np.eye(len(p), dtype=bool)]
    assert np.all(diffs > 1e-6)
    # and they look like N(0, I) draws: |mean| within 5 standard errors, 60 numbers
    assert abs(p.mean()) < 5 / math.sqrt(p.size)
    data = {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in all_keys}
    assert len(data) == len(all_keys)


def test_one_iteration_costs_exactly_L_gradient_evaluations():
    """The gradient at the current state is cached: L leapfrog steps, L gradients."""
    calls = []
    x, y = np.zeros((2, 1)), np.zeros(2)
    mesh = make_mesh()

    class Counting(LogDensity):
        def __call__(self, position, batch):
            jax.debug.callback(lambda: calls.append(1))
            return super().__call__(position, batch)

    ld = Counting(_scalar_model(), mesh, (x, y))
    batch = shard_batch(mesh, x, y)
    state = build_init(ld)({"theta": jnp.zeros((1, 2))}, batch)
    calls.clear()
    kernel = build_kernel(ld)
    for L in (7, 3):
        calls.clear()
        kernel(
            jax.random.split(jax.random.key(L), 1),
            state,
            batch,
            jnp.full((1,), 0.1),
            jnp.ones((1, 2)),
            jnp.full((1,), L),
            jnp.asarray(True),
        )
        jax.effects_barrier()
        assert len(calls) == L


@pytest.mark.parametrize(
    ("trajectory_len", "step_size", "steps"),
    [
        (1.5, 3e-5, 50_000),  # the README's MNIST command: 1.5 / 3e-5 = 50000.000000000004
        (0.3, 0.1, 3),  # 2.9999999999999996 in floating point
        (0.7, 0.1, 7),
        (1.0, 0.3, 4),
        (1.0, 0.25, 4),
        (0.05, 0.1, 1),
        (0.702, 1e-5, 70_200),
    ],
)
def test_num_leapfrog_steps_is_ceil_of_trajectory_over_step(trajectory_len, step_size, steps):
    assert num_leapfrog_steps(trajectory_len, step_size, 100_000) == steps
    assert num_leapfrog_steps(trajectory_len, step_size, steps) == steps  # the max is allowed


def test_num_leapfrog_steps_above_the_maximum_is_refused():
    message = r"50000 leapfrog steps exceeds --max_num_leapfrog_steps=49999"
    with pytest.raises(ValueError, match=message):
        num_leapfrog_steps(1.5, 3e-5, 49_999)
    with pytest.raises(ValueError, match="must be positive"):
        num_leapfrog_steps(1.0, 0.0, 10)
    with pytest.raises(ValueError, match="must be positive"):
        num_leapfrog_steps(-1.0, 0.1, 10)


# ------------------------------------------------- any NumPyro model (DESIGN: "works")
def _plain_model(x, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    scale = numpyro.sample("scale", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(mu + x[:, 0], scale), obs=y)


def test_init_of_a_plain_numpyro_model():
    """Sites without a value start uniformly in (-2, 2), unconstrained (init_to_uniform).

    (Regression test: the seed handler must sit inside the init strategy's substitute.)
    """
    x, y = np.linspace(-1, 1, 6)[:, None], np.linspace(0, 1, 6)
    ld = LogDensity(_plain_model, make_mesh(), (x[:2], y[:2]))
    position = ld.init(jax.random.key(0))
    assert set(position) == {"mu", "scale"}
    # init_to_uniform: uniform in (-2, 2) in unconstrained space, and a finite density
    assert all(-2 < float(v) < 2 for v in position.values())
    assert np.isfinite(float(ld(position, shard_batch(ld.mesh, x, y))))


def test_init_with_values_of_a_plain_numpyro_model():
    """Pinning every site avoids the strategy: positions are unconstrained (log for scale)."""
    x, y = np.linspace(-1, 1, 6)[:, None], np.linspace(0, 1, 6)
    ld = LogDensity(_plain_model, make_mesh(), (x[:2], y[:2]))
    position = ld.init(jax.random.key(0), values={"mu": 0.5, "scale": 2.0})
    assert float(position["mu"]) == 0.5
    assert float(position["scale"]) == pytest.approx(math.log(2.0))
    assert float(ld.constrain(position)["scale"]) == pytest.approx(2.0)


def test_model_with_an_improper_prior():
    def model(x, y=None):
        numpyro.sample("theta", dist.ImproperUniform(dist.constraints.real, (), (2,)))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    ld = LogDensity(model, make_mesh(), (np.zeros((2, 1)), np.zeros(2)))
    assert ld.latent_sites == ["theta"]


# ------------------------------------------- the MH log ratio, difference-first
def _far_from_mode_bnn(n: int, temperature: float, likelihood=None):
    """An MLP BNN on n random examples, and two nearby positions far from the mode."""
    from ppl_bnn.declare import bnn, likelihoods, priors
    from ppl_bnn.models import MLP

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    if likelihood is None:
        likelihood, y = likelihoods.Categorical(), rng.integers(0, 10, n).astype(np.int32)
    else:
        y = rng.normal(size=n).astype(np.float32)
    model = bnn.bnn_model(
        MLP(hidden=(32,), num_outputs=likelihood.num_outputs or 10),
        priors.make_prior("gaussian", 1.0),
        likelihood,
        temperature=temperature,
    )
    ld = LogDensity(model, make_mesh(), (x[:2], y[:2]), microbatch_size=None)
    q0 = {k: (3 * rng.normal(size=s)).astype(np.float32) for k, s in ld.shapes.items()}
    q1 = {k: (v + 1e-3 * rng.normal(size=v.shape)).astype(np.float32) for k, v in q0.items()}
    return ld, x, y, q0, q1


def test_log_density_difference_is_exact_in_float64(x64):
    """``log_density_difference(new, old) = logdensity(new) - logdensity(old)``, including
    a transformed site's Jacobian (learned noise), tempering, padding and microbatches."""
    from ppl_bnn.declare.likelihoods import HomoscedasticGaussian

    ld, x, y, q0, q1 = _far_from_mode_bnn(7, 0.3, HomoscedasticGaussian())
    q0 = {**jax.tree.map(jnp.float64, q0), "noise_std": jnp.float64(-0.5)}
    q1 = {**jax.tree.map(jnp.float64, q1), "noise_std": jnp.float64(0.2)}
    micro = LogDensity(ld.model, ld.mesh, (x[:2], y[:2]), microbatch_size=4)
    batch = shard_batch(ld.mesh, x, y, multiple=4)  # 7 rows padded to 8
    want = float(ld(q1, batch)) - float(ld(q0, batch))
    for logdensity in (ld, micro):
        got = float(jax.jit(logdensity.log_density_difference)(q1, q0, batch))
        assert got == pytest.approx(want, rel=1e-10)


def test_log_density_difference_is_accurate_in_float32_at_a_million():
    """The MH log ratio at |log density| ~ 3e6, in float32, against float64.

    Requirement (DESIGN, Numerics): the accept test stays accurate in float32 for log
    densities of 1e5-1e7. An error of 0.05 nats changes an acceptance probability by at
    most 5%; the difference of two float32 totals is off by about ulp(3e6) = 0.25.
    """
    ld, x, y, q0, q1 = _far_from_mode_bnn(4000, 0.3)

    def evaluate():
        dtype = jnp.zeros(()).dtype
        cast = lambda t: jax.tree.map(lambda a: jnp.asarray(a, dtype), t)  # noqa: E731
        batch = shard_batch(ld.mesh, x, y)
        diff = jax.jit(ld.log_density_difference)(cast(q1), cast(q0), batch)
        total = jax.jit(ld)(cast(q0), batch)
        assert diff.dtype == total.dtype == dtype
        return float(diff), float(total)

    precise, total32 = evaluate()  # the default: float32 throughout
    jax.config.update("jax_enable_x64", True)  # restored after the test (conftest)
    reference, total = evaluate()  # the same float32 inputs, float64 arithmetic
    assert abs(total) > 1e6 and abs(reference) > 10
    assert abs(precise - reference) < 0.05, (precise, reference)
