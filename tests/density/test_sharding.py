"""Sharded == unsharded: the log density and its gradient on 1, 2 and 4 fake CPU devices.

The reference is NumPyro's own ``log_density`` of the model on the unpadded data, with no
mesh, no padding and no chunking. The fake devices need a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", 4)
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer.util import log_density
    from ppl_bnn.declare import likelihoods, priors
    from ppl_bnn.declare.bnn import bnn_model
    from ppl_bnn.density.logdensity import LogDensity
    from ppl_bnn.models import get_model
    from ppl_bnn.density.sharding import make_mesh, replicate, shard_batch, to_host

    out = []
    for dtype in ("float32", "float64"):
        jax.config.update("jax_enable_x64", dtype == "float64")
        rng = np.random.default_rng(0)
        n = 37  # divides by none of 2, 4, 8, 16, 32: every sharded case pads and masks
        x = rng.normal(size=(n, 3, 2)).astype(dtype)
        y = rng.integers(0, 4, n).astype(np.int32)
        model = bnn_model(get_model("mlp_regression_small", 4), priors.gaussian(2.0),
                          likelihoods.make_likelihood("categorical"), temperature=0.7)

        def reference(position):
            return log_density(model, (jnp.asarray(x), jnp.asarray(y)), {}, position)[0]

        ld0 = LogDensity(model, make_mesh(1), (x[:2], y[:2]))
        position = ld0.init(jax.random.key(1))
        ref_value, ref_grad = jax.jit(jax.value_and_grad(reference))(position)
        for num_devices in (1, 2, 4):
            for micro in (None, 8):
                mesh = make_mesh(num_devices)
                ld = LogDensity(model, mesh, (x[:2], y[:2]), microbatch_size=micro)
                batch = shard_batch(mesh, x, y, multiple=micro or 1)
                value, grad = jax.jit(jax.value_and_grad(ld))(replicate(mesh, position), batch)
                grad_err = max(float(np.max(np.abs(to_host(grad[k]) - np.asarray(ref_grad[k]))))
                               for k in grad)
                grad_scale = max(float(np.max(np.abs(np.asarray(g)))) for g in ref_grad.values())
                out.append({
                    "dtype": dtype, "num_devices": num_devices, "microbatch": micro,
                    "value_dtype": str(value.dtype), "padded_rows": int(batch.x.shape[0]),
                    "mask_sum": float(to_host(batch.mask).sum()),
                    "shards": len(batch.x.sharding.device_set),
                    "value": float(value), "ref_value": float(ref_value),
                    "grad_err": grad_err, "grad_scale": grad_scale,
                })
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def results():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("num_devices", [1, 2, 4])
@pytest.mark.parametrize("microbatch", [None, 8])
def test_sharded_equals_unsharded(results, dtype, num_devices, microbatch):
    r = next(
        r
        for r in results
        if (r["dtype"], r["num_devices"], r["microbatch"]) == (dtype, num_devices, microbatch)
    )
    assert r["value_dtype"] == dtype
    assert r["shards"] == num_devices
    assert r["mask_sum"] == 37 and r["padded_rows"] % (num_devices * (microbatch or 1)) == 0
    assert (r["padded_rows"] > 37) == (num_devices * (microbatch or 1) > 1)
    rtol = 2e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(r["value"], r["ref_value"], rtol=rtol)
    assert r["grad_err"] <= rtol * 10 * r["grad_scale"]


def test_shard_rows_reads_only_what_it_places():
    import jax

    from ppl_bnn.density.sharding import make_mesh, process_rows, shard_rows, to_host

    mesh = make_mesh(1)
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    y = np.arange(10, dtype=np.int32)
    calls = []

    def read_rows(lo, hi):
        calls.append((lo, hi))
        return x[lo:hi], y[lo:hi]

    batch = shard_rows(mesh, 10, read_rows, multiple=4)
    assert calls == [(0, 10)] and process_rows(mesh, 12) == (0, 12)
    assert batch.num_examples == 10 and batch.x.shape == (12, 3)
    np.testing.assert_array_equal(to_host(batch.x, 10), x)
    np.testing.assert_array_equal(to_host(batch.mask), [1] * 10 + [0, 0])
    assert batch.x.dtype == jax.numpy.zeros(()).dtype
    with pytest.raises(ValueError, match="returned 9 rows"):
        shard_rows(mesh, 10, lambda lo, hi: (x[lo : hi - 1], y[lo : hi - 1]))
