"""Time per epoch of SGD and SGLD through ppl_bnn vs a hand-written optax / JAX loop.

Same Flax MLP (``mlp_classification``: 64-256-256-10), same data (embedded ``digits``,
1437 training images), same minibatches of 80, same Gaussian prior, same update. Two
levels are measured, side by side, with repetitions interleaved so that load from other
processes hits both alike:

* ``kernel``: one compiled epoch (``lax.scan`` over the epoch's minibatches): ppl_bnn's
  (NumPyro model, BlackJAX gradient estimator, optax / BlackJAX kernel) vs a hand-written
  one (``net.apply``, ``log_softmax``, ``0.5 * wd * |theta|^2``, ``optax`` or
  ``theta += lr g + sqrt(2 lr) xi``);
* ``run``: a whole ``ppl-bnn sgd`` / ``sgmcmc`` run per epoch (key handling, progress,
  checkpoint and evaluation at the end), start-up and compilation removed by timing two
  runs of different lengths: ``(T(E2) - T(E1)) / (E2 - E1)``.

Prints one JSON line per measurement (``median_s`` and ``min_s`` per epoch over
``--repeats``) and one ``ratio`` line per method (ppl_bnn / hand-written: the median of
the ratios of back-to-back repetitions, which cancels slow drifts in machine load, and the
ratios of the medians and of the minima). Target: ratio <= 1.10.

    python benchmarks/minibatch_epoch_overhead.py [--repeats 15] [--e1 2 --e2 302]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from ppl_bnn.config import SGDConfig, SGLDConfig  # noqa: E402
from ppl_bnn.declare.problem import build_problem  # noqa: E402
from ppl_bnn.driver import run_sgd, run_sgmcmc  # noqa: E402
from ppl_bnn.driver.minibatch import build_epoch  # noqa: E402
from ppl_bnn.inference import optimize, sgmcmc  # noqa: E402
from ppl_bnn.inference.minibatch import epoch_indices, grad_estimator, logdensity_estimator  # noqa: E402
from ppl_bnn.inference.schedules import cosine  # noqa: E402

B, WD, LR_SGD, LR_SGLD, EPOCHS = 80, 1.0, 1e-4, 1e-5, 100


def hand_written(problem, method):
    """The loop one would write by hand: Flax, optax, no NumPyro, no BlackJAX."""
    net = problem.model.net
    x, y = jnp.asarray(problem.dataset.x_train), jnp.asarray(problem.dataset.y_train)
    n = x.shape[0]
    nb = n // B

    def log_post(params, xb, yb):
        logits = net.apply({"params": params}, xb)
        loglik = jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], 1).sum()
        prior = -0.5 * WD * sum(jnp.sum(p**2) for p in jax.tree.leaves(params))
        return n / B * loglik + prior

    grad = jax.grad(log_post)
    opt = optax.chain(optax.trace(0.9), optax.scale_by_schedule(cosine(LR_SGD, EPOCHS * nb)))

    def step(carry, inputs):
        idx, key = inputs
        params, opt_state = carry
        g = grad(params, x[idx], y[idx])
        if method == "sgd":
            updates, opt_state = opt.update(g, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None
        leaves, tree = jax.tree.flatten(params)
        noise = tree.unflatten(
            [
                jax.random.normal(k, p.shape)
                for k, p in zip(jax.random.split(key, len(leaves)), leaves, strict=True)
            ]
        )
        params = jax.tree.map(
            lambda p, g, z: p + LR_SGLD * g + jnp.sqrt(2 * LR_SGLD) * z, params, g, noise
        )
        return (params, opt_state), None

    @jax.jit
    def epoch(key, carry):
        k1, k2 = jax.random.split(key)
        index = epoch_indices(k1, n, B)
        return jax.lax.scan(step, carry, (index, jax.random.split(k2, nb)))[0]

    params = net.init(jax.random.key(0), x[:1])["params"]
    return epoch, (params, opt.init(params))


def through_ppl_bnn(problem, method):
    """The compiled epoch the ppl_bnn runners execute (one member)."""
    ld, n = problem.logdensity, problem.train.num_examples
    nb = n // B
    if method == "sgd":
        opt = optimize.optimizer(cosine(LR_SGD, EPOCHS * nb), 0.9)
        kernel = optimize.build_kernel(logdensity_estimator(ld, n), opt)
        step = lambda k, s, mb, h: kernel(s, mb)  # noqa: E731
        state = optimize.init(ld.init(jax.random.key(0)), opt)
        schedule = None
    else:
        algorithm = sgmcmc.build_algorithm(grad_estimator(ld, n), momentum_decay=0.0)
        step = lambda k, s, mb, h: (algorithm.step(k, s, mb, h), ())  # noqa: E731
        state = algorithm.init(ld.init(jax.random.key(0)))
        schedule = lambda t: LR_SGLD + 0.0 * t  # noqa: E731
    epoch = build_epoch(step, problem, B, 1, schedule=schedule, step_keys=method != "sgd")
    states = jax.tree.map(lambda a: a[None], state)
    return (lambda key, s: epoch(key[None], s, np.int32(0))[1]), states


def time_kernels(problem, method, repeats):
    fns = {
        "ppl_bnn": through_ppl_bnn(problem, method),
        "hand_written": hand_written(problem, method),
    }
    states = {k: v[1] for k, v in fns.items()}
    for name, (fn, _) in fns.items():  # compile and warm up
        states[name] = jax.block_until_ready(fn(jax.random.key(0), states[name]))
    times = {k: [] for k in fns}
    for r in range(repeats):
        for name, (fn, _) in fns.items():
            t0 = time.perf_counter()
            states[name] = jax.block_until_ready(fn(jax.random.key(r + 1), states[name]))
            times[name].append(time.perf_counter() - t0)
    return times


def time_runs(problem, method, e1, e2, workdir):
    """Seconds per epoch of a whole run, start-up and compilation removed."""
    out = []
    for epochs in (e1, e2, e1, e2):
        run_dir = os.path.join(workdir, f"{method}_{epochs}")
        shutil.rmtree(run_dir, ignore_errors=True)
        common = {
            "dir": run_dir,
            "weight_decay": WD,
            "batch_size": B,
            "num_epochs": epochs,
            "eval_freq": epochs,
            "save_freq": epochs,
            "tabulate_freq": 1000,
        }
        t0 = time.perf_counter()
        if method == "sgd":
            run_sgd(SGDConfig(**common, init_step_size=LR_SGD), problem=problem, progress=False)
        else:
            run_sgmcmc(
                SGLDConfig(
                    **common, init_step_size=LR_SGLD, num_burnin_epochs=0, ensemble_freq=10**6
                ),
                problem=problem,
                progress=False,
            )
        out.append(time.perf_counter() - t0)
    # the fastest of two runs of each length: compilation time varies by a second or so
    return (min(out[1], out[3]) - min(out[0], out[2])) / (e2 - e1)


def emit(**record):
    print(json.dumps(record), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--e1", type=int, default=2)
    parser.add_argument("--e2", type=int, default=302)
    parser.add_argument(
        "--run_repeats", type=int, default=1, help="whole-run measurements per method"
    )
    parser.add_argument("--methods", default="sgd,sgld")
    args = parser.parse_args()
    problem = build_problem(
        SGDConfig(dir="unused", weight_decay=WD, model_name="mlp_classification")
    )
    device = str(jax.devices()[0])
    workdir = tempfile.mkdtemp(prefix="ppl_bnn_bench_")
    try:
        for method in args.methods.split(","):
            times = time_kernels(problem, method, args.repeats)
            for impl, t in times.items():
                emit(
                    benchmark=f"{method}_epoch",
                    level="kernel",
                    impl=impl,
                    device=device,
                    median_s=float(np.median(t)),
                    min_s=float(np.min(t)),
                    repeats=len(t),
                )
            paired = np.asarray(times["ppl_bnn"]) / np.asarray(times["hand_written"])
            emit(
                benchmark=f"{method}_epoch",
                level="kernel",
                impl="ratio",
                median_of_paired=float(np.median(paired)),
                median=float(np.median(times["ppl_bnn"]) / np.median(times["hand_written"])),
                min=float(np.min(times["ppl_bnn"]) / np.min(times["hand_written"])),
            )
            per_epoch = [
                time_runs(problem, method, args.e1, args.e2, workdir)
                for _ in range(args.run_repeats)
            ]
            hand = float(np.median(times["hand_written"]))
            emit(
                benchmark=f"{method}_epoch",
                level="run",
                impl="ppl_bnn",
                device=device,
                median_s=float(np.median(per_epoch)),
                min_s=float(np.min(per_epoch)),
                repeats=len(per_epoch),
                ratio_to_hand_written_kernel=float(np.min(per_epoch))
                / float(np.min(times["hand_written"])),
                hand_written_median_s=hand,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
