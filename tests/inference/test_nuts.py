"""NUTS kernel: right moments on a scaled Gaussian, info consistent with the tree,
traced step size and mass matrix (no recompilation), dense mass matrices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from mcmc_helpers import check_against

from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import make_mesh, shard_batch
from ppl_bnn.inference.hmc import build_init
from ppl_bnn.inference.nuts import build_kernel

SCALES = np.array([0.1, 1.0, 10.0])


def _gaussian(x, y=None):
    z = numpyro.sample("z", dist.Normal(1.0, jnp.asarray(SCALES)).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(0.0 * z[0], 1.0), obs=y)


class Counting(LogDensity):
    traces = 0

    def __call__(self, position, batch):
        type(self).traces += 1
        return super().__call__(position, batch)


def _setup(cls=LogDensity):
    x, y = np.zeros((4, 1)), np.zeros(4)
    mesh = make_mesh()
    return cls(_gaussian, mesh, (x[:2], y[:2])), shard_batch(mesh, x, y)


def _run(kernel, state, batch, eps, imm, n, seed):
    # strong float32, as the warmup's outputs are (a weakly typed array would retrace once)
    eps, imm = jnp.asarray(eps, jnp.float32), jnp.asarray(imm, jnp.float32)
    key = jax.random.key(seed)
    draws, infos = [], []
    for _ in range(n):
        key, k = jax.random.split(key)
        state, info = kernel(jax.random.split(k, eps.shape[0]), state, batch, eps, imm)
        draws.append(np.asarray(state.position["z"]))
        infos.append(jax.device_get(info))
    return state, np.stack(draws, 1), infos


@pytest.mark.parametrize("seed", [0, 1])
def test_nuts_samples_a_scaled_gaussian(seed):
    """With the inverse mass matrix at the variances, NUTS draws match N(1, SCALES^2)."""
    ld, batch = _setup()
    chains = 4
    state = build_init(ld)({"z": jnp.ones((chains, 3))}, batch)
    kernel = build_kernel(ld)
    eps = jnp.full((chains,), 0.7)
    imm = jnp.broadcast_to(jnp.asarray(SCALES**2, jnp.float32), (chains, 3))
    _, draws, infos = _run(kernel, state, batch, eps, imm, 600, seed)
    check_against(draws, np.ones(3), SCALES, min_ess=400, max_rhat=1.02, sd_ratio=(0.85, 1.15))
    n = np.stack([i.num_integration_steps for i in infos])
    depth = np.stack([i.tree_depth for i in infos])
    assert np.all(n <= 2**depth - 1) and np.all(n >= 2 ** (depth - 1))
    rate = np.stack([i.acceptance_rate for i in infos])
    assert 0.6 < rate.mean() <= 1.0
    for f in ("is_divergent", "energy", "logdensity", "is_accepted", "is_turning"):
        assert np.stack([getattr(i, f) for i in infos]).shape == (600, chains)


def test_depth_limit_and_traced_parameters_do_not_recompile():
    """A tiny step size hits ``max_num_doublings`` (``2**k - 1`` steps, not turning);
    step size and mass matrix are traced: new values do not retrace the kernel."""
    ld, batch = _setup(Counting)
    chains = 2
    state = build_init(ld)({"z": jnp.ones((chains, 3))}, batch)
    kernel = build_kernel(ld, max_num_doublings=4)
    imm = jnp.ones((chains, 3))
    state, _, infos = _run(kernel, state, batch, jnp.full((chains,), 1e-4), imm, 2, 0)
    traced = Counting.traces
    assert np.all(infos[-1].num_integration_steps == 15)
    assert np.all(infos[-1].tree_depth == 4)
    assert not np.any(infos[-1].is_turning)
    for eps, scale in [(0.3, 1.0), (0.05, 2.0), (0.9, 0.5)]:
        imm2 = imm * scale
        state, _, _ = _run(kernel, state, batch, jnp.asarray([eps, eps / 2]), imm2, 2, 1)
    assert Counting.traces == traced


def test_dense_inverse_mass_matrix():
    ld, batch = _setup()
    chains = 4
    state = build_init(ld)({"z": jnp.ones((chains, 3))}, batch)
    kernel = build_kernel(ld)
    imm = jnp.broadcast_to(jnp.diag(jnp.asarray(SCALES**2, jnp.float32)), (chains, 3, 3))
    _, draws, _ = _run(kernel, state, batch, jnp.full((chains,), 0.7), imm, 400, 2)
    check_against(draws, np.ones(3), SCALES, min_ess=250, max_rhat=1.03, sd_ratio=(0.8, 1.2))
