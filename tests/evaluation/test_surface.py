"""``ppl-bnn surface``: the plane through three checkpoints, its grid, files and bad input."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ppl_bnn.config import SurfaceConfig
from ppl_bnn.declare.problem import build_problem
from ppl_bnn.evaluation.surface import make_plane, posterior_surface
from ppl_bnn.store.checkpoint import save_checkpoint

FLAGS = {
    "dataset_name": "digits",
    "subset_train_to": 64,
    "model_name": "logistic_regression",
    "weight_decay": 3.0,
    "temperature": 0.5,
}


@pytest.fixture(scope="module")
def problem():
    return build_problem(SurfaceConfig(dir="unused", **FLAGS))


@pytest.fixture(scope="module")
def thetas(problem):
    """theta3 = theta1 + 0.5 (theta2 - theta1) + w with w orthogonal: it sits at (0.5, 1)."""
    ld = problem.logdensity
    t1, t2 = ld.init(jax.random.key(1)), ld.init(jax.random.key(2))
    f1, unravel = ravel_pytree(t1)
    f2 = ravel_pytree(t2)[0]
    d = np.asarray(f2 - f1, np.float64)
    w = np.random.default_rng(0).normal(size=d.shape)
    w -= (w @ d) / (d @ d) * d
    f3 = np.asarray(f1, np.float64) + 0.5 * d + 0.3 * w
    return t1, t2, unravel(jax.numpy.asarray(f3, f1.dtype))


def _save(path, *positions):
    """A checkpoint like ``ppl-bnn hmc`` writes: positions stacked over chains."""
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *positions)
    save_checkpoint(path, {"step": 1, "position": stacked})
    return str(path)


def _flags(tmp_path, c1, c2, c3, **extra):
    flags = {
        **FLAGS,
        "dir": tmp_path / "out",
        "grid_size": 5,
        "limit_left": -0.5,
        "limit_right": 1.5,
        "limit_bottom": -0.5,
        "limit_top": 1.5,
        "checkpoint1": c1,
        "checkpoint2": c2,
        "checkpoint3": c3,
        "grid_batch_size": 4,
        **extra,
    }
    return [f"--{k}={v}" for k, v in flags.items()]


def test_grid_passes_through_the_checkpoints(tmp_path, cli, problem, thetas):
    t1, t2, t3 = thetas
    other = problem.logdensity.init(jax.random.key(9))
    c12 = _save(tmp_path / "a.pkl", t2, t1)  # theta1 is chain 1, theta2 chain 0
    c3 = _save(tmp_path / "b.pkl", t3)
    rc, out, err = cli("surface", *_flags(tmp_path, f"{c12}:1", c12, c3))
    assert rc == 0, err
    folder = tmp_path / "out" / "posterior_visualization"
    for name in ("log_prob", "log_likelihood", "log_prior"):
        for ext in (".pdf", ".png"):
            assert (folder / (name + ext)).stat().st_size > 1000
    f = np.load(folder / "surface_plot.npz")
    assert f["log_probs"].shape == f["log_priors"].shape == (5, 5) and f["grid"].shape == (5, 5, 2)
    np.testing.assert_allclose(f["grid"][:, 0, 0], [-0.5, 0, 0.5, 1, 1.5])
    np.testing.assert_allclose(f["checkpoint_coords"][2], [0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(f["log_probs"], f["log_likelihoods"] + f["log_priors"], rtol=1e-6)
    ld, batch = problem.logdensity, problem.train
    density = jax.jit(lambda t: (ld(t, batch), ld.log_prior(t)))
    for (i, j), theta in zip([(1, 1), (3, 1), (2, 3)], thetas, strict=True):
        log_prob, log_prior = (float(v) for v in density(theta))
        np.testing.assert_allclose(f["log_probs"][i, j], log_prob, rtol=2e-5)
        np.testing.assert_allclose(f["log_priors"][i, j], log_prior, rtol=2e-5)
    # a point off the plane is not what the plane shows
    assert abs(float(density(other)[0]) - f["log_probs"][2, 3]) > 1.0
    assert json.loads(out.splitlines()[-1])["surface"].endswith("surface_plot.npz")


def test_exact_coordinates_of_the_third_checkpoint(tmp_path, problem):
    ld = problem.logdensity
    t1, t2, t3 = (ld.init(jax.random.key(k)) for k in (4, 5, 6))
    paths = [_save(tmp_path / f"c{i}.pkl", t) for i, t in enumerate((t1, t2, t3))]
    cfg = SurfaceConfig(
        dir=str(tmp_path),
        grid_size=2,
        checkpoint1=paths[0],
        checkpoint2=paths[1],
        checkpoint3=paths[2],
        **FLAGS,
    )
    result = posterior_surface(cfg, problem=problem, write=False)
    flat = [np.asarray(ravel_pytree(t)[0], np.float64) for t in (t1, t2, t3)]
    d2, d3 = flat[1] - flat[0], flat[2] - flat[0]
    np.testing.assert_allclose(result.checkpoint_coords[2], [(d3 @ d2) / (d2 @ d2), 1.0], rtol=1e-9)
    expected = [float(jax.jit(ld)(t, problem.train)) for t in (t1, t2, t3)]
    np.testing.assert_allclose(result.checkpoint_values[:, 0], expected, rtol=2e-5)
    plane = make_plane(*flat)
    np.testing.assert_allclose(plane.point(*result.checkpoint_coords[2]), flat[2], atol=1e-9)
    assert not (tmp_path / "posterior_visualization").exists()


@pytest.mark.parametrize("problem_kind", ["missing", "corrupt", "collinear"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, cli, problem, thetas, problem_kind):
    t1, t2, _ = thetas
    c1, c2 = _save(tmp_path / "c1.pkl", t1), _save(tmp_path / "c2.pkl", t2)
    c3 = tmp_path / "c3.pkl"
    if problem_kind == "corrupt":
        _save(c3, t1)
        c3.write_bytes(c3.read_bytes()[:-10])
    elif problem_kind == "collinear":
        c3 = c2
    rc, out, err = cli("surface", *_flags(tmp_path, c1, c2, c3))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("ppl-bnn surface: error:")
    assert {"missing": "does not exist", "corrupt": "corrupt", "collinear": "line"}[
        problem_kind
    ] in err
    assert not (tmp_path / "out").exists()
