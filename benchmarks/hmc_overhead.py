"""Time per leapfrog step: a whole ``ppl-bnn`` HMC run vs a hand-written JAX loop vs NumPyro.

Same Flax MLP (64-100-100-10), same 2000 examples, same Gaussian prior, same fixed step
size and number of leapfrog steps L. The ppl_bnn figure covers everything a run does per
iteration (predictions on train and test data, online averaging, metrics, draws, metrics
file, TensorBoard, atomic checkpoint): the sum of the run's own ``iteration_wall``
(everything between two consecutive console rows) over iterations 3..K, so start-up and
compilation are left out. The hand-written loop and NumPyro are timed after a first,
compiling call (NumPyro reuses its compiled sampler on a second ``MCMC.run``). Repeats
are interleaved and the best of each is kept. Prints one JSON line per L.

    python benchmarks/hmc_overhead.py [--steps 100 1000] [--iterations 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import tempfile
import time

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.contrib.module import random_flax_module  # noqa: E402

from ppl_bnn.config import HMCConfig  # noqa: E402
from ppl_bnn.driver import run_hmc  # noqa: E402
from ppl_bnn.models import MLP, register  # noqa: E402

N, D, C, WD, EPS = 2000, 64, 10, 1.0, 1e-4


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.normal(size=(D, C))
    y = np.argmax(x @ w + rng.gumbel(size=(N, C)), -1).astype(np.int32)
    return x, y


def net():
    return MLP(hidden=(100, 100), num_outputs=C)


def time_ppl_bnn(path_npz, L, k, workdir):
    """Seconds per leapfrog step over iterations 3..k of one whole run."""
    run_dir = os.path.join(workdir, f"run_{L}_{k}")
    cfg = HMCConfig(
        dir=run_dir,
        dataset_name=path_npz,
        model_name="bench_mlp",
        weight_decay=WD,
        step_size=EPS,
        trajectory_len=EPS * L,
        num_iterations=k,
        max_num_leapfrog_steps=L,
        num_param_draws=16,
        tabulate_freq=10**6,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        run_hmc(cfg, argv=["bench"], progress=False)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        walls = [json.loads(line)["iteration_wall"] for line in f][2:]
    shutil.rmtree(run_dir)
    return sum(walls) / (len(walls) * L)


def time_hand(x, y, L, k):
    """A hand-written HMC: cached gradient, leapfrog in fori_loop, MH, one jit per iteration."""
    module = net()
    params = module.init(jax.random.key(0), x[:1])["params"]
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def logdensity(p):
        logits = module.apply({"params": p}, xj)
        ll = jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), yj[:, None], 1))
        sq = sum(jnp.sum(v**2) for v in jax.tree.leaves(p))
        n = sum(v.size for v in jax.tree.leaves(p))
        return ll - 0.5 * WD * sq - 0.5 * n * jnp.log(2 * jnp.pi / WD)

    vg = jax.value_and_grad(logdensity)

    @jax.jit
    def iteration(key, p, lp, g):
        k1, k2 = jax.random.split(key)
        leaves, tree = jax.tree.flatten(p)
        mom = jax.tree.unflatten(
            tree,
            [
                jax.random.normal(kk, v.shape)
                for kk, v in zip(jax.random.split(k1, len(leaves)), leaves, strict=True)
            ],
        )
        kin = lambda m: 0.5 * sum(jnp.sum(v**2) for v in jax.tree.leaves(m))

        def body(_, s):
            q, m, _, gq = s
            m = jax.tree.map(lambda a, b: a + 0.5 * EPS * b, m, gq)
            q = jax.tree.map(lambda a, b: a + EPS * b, q, m)
            lq, gq = vg(q)
            m = jax.tree.map(lambda a, b: a + 0.5 * EPS * b, m, gq)
            return q, m, lq, gq

        q, m, lq, gq = jax.lax.fori_loop(0, L, body, (p, mom, lp, g))
        log_accept = lq - kin(m) - (lp - kin(mom))
        accept = jnp.log(jax.random.uniform(k2)) < log_accept
        pick = lambda a, b: jax.tree.map(lambda u, v: jnp.where(accept, u, v), a, b)
        return pick(q, p), jnp.where(accept, lq, lp), pick(gq, g)

    def run(k):
        key = jax.random.key(1)
        lp, g = vg(params)
        p = params
        for _ in range(k):
            key, sub = jax.random.split(key)
            p, lp, g = iteration(sub, p, lp, g)
            jax.block_until_ready(lp)

    run(1)  # compile
    t0 = time.perf_counter()
    run(k)
    return (time.perf_counter() - t0) / (k * L)


def time_numpyro(x, y, L, k):
    def model(x, y=None):
        f = random_flax_module("net", net(), dist.Normal(0, WD**-0.5), input_shape=(1, D))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Categorical(logits=f(x)), obs=y)

    # trajectory_length=None: otherwise NumPyro overrides the step count (2*pi/L pitfall)
    kernel = numpyro.infer.HMC(
        model,
        step_size=EPS,
        num_steps=L,
        trajectory_length=None,
        adapt_step_size=False,
        adapt_mass_matrix=False,
    )
    # the kernel's own init/sample, one jitted call per iteration (as MCMC would run it,
    # without MCMC's collection loop, so that compilation is easy to leave out)
    state = kernel.init(jax.random.key(0), 0, None, model_args=(x, y), model_kwargs={})
    step = jax.jit(lambda s: kernel.sample(s, (x, y), {}))
    state = jax.block_until_ready(step(state))  # compiles
    t0 = time.perf_counter()
    for _ in range(k):
        state = jax.block_until_ready(step(state))
    return (time.perf_counter() - t0) / (k * L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    register("bench_mlp", lambda n: MLP(hidden=(100, 100), num_outputs=n))
    x, y = data()
    work = tempfile.mkdtemp(prefix="hmc_overhead_")
    path = os.path.join(work, "bench.npz")
    np.savez(path, x_train=x, y_train=y, x_test=x[:500], y_test=y[:500])
    for L in args.steps:
        per_step = {"ppl_bnn": [], "hand_written": [], "numpyro": []}
        for _ in range(args.repeats):  # interleaved, so load on the machine hits all alike
            k = args.iterations
            per_step["ppl_bnn"].append(time_ppl_bnn(path, L, k, work))
            per_step["hand_written"].append(time_hand(x, y, L, k - 2))
            per_step["numpyro"].append(time_numpyro(x, y, L, k - 2))
        best = {k: min(v) for k, v in per_step.items()}
        print(
            json.dumps(
                {
                    "num_leapfrog_steps": L,
                    "device": jax.devices()[0].device_kind,
                    **{f"sec_per_step_{k}": v for k, v in best.items()},
                    "ratio_ppl_bnn_vs_hand": best["ppl_bnn"] / best["hand_written"],
                    "ratio_numpyro_vs_hand": best["numpyro"] / best["hand_written"],
                    "ratio_ppl_bnn_vs_numpyro": best["ppl_bnn"] / best["numpyro"],
                }
            ),
            flush=True,
        )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
