"""How accurate is the Metropolis-Hastings log acceptance ratio in float32?

A BNN whose full-batch log density is ~1e5-1e7 (MLP, N synthetic examples, far from the
mode) takes one leapfrog trajectory; the log acceptance ratio ``H0 - H1`` is computed
(a) the usual way, from the difference of two float32 totals (BlackJAX's kernel alone),
(b) difference-first in float32 (ppl_bnn's default, ``precise_energy_difference``), and
(c) in float64 as the reference, from the same float32 trajectory end points. Prints one
JSON line per dataset size with both errors.

    python benchmarks/accept_precision.py [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

CHILD = r"""
import json, sys, numpy as np, jax, jax.numpy as jnp
x64 = sys.argv[2] == "64"
jax.config.update("jax_enable_x64", x64)
from ppl_bnn.declare import bnn, likelihoods, priors
from ppl_bnn.density import sharding, logdensity
from ppl_bnn.models import MLP
from ppl_bnn.inference.hmc import precise_energy_difference
from blackjax.mcmc.integrators import IntegratorState
from jax.flatten_util import ravel_pytree
n = int(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.normal(size=(n, 64)).astype(np.float32); y = rng.integers(0, 10, n).astype(np.int32)
model = bnn.bnn_model(MLP(hidden=(100, 100), num_outputs=10), priors.make_prior("gaussian", 1.0),
                      likelihoods.Categorical())
mesh = sharding.make_mesh()
ld = logdensity.LogDensity(model, mesh, (x[:2], y[:2]))
batch = sharding.shard_batch(mesh, x, y)
ends = np.load(sys.argv[3], allow_pickle=True).item()
dt = jnp.float64 if x64 else jnp.float32
cast = lambda t: jax.tree.map(lambda a: jnp.asarray(a, dt), t)
q0, q1, p0, p1 = (cast(ends[k]) for k in ("q0", "q1", "p0", "p1"))
inv_mass = jnp.ones(ravel_pytree(q0)[0].shape[0], dt)
kin = lambda p: 0.5 * jnp.sum(ravel_pytree(p)[0] ** 2)
l0, l1 = jax.jit(ld)(q0, batch), jax.jit(ld)(q1, batch)
naive = (l1 - kin(p1)) - (l0 - kin(p0))
s0, s1 = IntegratorState(q0, p0, l0, None), IntegratorState(q1, p1, l1, None)
precise = jax.jit(lambda a, b: precise_energy_difference(ld, batch, inv_mass)(a, b))(s0, s1)
print(json.dumps({"logdensity": float(l0), "naive": float(naive), "precise": float(precise)}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    args = ap.parse_args()
    import jax
    import numpy as np

    from ppl_bnn.models import MLP

    params = MLP(hidden=(100, 100), num_outputs=10).init(jax.random.key(0), np.zeros((1, 64)))[
        "params"
    ]
    rng = np.random.default_rng(1)
    to_site = lambda t: {
        "net/" + ".".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_flatten_with_path(t)[0]
    }
    q0 = {k: v * 3.0 for k, v in to_site(params).items()}  # far from the mode: huge densities
    q1 = {k: v + 1e-4 * rng.normal(size=v.shape).astype(np.float32) for k, v in q0.items()}
    p0 = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in q0.items()}
    p1 = {k: v + 1e-3 * rng.normal(size=v.shape).astype(np.float32) for k, v in p0.items()}
    path = "/tmp/accept_precision_ends.npy"
    np.save(path, {"q0": q0, "q1": q1, "p0": p0, "p1": p1}, allow_pickle=True)
    for n in args.sizes:
        out = {}
        for bits in ("32", "64"):
            r = subprocess.run(
                [sys.executable, "-c", CHILD, str(n), bits, path],
                capture_output=True,
                text=True,
                check=True,
            )
            out[bits] = json.loads(r.stdout.strip().splitlines()[-1])
        ref = out["64"]["precise"]
        print(
            json.dumps(
                {
                    "num_examples": n,
                    "log_density": out["64"]["logdensity"],
                    "log_accept_float64": ref,
                    "abs_error_naive_float32": abs(out["32"]["naive"] - ref),
                    "abs_error_precise_float32": abs(out["32"]["precise"] - ref),
                    "float64_naive_minus_precise": out["64"]["naive"] - ref,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
