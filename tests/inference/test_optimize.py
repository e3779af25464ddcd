"""SGD / MAP and deep ensembles: the update by hand, convergence to a known MAP, the
minibatch estimator, ensemble members, and resume == uninterrupted."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

from ppl_bnn.config import EnsembleConfig, SGDConfig
from ppl_bnn.inference import minibatch, optimize
from ppl_bnn.inference.schedules import cosine

TINY = {
    "dataset_name": "digits",
    "model_name": "mlp_regression_small",
    "subset_train_to": 160,
    "weight_decay": 1.0,
    "batch_size": 40,
    "init_step_size": 3e-4,
    "seed": 5,
}


@pytest.fixture(scope="module")
def problem():
    from ppl_bnn.declare.problem import build_problem

    return build_problem(SGDConfig(dir="unused", **TINY))


def test_update_is_momentum_trace_then_schedule_ascent():
    opt = optimize.optimizer(lambda t: 0.1 / (1.0 + t), momentum_decay=0.5)
    step = optimize.build_kernel(
        lambda p, mb: -jnp.sum((p["w"] - mb) ** 2), opt, report_logdensity=True
    )
    state = optimize.init({"w": jnp.array([0.0, 1.0])}, opt)
    state, info = step(state, jnp.array([1.0, 1.0]))
    g1 = np.array([2.0, 0.0])  # gradient of -(w - 1)^2 at w = (0, 1): ascent direction
    np.testing.assert_allclose(state.position["w"], [0.0, 1.0] + 0.1 * g1)
    assert float(info.logdensity) == pytest.approx(-1.0)
    state, _ = step(state, jnp.array([1.0, 1.0]))
    g2 = -2.0 * (np.array([0.2, 1.0]) - 1.0)
    np.testing.assert_allclose(state.position["w"], [0.2, 1.0] + 0.05 * (0.5 * g1 + g2), rtol=1e-6)


def _linear_regression(n=64, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ np.array([1.0, -0.5, 2.0]) + rng.normal(size=n)
    return x.astype(np.float32), y.astype(np.float32)


def test_sgd_reaches_the_map_of_a_conjugate_model():
    """Full-batch ascent on a Gaussian log posterior ends at its closed-form mode."""
    from ppl_bnn.density.logdensity import LogDensity
    from ppl_bnn.density.sharding import make_mesh

    x, y = _linear_regression()

    def model(x, y=None):
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)

    ld = LogDensity(model, make_mesh(1), (x[:2], y[:2]))
    opt = optimize.optimizer(cosine(5e-3, 400), momentum_decay=0.9)
    step = jax.jit(optimize.build_kernel(minibatch.logdensity_estimator(ld, 64), opt))
    state = optimize.init({"w": jnp.zeros(3)}, opt)
    batch = minibatch.Minibatch(jnp.asarray(x), jnp.asarray(y))
    for _ in range(400):
        state, _ = step(state, batch)
    exact = np.linalg.solve(np.eye(3) + x.T @ x, x.T @ y)
    np.testing.assert_allclose(state.position["w"], exact, rtol=1e-4, atol=1e-4)


def test_minibatch_estimate_is_unbiased(problem):
    """Averaged over the minibatches of one epoch (B divides N), the estimate is the full
    log posterior: N/B * sum_b loglik_b / (N/B) + log prior = log prior + loglik."""
    ld = problem.logdensity
    position = ld.init(jax.random.key(0))
    estimate = jax.jit(minibatch.logdensity_estimator(ld, 160))
    index = minibatch.epoch_indices(jax.random.key(1), 160, 40)
    assert index.shape == (4, 40) and sorted(np.asarray(index).ravel()) == list(range(160))
    values = [
        estimate(position, minibatch.gather(problem.train.x, problem.train.y, i)) for i in index
    ]
    full = ld(position, problem.train)
    assert float(np.mean(values)) == pytest.approx(float(full), rel=1e-5)


def test_epoch_indices_drop_the_remainder_and_refuse_large_batches():
    index = minibatch.epoch_indices(jax.random.key(0), 10, 3)
    assert index.shape == (3, 3) and len(set(np.asarray(index).ravel().tolist())) == 9
    with pytest.raises(ValueError, match="batch_size"):
        minibatch.num_batches(10, 11)


def _strip(run_dir):
    return [
        {k: v for k, v in json.loads(ln).items() if k != "time"}
        for ln in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def test_sgd_resume_equals_uninterrupted(tmp_path, problem):
    from ppl_bnn.driver import run_sgd
    from ppl_bnn.store.checkpoint import latest_checkpoint, load_checkpoint

    kw = {**TINY, "num_epochs": 5, "eval_freq": 2, "save_freq": 100}
    whole = run_sgd(SGDConfig(dir=str(tmp_path / "a"), **kw), problem=problem, progress=False)
    cfg = SGDConfig(dir=str(tmp_path / "b"), **kw)
    part = run_sgd(cfg, problem=problem, progress=False, stop_after=3)
    assert part["epochs_done"] == 3 and not part["complete"]
    rest = run_sgd(cfg, problem=problem, progress=False)
    assert rest["complete"] and rest["final"] == whole["final"]
    a, b = (load_checkpoint(latest_checkpoint(tmp_path / d / "checkpoints")) for d in "ab")
    assert a["step"] == b["step"] == 5
    for key in ("key", "position", "opt_state"):
        for x, y in zip(jax.tree.leaves(a[key]), jax.tree.leaves(b[key]), strict=True):
            np.testing.assert_array_equal(x, y)
    assert _strip(tmp_path / "a") == _strip(tmp_path / "b")
    np.testing.assert_array_equal(
        np.load(tmp_path / "a" / "predictions.npy"), np.load(tmp_path / "b" / "predictions.npy")
    )


def test_deep_ensemble_members_differ_and_their_average_is_reported(tmp_path, problem):
    from ppl_bnn.driver import run_ensemble, run_sgd
    from ppl_bnn.evaluation.predictive import evaluate
    from ppl_bnn.evaluation.reference import run_predictions

    kw = {**TINY, "num_epochs": 3, "eval_freq": 3, "save_freq": 3}
    summary = run_ensemble(
        EnsembleConfig(dir=str(tmp_path / "ens"), ensemble_size=3, **kw),
        problem=problem,
        progress=False,
    )
    assert summary["method"] == "ensemble" and summary["ensemble_size"] == 3
    members = run_predictions(tmp_path / "ens")  # the draw: (members, n_test, classes)
    assert members.shape == (3, 360, 10)
    for i in range(3):
        for j in range(i):
            assert np.abs(members[i] - members[j]).max() > 1e-3
    average = members.mean(0)
    np.testing.assert_allclose(
        np.load(tmp_path / "ens" / "predictions.npy"), average, rtol=1e-5, atol=1e-6
    )
    want = evaluate(average, problem.dataset, "test")
    for k, v in want.items():
        assert summary["final"][f"test/ens_{k}"] == pytest.approx(v, rel=1e-5, abs=1e-7)
    # member i is the SGD run seeded with seed + i (up to the vectorised arithmetic)
    single = run_sgd(
        SGDConfig(dir=str(tmp_path / "one"), **{**kw, "seed": TINY["seed"] + 2}),
        problem=problem,
        progress=False,
    )
    assert single["ensemble_size"] == 1
    np.testing.assert_allclose(run_predictions(tmp_path / "one")[0], members[2], atol=2e-4)


def test_bad_settings_fail_before_writing(tmp_path, problem):
    from ppl_bnn.driver import run_sgd

    for bad in (
        {"num_epochs": 0},
        {"batch_size": 1000},
        {"init_step_size": -1.0},
        {"momentum_decay": 1.0},
    ):
        with pytest.raises(ValueError):
            run_sgd(SGDConfig(dir=str(tmp_path / "x"), **{**TINY, **bad}), problem=problem)
        assert not (tmp_path / "x").exists()


def test_optimizer_rejects_bad_momentum():
    with pytest.raises(ValueError, match="momentum_decay"):
        optimize.optimizer(optax.constant_schedule(1.0), 1.5)


def test_blackjax_grad_estimator_is_the_gradient_of_the_estimate(problem):
    """SG-MCMC's BlackJAX estimator (per-example, vmapped) and SGD's (whole minibatch)
    estimate the same thing."""
    ld = problem.logdensity
    position = ld.init(jax.random.key(3))
    mb = minibatch.gather(problem.train.x, problem.train.y, jnp.arange(40))
    a = minibatch.grad_estimator(ld, 160)(position, mb)
    b = jax.grad(minibatch.logdensity_estimator(ld, 160))(position, mb)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-4)
