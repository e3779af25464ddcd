"""Chunked (microbatched) == unchunked full-batch log density and gradient, per architecture."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ppl_bnn.declare import priors
from ppl_bnn.declare.bnn import bnn_model
from ppl_bnn.declare.likelihoods import make_likelihood
from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import make_mesh, shard_batch
from ppl_bnn.models import get_model


def _data(name, n, rng):
    if name == "cnn_lstm":
        # 40 tokens (9 LSTM steps) rather than 100 (24): the same network, a smaller program
        return rng.integers(0, 20000, (n, 40)).astype(np.int32), rng.integers(0, 2, n), 2
    shape = (28, 28, 1) if name == "lenet" else (32, 32, 3)
    return rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, 10, n), 10


def _value_and_grad(model, x, y, microbatch_size, position=None):
    mesh = make_mesh()
    ld = LogDensity(model, mesh, (x[:2], y[:2]), microbatch_size=microbatch_size)
    batch = shard_batch(mesh, x, y, multiple=microbatch_size or 1)
    if position is None:
        # a random point (the network initialisers would cost a long XLA compile on CPU)
        rng = np.random.default_rng(1)
        position = {k: (0.1 * rng.normal(size=s)).astype(np.float32) for k, s in ld.shapes.items()}
    value, grad = jax.jit(jax.value_and_grad(ld))(position, batch)
    return position, batch, float(value), grad


@pytest.mark.parametrize("name", ["lenet", "resnet20_frn_swish", "cnn_lstm"])
def test_chunked_equals_unchunked(name):
    rng = np.random.default_rng(0)
    x, y, classes = _data(name, 8, rng)
    y = y.astype(np.int32)
    model = bnn_model(
        get_model(name, classes),
        priors.per_parameter(priors.gaussian(5.0)),
        make_likelihood("categorical"),
        temperature=0.5,
    )
    position, _, value, grad = _value_and_grad(model, x, y, None)
    # 8 rows in chunks of 3: padded to 9, the padded row masked out, 3 scan steps
    _, batch, value_mb, grad_mb = _value_and_grad(model, x, y, 3, position)
    assert batch.x.shape[0] == 9 and batch.num_examples == 8
    assert value_mb == pytest.approx(value, rel=1e-5)
    for key in grad:
        g, g_mb = np.asarray(grad[key]), np.asarray(grad_mb[key])
        scale = max(np.abs(g).max(), 1e-6)
        np.testing.assert_allclose(g_mb, g, rtol=1e-4, atol=1e-5 * scale, err_msg=key)
