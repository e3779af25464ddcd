"""Time per leapfrog step of CIFAR-10-sized full-batch HMC (ResNet-20-FRN-swish).

50,000 random 32x32x3 images with 10 random labels (the CIFAR-10 training set's size;
the values do not change the cost), the paper's ``resnet20_frn_swish`` BNN with a Gaussian
prior, the likelihood summed over the full batch in chunks of ``--microbatch_size``
examples per device (activations rematerialised), sharded over every visible device. It
times, after compiling:

* ``grad``: one full-batch ``value_and_grad`` of the log density;
* ``iteration``: one whole HMC iteration (``ppl_bnn.inference.hmc.build_kernel``: momentum,
  ``L`` leapfrog steps, the float32-accurate accept test) at ``L = 1`` and at
  ``L = --num_leapfrog``; ``leapfrog_step_s = (T(L) - T(1)) / (L - 1)``, the cost of one
  more leapfrog step (one gradient), is the figure to multiply by the ~70,000 steps of a
  paper-scale CIFAR-10 iteration.

Prints one JSON line per measurement (and the device's peak memory where JAX reports it).
Runs with only jax, numpyro, blackjax, flax and optax installed, from a checkout of the
repository (installed or not)::

    python benchmarks/gpu_leapfrog.py [--num_examples 50000] [--microbatch_size 5000] \\
        [--num_leapfrog 10] [--repeats 2]

Tiny CPU smoke run: ``python benchmarks/gpu_leapfrog.py --num_examples=64
--microbatch_size=32 --num_leapfrog=2 --model_name=mlp_classification``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path


def _import_repo() -> None:
    """Make ``ppl_bnn`` importable from a plain checkout (``models/`` is ``ppl_bnn.models``)."""
    if importlib.util.find_spec("ppl_bnn") is not None:
        return
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "ppl_bnn",
        root / "ppl_bnn" / "__init__.py",
        submodule_search_locations=[str(root / "ppl_bnn"), str(root)],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["ppl_bnn"] = module
    spec.loader.exec_module(module)


def _emit(**record) -> None:
    print(json.dumps({"benchmark": "gpu_leapfrog", **record}), flush=True)


def _timed(fn, *args):
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0


def _peak_memory_gb(devices) -> float | None:
    stats = [d.memory_stats() or {} for d in devices]
    peaks = [s.get("peak_bytes_in_use") for s in stats if s.get("peak_bytes_in_use")]
    return round(max(peaks) / 2**30, 2) if peaks else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_examples", type=int, default=50000)
    parser.add_argument(
        "--microbatch_size",
        type=int,
        default=5000,
        help="examples per chunk per device (0: no chunking)",
    )
    parser.add_argument("--num_leapfrog", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model_name", default="resnet20_frn_swish")
    parser.add_argument("--weight_decay", type=float, default=5.0)
    parser.add_argument("--step_size", type=float, default=1e-5)
    parser.add_argument("--use_float64", action="store_true")
    args = parser.parse_args(argv)
    if args.num_leapfrog < 2:
        parser.error("--num_leapfrog must be at least 2")

    import jax

    if args.use_float64:
        jax.config.update("jax_enable_x64", True)
    _import_repo()
    import jax.numpy as jnp
    import numpy as np

    from ppl_bnn.declare import likelihoods, priors
    from ppl_bnn.declare.bnn import bnn_model
    from ppl_bnn.density.logdensity import LogDensity
    from ppl_bnn.density.sharding import make_mesh, replicate, shard_batch
    from ppl_bnn.inference.hmc import build_init, build_kernel
    from ppl_bnn.models import get_model

    n, micro = args.num_examples, args.microbatch_size or None
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    model = bnn_model(
        get_model(args.model_name, 10),
        priors.gaussian(args.weight_decay),
        likelihoods.make_likelihood("categorical"),
    )
    mesh = make_mesh()
    devices = list(mesh.devices.flat)
    per_device = -(-n // len(devices))
    if micro is not None and micro >= per_device:
        micro = None  # one chunk per device: nothing to accumulate
    ld = LogDensity(model, mesh, (x[:2], y[:2]), microbatch_size=micro)
    batch = shard_batch(mesh, x, y, multiple=micro or 1)
    del x, y
    dtype = jnp.zeros(()).dtype
    positions = jax.tree.map(lambda a: a[None], ld.init(jax.random.key(0)))
    _emit(
        event="setup",
        device=devices[0].device_kind,
        platform=devices[0].platform,
        num_devices=len(devices),
        jax=jax.__version__,
        model=args.model_name,
        num_parameters=ld.num_parameters(),
        num_examples=n,
        padded_examples=int(batch.x.shape[0]),
        microbatch_size=micro,
        dtype=str(dtype),
    )

    grad = jax.jit(jax.value_and_grad(ld))
    position = replicate(mesh, jax.tree.map(lambda a: a[0], positions))
    _, compile_s = _timed(grad, position, batch)
    times = [_timed(grad, position, batch)[1] for _ in range(args.repeats)]
    _emit(
        event="grad",
        first_call_s=round(compile_s, 3),
        grad_s=round(min(times), 4),
        peak_memory_gb=_peak_memory_gb(devices),
    )

    state, init_s = _timed(build_init(ld), replicate(mesh, positions), batch)
    kernel = build_kernel(ld)
    dim = sum(int(np.prod(s)) for s in ld.shapes.values())
    keys = jax.random.split(jax.random.key(1), 1)
    fixed = (jnp.full((1,), args.step_size, dtype), jnp.ones((1, dim), dtype))

    def iteration(steps):
        new_state, info = kernel(
            keys, state, batch, *fixed, jnp.asarray([steps]), jnp.asarray(True)
        )
        return new_state.logdensity, info.acceptance_rate

    _, first_s = _timed(iteration, 1)
    result = {}
    for steps in (1, args.num_leapfrog):
        runs = [_timed(iteration, steps) for _ in range(args.repeats)]
        (logdensity, accept), best = runs[-1][0], min(t for _, t in runs)
        result[steps] = best
        _emit(
            event="iteration",
            num_leapfrog=steps,
            iteration_s=round(best, 4),
            logdensity=float(logdensity[0]),
            accept_prob=float(accept[0]),
        )
    L = args.num_leapfrog
    step_s = (result[L] - result[1]) / (L - 1)
    _emit(
        event="summary",
        num_examples=n,
        microbatch_size=micro,
        num_devices=len(devices),
        leapfrog_step_s=round(step_s, 4),
        iteration_over_L_s=round(result[L] / L, 4),
        grad_s=round(min(times), 4),
        init_first_call_s=round(init_s, 3),
        kernel_first_call_s=round(first_s, 3),
        paper_iteration_h=round(70249 * step_s / 3600, 2),
        peak_memory_gb=_peak_memory_gb(devices),
    )


if __name__ == "__main__":
    main()
