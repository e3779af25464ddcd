"""Stan's initial step-size search, run for a stack of chains in one loop."""

from __future__ import annotations

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import make_mesh, shard_batch
from ppl_bnn.inference import warmup as warmup_lib
from ppl_bnn.inference.hmc import build_init


def _problem(scale: float, seed: int = 0):
    def model(x, y=None):
        w = numpyro.sample("w", dist.Normal(0.0, 10.0).expand([x.shape[1]]).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)

    rng = np.random.default_rng(seed)
    # columns of very different scales: the posterior sds span three orders of magnitude
    x = (rng.normal(size=(50, 3)) * np.array([scale, 1.0, 1.0 / scale])).astype(np.float32)
    y = (x @ np.array([0.5, -1.0, 2.0]) + rng.normal(size=50)).astype(np.float32)
    mesh = make_mesh()
    return LogDensity(model, mesh, (x[:2], y[:2])), shard_batch(mesh, x, y)


def _one_chain_reference(logdensity, state, momentum, imm, target, initial=1.0):
    """The heuristic for one chain, as a plain Python loop."""
    metric = blackjax.mcmc.metrics.default_metric(imm)
    integrator = blackjax.mcmc.integrators.velocity_verlet(logdensity, metric.kinetic_energy)
    start = blackjax.mcmc.integrators.IntegratorState(
        state.position, momentum, state.logdensity, state.logdensity_grad
    )
    h0 = -state.logdensity + metric.kinetic_energy(momentum)

    def accept(eps):
        end = integrator(start, eps)
        p = float(
            jnp.exp(jnp.minimum(h0 - (-end.logdensity + metric.kinetic_energy(end.momentum)), 0))
        )
        return p if np.isfinite(p) else 0.0

    eps, p = initial, accept(initial)
    up, n = p > target, 0
    while (p > target) == up and n < 60:
        eps = 2 * eps if up else eps / 2
        p, n = accept(eps), n + 1
    return eps / 2 if up else eps


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_search_matches_a_per_chain_loop(scale):
    ld, batch = _problem(scale)
    chains = 4
    positions = warmup_lib.initial_positions(ld, jax.random.key(0), chains, strategy="uniform")
    state = build_init(ld)(positions, batch)
    # chains with inverse mass matrices 1e-3 .. 1e3 apart end their searches at different
    # doublings (some go up, some down): the stacked loop must stop each one on time
    imm = jnp.asarray(np.geomspace(1e-3, 1e3, chains)[:, None] * np.ones((chains, 3)), jnp.float32)
    keys = jax.random.split(jax.random.key(1), chains)
    find = warmup_lib._build_find_step_size(ld, 0.8, False)
    got = np.asarray(find(keys, state, batch, imm))
    momenta = warmup_lib.initial_momenta(keys, state.position, imm)
    for c in range(chains):
        one = jax.tree.map(lambda a, c=c: a[c], state)
        want = _one_chain_reference(
            lambda p: ld(p, batch), one, jax.tree.map(lambda a, c=c: a[c], momenta), imm[c], 0.8
        )
        np.testing.assert_allclose(got[c], want, rtol=1e-6)
    assert len(set(np.round(np.log2(got)).tolist())) > 1  # the chains did stop apart


def test_momenta_compile_once_for_runs_of_the_same_shapes():
    """The momenta's program is shared by every run (not rebuilt per log density)."""
    sizes = []
    for seed in (0, 1):
        ld, batch = _problem(1.0, seed)
        positions = warmup_lib.initial_positions(ld, jax.random.key(seed), 2)
        state = build_init(ld)(positions, batch)
        keys = jax.random.split(jax.random.key(seed), 2)
        warmup_lib._build_find_step_size(ld, 0.8, False)(keys, state, batch)
        sizes.append(warmup_lib.initial_momenta._cache_size())
    assert sizes[1] == sizes[0]
