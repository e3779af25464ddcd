"""MAMS, ChEES-HMC and MCLMC: draws against closed-form posteriors, resume, statistics,
starts and bad inputs.

Statistical checks (STYLE 10): per coordinate, ``|mean - truth| / MCSE < 4`` and
``|sd - truth| / MCSE(sd) < 4``, MCSE from ArviZ's ESS, on a correlated Gaussian and on
the conjugate Bayesian linear regression posterior, over several seeds. MAMS and ChEES are
exact, also with their gradients in ``bfloat16`` (the Metropolis test on the float32 log
density). MCLMC is asymptotically biased: its bound adds a stated bias budget of 0.1
posterior sd to the means and 15% to the sds.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from mcmc_helpers import summary

from ppl_bnn.config import AdaptiveConfig
from ppl_bnn.declare.problem import problem_from_arrays
from ppl_bnn.driver import starts
from ppl_bnn.driver.adaptive import run_adaptive
from ppl_bnn.driver.loop import RunResult
from ppl_bnn.inference import chees as chees_lib
from ppl_bnn.inference import microcanonical as mc

SEEDS = (0, 1, 2)
WARMUP, SAMPLES = 400, 1000


# ---------------------------------------------------------------------- targets
def gaussian_target():
    """A correlated Gaussian: scales 1, 3, 0.3, correlation 0.8 between the first two."""
    mean = np.array([1.0, -2.0, 0.5])
    scale = np.array([1.0, 3.0, 0.3])
    corr = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 1.0]])
    cov = corr * np.outer(scale, scale)
    prec = jnp.asarray(np.linalg.inv(cov), jnp.float32)
    mu = jnp.asarray(mean, jnp.float32)

    def ld(p, batch):
        r = p["x"] - mu
        return -0.5 * r @ prec @ r

    return ld, None, "x", mean, np.sqrt(np.diag(cov))


NOISE, PRIOR = 0.5, 1.0


def regression_model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, PRIOR).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, NOISE), obs=y)


def regression_data(n: int = 30):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -0.5, 0.25]) + NOISE * rng.normal(size=n)).astype(np.float32)
    return x, y


@functools.cache
def regression_problem():
    x, y = regression_data()
    return problem_from_arrays(regression_model, x, y, None, None)


def regression_target():
    """The conjugate posterior of ``w``: ``N(S X'y / s^2, S)``, ``S = (X'X / s^2 + I /
    t^2)^-1`` (the full-batch log density of the NumPyro model, data traced)."""
    x, y = regression_data()
    post_cov = np.linalg.inv(x.T @ x / NOISE**2 + np.eye(3) / PRIOR**2)
    post_mean = post_cov @ x.T @ y / NOISE**2
    p = regression_problem()
    return p.logdensity, p.train, "w", post_mean, np.sqrt(np.diag(post_cov))


TARGETS = {"gaussian": gaussian_target, "regression": regression_target}


def starts_for(key, num_chains: int, name: str):
    return {name: jax.random.uniform(key, (num_chains, 3), minval=-2.0, maxval=2.0)}


# ---------------------------------------------------------------------- samplers
@functools.cache
def mams_sampler(target: str, gradient_dtype, num_chains: int = 4):
    ld, _, name, _, _ = TARGETS[target]()
    mams = mc.build_mams(ld, gradient_dtype=gradient_dtype)
    tune = mc.build_mams_tuner(mams, WARMUP)

    @jax.jit
    def run(key, batch):
        k_start, k_tune, k_run = jax.random.split(key, 3)
        s = jax.vmap(mams.init, in_axes=(0, None))(starts_for(k_start, num_chains, name), batch)
        tuned = jax.vmap(tune, in_axes=(0, 0, None, None))(
            jax.random.split(k_tune, num_chains), s, batch, jnp.nan
        )
        eps, avg = tuned.step_size, tuned.L / tuned.step_size
        step = jax.vmap(mams.step, in_axes=(0, 0, None, 0, 0, 0))

        def body(s, k):
            s, info = step(jax.random.split(k, num_chains), s, batch, eps, avg,
                           tuned.inverse_mass_matrix)  # fmt: skip
            return s, (s.position[name], info.acceptance_rate)

        _, (draws, accept) = jax.lax.scan(body, tuned.state, jax.random.split(k_run, SAMPLES))
        return jnp.swapaxes(draws, 0, 1), accept

    return run


@functools.cache
def chees_sampler(target: str, gradient_dtype, num_chains: int = 16):
    ld, _, name, _, _ = TARGETS[target]()
    init, _ = chees_lib.build_kernel(ld, gradient_dtype=gradient_dtype)
    chees = chees_lib.build_chees(ld, WARMUP, gradient_dtype=gradient_dtype)

    @jax.jit
    def run(key, batch):
        k_start, k_warm, k_run = jax.random.split(key, 3)
        s = jax.vmap(init, in_axes=(0, None))(starts_for(k_start, num_chains, name), batch)
        w = chees.init(s, 0.1)

        def warm(carry, xs):
            s, w = carry
            k, i = xs
            s, w, _ = chees.warmup_step(jax.random.split(k, num_chains), s, w, batch, i)
            return (s, w), None

        xs = (jax.random.split(k_warm, WARMUP), jnp.arange(WARMUP))
        (s, w), _ = jax.lax.scan(warm, (s, w), xs)
        eps, length, imm = chees.final(w)

        def body(s, k):
            s, info = chees.step(jax.random.split(k, num_chains), s, batch, eps, length, imm)
            return s, (s.position[name], info.acceptance_rate)

        _, (draws, accept) = jax.lax.scan(body, s, jax.random.split(k_run, SAMPLES // 4))
        return jnp.swapaxes(draws, 0, 1), accept

    return run


@functools.cache
def mclmc_sampler(target: str, num_chains: int = 4):
    ld, _, name, _, _ = TARGETS[target]()
    mclmc = mc.build_mclmc(ld)
    tune = mc.build_mclmc_tuner(mclmc, WARMUP)

    @jax.jit
    def run(key, batch):
        k_start, k_init, k_tune, k_run = jax.random.split(key, 4)
        s = jax.vmap(mclmc.init, in_axes=(0, None, 0))(
            starts_for(k_start, num_chains, name), batch, jax.random.split(k_init, num_chains)
        )
        tuned = jax.vmap(tune, in_axes=(0, 0, None, None))(
            jax.random.split(k_tune, num_chains), s, batch, jnp.nan
        )
        step = jax.vmap(mclmc.step, in_axes=(0, 0, None, 0, 0, 0))

        def body(s, k):
            s, _ = step(jax.random.split(k, num_chains), s, batch, tuned.step_size, tuned.L,
                        tuned.inverse_mass_matrix)  # fmt: skip
            return s, s.position[name]

        _, draws = jax.lax.scan(body, tuned.state, jax.random.split(k_run, 4 * SAMPLES))
        return jnp.swapaxes(draws, 0, 1), None

    return run


def check_draws(draws, mean, sd, *, bias: float = 0.0, sd_band: float = 0.0, what: str = ""):
    """Means within 4 MCSE (plus ``bias`` posterior sds), sds within 4 MCSE of the sd
    (or within ``sd_band`` relative)."""
    s = summary(np.asarray(draws, np.float64))
    err = (np.abs(s["mean"] - mean) - bias * sd) / s["mcse"]
    sd_err = np.abs(s["sd"] - sd) / s["mcse_sd"]
    ratio = s["sd"] / sd
    msg = (
        f"{what}: mean error / MCSE {np.round(err, 2)}, sd error / MCSE {np.round(sd_err, 2)}, "
        f"sd ratio {np.round(ratio, 3)}, ESS {np.round(s['ess'])}, R-hat {np.round(s['rhat'], 3)}"
    )
    assert np.all(err < 4), msg
    assert np.all((sd_err < 4) | (np.abs(ratio - 1) < sd_band)), msg
    assert np.all(s["ess"] > 100), msg
    return s


def _statistical(kind: str, target: str, gradient_dtype, seeds):
    ld, batch, _, mean, sd = TARGETS[target]()
    for seed in seeds:
        if kind == "mams":
            draws, accept = mams_sampler(target, gradient_dtype)(jax.random.key(seed), batch)
        else:
            draws, accept = chees_sampler(target, gradient_dtype)(jax.random.key(seed), batch)
        assert 0.5 < float(np.mean(accept)) <= 1.0
        check_draws(draws, mean, sd, what=f"{kind} {target} {gradient_dtype} seed {seed}")


@pytest.mark.parametrize(
    "kind,target,gradient_dtype",
    [
        ("mams", "regression", "bfloat16"),
        ("chees", "gaussian", None),
        pytest.param("mams", "gaussian", None, marks=pytest.mark.slow),
        pytest.param("mams", "regression", None, marks=pytest.mark.slow),
        pytest.param("chees", "regression", "bfloat16", marks=pytest.mark.slow),
    ],
)
def test_exact_samplers_match_closed_form(kind, target, gradient_dtype):
    _statistical(kind, target, gradient_dtype, SEEDS[:2])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mams", "chees"])
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("gradient_dtype", [None, "bfloat16", "float16"])
def test_exact_samplers_match_closed_form_all_seeds(kind, target, gradient_dtype):
    _statistical(kind, target, gradient_dtype, (*SEEDS, 3, 4))


@pytest.mark.slow
@pytest.mark.parametrize("target", list(TARGETS))
def test_mclmc_within_its_bias_budget(target):
    """Unadjusted: means within 4 MCSE plus 0.1 posterior sd, sds within 15%."""
    _, batch, _, mean, sd = TARGETS[target]()
    for seed in SEEDS[:2]:
        draws, _ = mclmc_sampler(target)(jax.random.key(seed), batch)
        check_draws(draws, mean, sd, bias=0.1, sd_band=0.15, what=f"mclmc {target} {seed}")


def test_reduced_precision_gradient_differs_but_value_is_exact():
    """The bfloat16 dynamics see another gradient; the state keeps the float32 density."""
    ld, batch, _, _, _ = regression_target()
    p = {"w": jnp.array([0.3, -0.7, 1.1])}
    exact, low = mc.build_mams(ld), mc.build_mams(ld, gradient_dtype="bfloat16")
    a, b = jax.jit(exact.init)(p, batch), jax.jit(low.init)(p, batch)
    assert a.logdensity == b.logdensity
    g_a, g_b = np.asarray(a.logdensity_grad["w"]), np.asarray(b.logdensity_grad["w"])
    assert not np.array_equal(g_a, g_b) and np.allclose(g_a, g_b, rtol=0.05, atol=0.5)
    assert b.logdensity_grad["w"].dtype == jnp.float32


def test_mams_bounds_the_steps_of_a_proposal():
    """A tiny step size with a long ``L`` (as in a tuning whose step size collapsed) asks
    for thousands of steps; ``max_num_steps`` caps them."""
    ld, batch, _, _, _ = regression_target()
    p = {"w": jnp.array([0.3, -0.7, 1.1])}
    bounded = mc.build_mams(ld, max_num_steps=5)
    state = jax.jit(bounded.init)(p, batch)
    step = jax.jit(bounded.step)
    for i in range(8):
        state, info = step(jax.random.key(i), state, batch, 1e-4, 1e4, jnp.ones(3))
        assert 1 <= int(info.num_integration_steps) <= 5


# ---------------------------------------------------------------------- the driver
def config(kernel: str, path="", **kw) -> AdaptiveConfig:
    settings = dict(kernel=kernel, num_warmup=20, num_samples=8, num_chains=4, seed=3)
    return AdaptiveConfig(dir=str(path), keep_checkpoints=50, **{**settings, **kw})


def _same(a: RunResult, b: RunResult) -> None:
    assert set(a.samples) == set(b.samples)
    for k in a.samples:
        np.testing.assert_array_equal(a.samples[k], b.samples[k], err_msg=k)
    assert set(a.sample_stats) == set(b.sample_stats)
    for k in a.sample_stats:
        np.testing.assert_array_equal(a.sample_stats[k], b.sample_stats[k], err_msg=k)


@pytest.mark.parametrize(
    "kernel,stop",
    [
        ("chees", 7),  # in the middle of the per-iteration warmup (20 iterations)
        ("chees", 23),  # in the sampling
        ("mams", 3),  # the tuning ran in the first call: the checkpoint holds its result
        pytest.param("mclmc", 3, marks=pytest.mark.slow),
    ],
)
def test_resume_is_bit_for_bit(tmp_path, kernel, stop):
    p = regression_problem()
    whole = run_adaptive(config(kernel, tmp_path / "whole"), problem=p, collect=True)
    first = run_adaptive(config(kernel, tmp_path / "parts"), problem=p, stop_after=stop)
    assert not first["complete"] and first["iterations_done"] == stop
    rest = run_adaptive(config(kernel, tmp_path / "parts"), problem=p, collect=True)
    assert rest["complete"]
    _same(whole, rest)
    assert whole["step_size"] == rest["step_size"] and whole["L"] == rest["L"]


def test_mams_killed_during_tuning_reruns_it(tmp_path):
    """Killed before its first checkpoint (the tuning is one compiled call at the start):
    the resumed run tunes again from the same key and ends where the whole run does."""
    from ppl_bnn.store.rundir import RunDir

    class Killed(BaseException):
        pass

    p = regression_problem()
    whole = run_adaptive(config("mams", tmp_path / "whole"), problem=p, collect=True)
    original = RunDir.save

    def save(self, step, state):
        raise Killed

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunDir, "save", save)
        with pytest.raises(Killed):
            run_adaptive(config("mams", tmp_path / "parts"), problem=p)
    assert RunDir.save is original
    rest = run_adaptive(config("mams", tmp_path / "parts"), problem=p, collect=True)
    _same(whole, rest)


def test_sample_stats_and_summary():
    p = regression_problem()
    expected = {
        "mams": {"acceptance_rate", "diverging", "n_steps", "step_size", "L", "energy_error"},
        "chees": {"acceptance_rate", "diverging", "n_steps", "step_size", "L", "energy"},
        "mclmc": {"diverging", "step_size", "L", "energy_error"},
    }
    for kernel in ("mams", "chees"):
        r = run_adaptive(config(kernel), problem=p, collect=True)
        assert expected[kernel] <= set(r.sample_stats)
        dt = r.to_datatree()
        assert expected[kernel] <= set(dt["sample_stats"].data_vars)
        assert dt["sample_stats"]["acceptance_rate"].shape == (4, 8)
        assert (
            r["method"] == kernel
            and r["exact"] is True
            and r["iterations_done"] == (28 if kernel == "chees" else 8)
        )


@pytest.mark.slow
def test_mclmc_is_flagged_biased(capsys):
    r = run_adaptive(config("mclmc"), problem=regression_problem(), collect=True)
    assert r["asymptotically_biased"] is True and r["exact"] is False
    assert {"diverging", "step_size", "L", "energy_error"} <= set(r.sample_stats)
    assert "asymptotically biased" in capsys.readouterr().err


# ---------------------------------------------------------------------- starts
def test_ensemble_start_superchains_and_nested_rhat():
    """Four chains from a two-member ensemble (an in-memory result): chain i starts at
    member i mod 2; the summary holds the superchains and a nested R-hat."""
    p = regression_problem()
    members = {"w": np.array([[[0.5, -0.2, 0.1]], [[1.5, -1.0, 0.4]]], np.float32)}
    ens = RunResult(summary={"method": "ensemble"}, samples=members)
    pos = starts.initial_positions(p, jax.random.key(0), 4, "ensemble", ens)
    np.testing.assert_array_equal(np.asarray(pos["w"]), members["w"][[0, 1, 0, 1], 0])
    cfg = config("mams", init_strategy="ensemble")
    r = run_adaptive(cfg, problem=p, collect=True, init_from=ens)
    assert r["superchains"] == [0, 1, 0, 1]
    assert r["nested_rhat"] is not None and r["nested_rhat"] >= 1.0


@pytest.mark.slow  # compiles L-BFGS: 15 s
def test_pathfinder_start_is_near_the_posterior():
    p = regression_problem()
    _, _, _, mean, sd = regression_target()
    pos = np.asarray(starts.initial_positions(p, jax.random.key(0), 3, "pathfinder")["w"])
    assert np.isfinite(pos).all() and np.all(np.abs(pos - mean) < 6 * sd)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"kernel": "mala"}, "unknown kernel"),
        ({"kernel": "mclmc", "gradient_dtype": "bfloat16"}, "mclmc has none"),
        ({"gradient_dtype": "int8"}, "unknown gradient_dtype"),
        ({"target_accept": 1.5}, "target_accept"),
        ({"kernel": "mclmc", "target_accept": 0.8}, "no acceptance"),
        ({"init_strategy": "ensemble"}, "needs init_from"),
        ({"init_strategy": "best"}, "unknown init_strategy"),
        ({"step_size": -1.0}, "step_size"),
        ({"num_warmup": 5}, "at least 10"),
    ],
)
def test_bad_input_is_one_line(overrides, match):
    with pytest.raises(ValueError, match=match) as e:
        kernel = overrides.pop("kernel", "mams")
        run_adaptive(config(kernel, **overrides), problem=regression_problem())
    assert "\n" not in str(e.value)


def test_one_dimensional_model_is_refused_by_mams():
    def model(x, y=None):
        m = numpyro.sample("m", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(m, 1.0), obs=y)

    x = np.zeros((5, 1), np.float32)
    p = problem_from_arrays(model, x, np.ones(5, np.float32), None, None)
    with pytest.raises(ValueError, match="at least 2") as e:
        run_adaptive(config("mams"), problem=p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("method", [pytest.param("nuts", marks=pytest.mark.slow), "hmc"])
def test_nuts_and_hmc_start_from_a_deep_ensemble(method):
    """``infer``: a two-member deep ensemble, then NUTS / window HMC with four chains
    started at its members: the chains start at members 0, 1, 0, 1 (superchains), the
    summary holds the nested R-hat, and the draws have the conjugate posterior's mean."""
    import ppl_bnn

    x, y = regression_data()
    ens = ppl_bnn.infer(regression_model, x, y, method="ensemble", num_chains=2, num_warmup=20)
    r = ppl_bnn.infer(
        regression_model,
        x,
        y,
        method=method,
        num_warmup=200,
        num_samples=200,
        init_strategy="ensemble",
        init_from=ens,
    )
    assert r.summary["superchains"] == [0, 1, 0, 1]
    assert r.summary["nested_rhat"] is not None and r.summary["nested_rhat"] < 1.1
    _, _, _, mean, sd = regression_target()
    s = summary(np.asarray(r.samples["w"]))
    assert np.all(np.abs(s["mean"] - mean) < 4 * s["mcse"]), (s["mean"], mean, s["mcse"])
    assert np.all(np.abs(s["sd"] / sd - 1) < 0.25), (s["sd"], sd)
