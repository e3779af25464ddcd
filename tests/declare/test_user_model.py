"""User models: loading ``file.py:function`` and models whose observed site has no plate."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

from ppl_bnn.declare.user_model import load_model
from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import make_mesh, shard_batch


def plateless(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 10.0).expand([x.shape[1]]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(x @ w, s).to_event(1), obs=y)


def plated(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 10.0).expand([x.shape[1]]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, s), obs=y)


def joint_over_rows(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    cov = jnp.eye(x.shape[0]) + 0.5
    numpyro.sample("y", dist.MultivariateNormal(x @ w, cov), obs=y)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(13, 3)).astype(np.float32)  # 13 rows: padded on any mesh
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=13)).astype(np.float32)
    return x, y


@pytest.mark.parametrize("microbatch_size", [None, 4])
def test_plateless_model_matches_numpyro_and_the_plated_model(data, microbatch_size):
    x, y = data
    mesh = make_mesh()
    batch = shard_batch(mesh, x, y, multiple=microbatch_size or 1)
    ld = LogDensity(plateless, mesh, (x[:2], y[:2]), microbatch_size=microbatch_size)
    ref = LogDensity(plated, mesh, (x[:2], y[:2]), microbatch_size=microbatch_size)
    theta = ld.init(jax.random.key(1))
    values = ld.constrain(theta)
    expected, _ = log_density(plateless, (x, y), {}, values)
    jacobian = jnp.sum(ld.transforms["s"].log_abs_det_jacobian(theta["s"], values["s"]))
    np.testing.assert_allclose(ld(theta, batch), expected + jacobian, rtol=1e-5)
    np.testing.assert_allclose(ld(theta, batch), ref(theta, batch), rtol=1e-6)
    g, g_ref = jax.grad(ld)(theta, batch), jax.grad(ref)(theta, batch)
    for k in g:
        np.testing.assert_allclose(g[k], g_ref[k], rtol=1e-5, atol=1e-5)
    pred = ld.predict(theta, batch.x)[: len(x)]
    np.testing.assert_allclose(pred[:, 0], x @ np.asarray(values["w"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pred[:, 1], float(values["s"]), rtol=1e-6)


def test_a_site_that_does_not_factorise_over_rows_is_refused_in_one_line(data):
    x, y = data
    with pytest.raises(ValueError, match=r"observed site 'y' is not one value per row") as e:
        LogDensity(joint_over_rows, make_mesh(), (x[:2], y[:2]))
    assert "\n" not in str(e.value) and "numpyro.plate" in str(e.value)


def test_load_model_from_a_file(tmp_path):
    f = tmp_path / "my_model.py"
    f.write_text(
        "import numpyro, numpyro.distributions as dist\n"
        "def model(x, y=None):\n"
        "    w = numpyro.sample('w', dist.Normal(0, 1))\n"
        "    with numpyro.plate('data', x.shape[0]):\n"
        "        numpyro.sample('y', dist.Normal(w * x[:, 0], 1.0), obs=y)\n"
        "def not_a_model(a):\n"
        "    pass\n"
    )
    model = load_model(f"{f}:model")
    assert model.__name__ == "model" and load_model(f"{f}:model") is model


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_colon.py", "expected path/to/file.py:function"),
        ("file.txt:model", "is not a .py file"),
        ("{dir}/missing.py:model", "does not exist"),
        ("{file}:absent", re.escape("has no function 'absent' (functions: model, not_a_model)")),
        ("{file}:not_a_model", re.escape("not_a_model(a) cannot be called as model(x, y)")),
        ("{broken}:model", "importing .* failed: ZeroDivisionError"),
    ],
)
def test_load_model_errors_are_one_line(tmp_path, spec, message):
    f = tmp_path / "m.py"
    f.write_text("def model(x, y=None):\n    pass\ndef not_a_model(a):\n    pass\n")
    broken = tmp_path / "broken.py"
    broken.write_text("1 / 0\n")
    spec = spec.format(dir=tmp_path, file=f, broken=broken)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as e:
        load_model(spec)
    assert "\n" not in str(e.value)


def test_flax_initialisers_are_used_whatever_the_module_name(data):
    import flax.linen as nn
    from numpyro.contrib.module import random_flax_module

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Dense(4, kernel_init=nn.initializers.constant(0.25))(x)
            return nn.Dense(1, bias_init=nn.initializers.constant(-0.5))(h)[..., 0]

    def model(x, y=None):
        f = random_flax_module("regressor", Net(), dist.Normal(0.0, 1.0), input_shape=(1, 3))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(f(x), 1.0), obs=y)

    x, y = data
    ld = LogDensity(model, make_mesh(), (x[:2], y[:2]))
    a, b = ld.init(jax.random.key(0)), ld.init(jax.random.key(1))
    np.testing.assert_array_equal(a["regressor/Dense_0.kernel"], 0.25)
    np.testing.assert_array_equal(a["regressor/Dense_1.bias"], -0.5)
    k0, k1 = a["regressor/Dense_1.kernel"], b["regressor/Dense_1.kernel"]
    assert not np.allclose(k0, k1)  # lecun-normal draws, one per key
    assert 0.05 < float(np.std(np.concatenate([k0.ravel(), k1.ravel()]))) < 1.5


def per_row_latent(x, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(mu, 1.0))
        numpyro.sample("y", dist.Normal(z, 1.0), obs=y)


def test_a_latent_site_inside_the_data_plate_is_refused_in_one_line(data):
    x, y = data
    with pytest.raises(ValueError, match=r"latent site 'z' lies inside the data plate 'data'") as e:
        LogDensity(per_row_latent, make_mesh(), (x[:2], y[:2]))
    assert "\n" not in str(e.value)
