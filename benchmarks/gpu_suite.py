"""The GPU figures: chain scaling, MNIST-160, roofline, precision; one JSON line each.

Figures (``--only`` picks some, comma separated):

* ``chains``: draws per second of 1, 2, 4, 8, 16, 32 vectorised chains of the
  64-100-100-10 MLP on 2,000 examples (full-batch HMC, fixed step size and L, MH on,
  ``ppl_bnn.inference.hmc.build_kernel``), the speed-up over one chain, and where it
  saturates (the first chain count after which doubling gains less than 1.2x).
* ``mnist160``: the original README's first command (``run_hmc.py`` MNIST-160: 100
  iterations, L = 1.5 / 3e-5 = 50,000 leapfrog steps, 10 burn-in) through ``ppl-bnn hmc``
  on MNIST-shaped random data (60,000 x 28 x 28 x 1 training images of which the first
  160 are kept, 10,000 test images), end to end in a fresh process: wall time including
  start-up, compilation and every file written.
* ``roofline``: FLOPs and bytes moved per full-batch gradient of the log density, from
  XLA's cost analysis (``jax.jit(...).lower(...).compile().cost_analysis()``) of an
  unchunked gradient over one chunk, scaled to the dataset (a chunked gradient's
  ``lax.scan`` body would be counted once, not once per chunk), for ``resnet20_frn_swish``
  on 50,000 CIFAR-shaped images and ``cnn_lstm`` on 20,000 reviews; the chip's peak
  FLOP/s (float32 and TF32 tensor cores) and memory bandwidth from ``PEAKS`` (keyed by
  ``jax.devices()[0].device_kind``); the lower bound ``max(flops / peak, bytes /
  bandwidth)``; and the measured full-batch gradient (one leapfrog step) in chunks of
  ``--microbatch_size``.
* ``precision``: ``jax_default_matmul_precision`` ``tensorfloat32`` against ``highest``:
  the energy error of a trajectory (H at both ends evaluated accurately: the log density
  difference per example at ``highest`` precision, the kinetic difference as
  ``0.5 (p0 - p1)(p0 + p1)``), the acceptance rate of the ppl_bnn kernel (MH with the
  log density at the precision under test) and the time per leapfrog step, for the MLP and
  ``resnet20_frn_swish`` on 5,000 images.

Every line carries ``figure``, ``device``, ``jax`` and ``command``. Usage::

    python benchmarks/gpu_suite.py                      # everything, one NVIDIA GPU
    python benchmarks/gpu_suite.py --only chains,precision
    python benchmarks/gpu_suite.py --tiny               # seconds on a CPU (tests run this)

Runs from a checkout of the repository (installed or not). Expected cost on one recent
GPU (estimates, not yet measured): ``chains`` about a minute, ``mnist160`` up to five
minutes (five million leapfrog steps), ``roofline`` and ``precision`` a few minutes each,
mostly compilation; with a short device budget run ``--only chains,roofline,precision``
first and ``--only mnist160`` second. A figure that fails prints an ``error`` line and
the others still run (exit code 1).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("chains", "mnist160", "roofline", "precision")

# Dense peaks from NVIDIA's data sheets (no sparsity): float32 on CUDA cores, TF32 and
# bfloat16 on tensor cores (FLOP/s), and memory bandwidth (bytes/s). The first entry whose
# key occurs in the device kind wins, so longer names come first.
PEAKS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "bandwidth": 4.8e12}),
    ("H100 PCIe", {"fp32": 51e12, "tf32": 378e12, "bf16": 756e12, "bandwidth": 2.0e12}),
    ("H100", {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "bandwidth": 3.35e12}),
    ("A100-SXM4-40GB", {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "bandwidth": 1.555e12}),
    ("A100", {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "bandwidth": 2.039e12}),
    ("L40S", {"fp32": 91.6e12, "tf32": 183e12, "bf16": 362e12, "bandwidth": 0.864e12}),
    ("L4", {"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12, "bandwidth": 0.3e12}),
    ("A10", {"fp32": 31.2e12, "tf32": 62.5e12, "bf16": 125e12, "bandwidth": 0.6e12}),
    ("V100", {"fp32": 15.7e12, "tf32": 15.7e12, "bf16": 15.7e12, "bandwidth": 0.9e12}),
    ("T4", {"fp32": 8.1e12, "tf32": 8.1e12, "bf16": 8.1e12, "bandwidth": 0.32e12}),
]


def peaks_for(device_kind: str) -> dict[str, float] | None:
    """The ``PEAKS`` entry of a device kind (``None`` for a chip not in the table)."""
    for key, peak in PEAKS:
        if key.lower() in device_kind.lower():
            return peak
    return None


def _import_repo() -> None:
    """Make ``ppl_bnn`` importable from a plain checkout (``models/`` is ``ppl_bnn.models``)."""
    if importlib.util.find_spec("ppl_bnn") is not None:
        return
    spec = importlib.util.spec_from_file_location(
        "ppl_bnn",
        ROOT / "ppl_bnn" / "__init__.py",
        submodule_search_locations=[str(ROOT / "ppl_bnn"), str(ROOT)],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["ppl_bnn"] = module
    spec.loader.exec_module(module)


class Emitter:
    def __init__(self, command: str, out: str | None):
        import jax

        self.common = {
            "device": jax.devices()[0].device_kind,
            "platform": jax.devices()[0].platform,
            "jax": jax.__version__,
            "command": command,
        }
        self.out = out

    def __call__(self, figure: str, **record) -> None:
        line = json.dumps({"figure": figure, **record, **self.common})
        print(line, flush=True)
        if self.out:
            with open(self.out, "a") as f:
                f.write(line + "\n")


def _block(tree):
    import jax

    return jax.block_until_ready(tree)


def _best_time(fn, *args, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _block(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def _classification_problem(model_name: str, x, y, num_classes: int, weight_decay: float):
    from ppl_bnn.declare import likelihoods, priors
    from ppl_bnn.declare.bnn import bnn_model
    from ppl_bnn.models import MLP, get_model

    if model_name == "mlp_64_100_100_10":
        net = MLP(hidden=(100, 100), num_outputs=num_classes)
    else:
        net = get_model(model_name, num_classes)
    return bnn_model(net, priors.gaussian(weight_decay), likelihoods.make_likelihood("categorical"))


def _mlp_data(n: int, d: int = 64, c: int = 10, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, c))
    y = np.argmax(x @ w + rng.gumbel(size=(n, c)), -1).astype(np.int32)
    return x, y


def _data(kind: str, n: int, seed: int = 0):
    """Random inputs of the paper's shapes: CIFAR images, IMDB token ids or MLP features."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if kind == "images":
        return (
            rng.normal(size=(n, 32, 32, 3)).astype(np.float32),
            rng.integers(0, 10, n).astype(np.int32),
            10,
        )
    if kind == "tokens":
        return (
            rng.integers(0, 20000, (n, 100)).astype(np.int32),
            rng.integers(0, 2, n).astype(np.int32),
            2,
        )
    x, y = _mlp_data(n)
    return x, y, 10


class _Chains:
    """The MLP's log density, a batch and stacked initial states for up to C chains."""

    def __init__(self, n: int, weight_decay: float = 1.0, microbatch_size=None):
        import jax

        from ppl_bnn.density.logdensity import LogDensity
        from ppl_bnn.density.sharding import make_mesh, shard_batch
        from ppl_bnn.inference.hmc import build_init, build_kernel

        x, y = _mlp_data(n)
        model = _classification_problem("mlp_64_100_100_10", x, y, 10, weight_decay)
        self.mesh = make_mesh()
        self.ld = LogDensity(model, self.mesh, (x[:2], y[:2]), microbatch_size=microbatch_size)
        self.batch = shard_batch(self.mesh, x, y)
        self.init = build_init(self.ld)
        self.kernel = build_kernel(self.ld)
        self.dim = self.ld.num_parameters()
        self.jax = jax

    def states(self, num_chains: int, seed: int = 0):
        import jax

        from ppl_bnn.density.sharding import replicate

        keys = jax.random.split(jax.random.key(seed), num_chains)
        positions = [self.ld.init(k) for k in keys]
        stacked = jax.tree.map(lambda *a: jax.numpy.stack(a), *positions)
        return self.init(replicate(self.mesh, stacked), self.batch)

    def iterate(self, state, key, num_chains: int, step_size: float, num_steps: int):
        import jax
        import jax.numpy as jnp

        dtype = jnp.zeros(()).dtype
        keys = jax.random.split(key, num_chains)
        return self.kernel(
            keys,
            state,
            self.batch,
            jnp.full((num_chains,), step_size, dtype),
            jnp.ones((num_chains, self.dim), dtype),
            jnp.full((num_chains,), num_steps),
            jnp.asarray(True),
        )


def figure_chains(emit, args) -> None:
    import jax

    bench = _Chains(args.chains_examples)
    rates = {}
    for c in args.chain_counts:
        state = bench.states(c)
        key = jax.random.key(1)
        for warm in (key, jax.random.fold_in(key, 10**6)):  # compiles everything timed below
            state, _ = _block(bench.iterate(state, warm, c, args.mlp_step_size, args.chains_L))
        t0 = time.perf_counter()
        accept = []
        for i in range(args.chains_iterations):
            state, info = bench.iterate(
                state, jax.random.fold_in(key, i), c, args.mlp_step_size, args.chains_L
            )
            accept.append(info.acceptance_rate)
        _block(state)
        wall = time.perf_counter() - t0
        rates[c] = c * args.chains_iterations / wall
        emit(
            "chains",
            num_chains=c,
            num_examples=args.chains_examples,
            num_leapfrog_steps=args.chains_L,
            iterations=args.chains_iterations,
            wall_s=round(wall, 4),
            draws_per_s=round(rates[c], 3),
            speedup_vs_1_chain=round(rates[c] / rates[args.chain_counts[0]], 3),
            mean_acceptance=round(float(jax.numpy.mean(jax.numpy.stack(accept))), 4),
        )
    counts = sorted(rates)
    saturates = next(
        (a for a, b in zip(counts, counts[1:], strict=False) if rates[b] < 1.2 * rates[a]),
        None,
    )
    emit(
        "chains_summary",
        draws_per_s={str(c): round(r, 3) for c, r in rates.items()},
        speedup={str(c): round(r / rates[counts[0]], 3) for c, r in rates.items()},
        saturates_at_chains=saturates,
        target="8 chains >= 5x the draws per second of 1 chain",
        target_met=(rates.get(8, 0) >= 5 * rates[counts[0]]) if 8 in rates else None,
    )


def figure_mnist160(emit, args) -> None:
    import numpy as np

    from ppl_bnn.experiments import get_experiment

    work = Path(tempfile.mkdtemp(prefix="gpu_suite_mnist160_"))
    rng = np.random.default_rng(0)
    n_train, n_test = args.mnist_train, args.mnist_test
    data = work / "mnist_shaped.npz"
    np.savez(
        data,
        x_train=rng.normal(size=(n_train, 28, 28, 1)).astype(np.float32),
        y_train=rng.integers(0, 10, n_train).astype(np.int32),
        x_test=rng.normal(size=(n_test, 28, 28, 1)).astype(np.float32),
        y_test=rng.integers(0, 10, n_test).astype(np.int32),
    )
    argv = get_experiment("hmc_mnist_subset160").argv()
    overrides = {"--dataset_name": str(data), "--dir": str(work / "run")}
    overrides.update(args.mnist_overrides)
    argv = [a for a in argv if a.split("=")[0] not in overrides]
    argv += [f"{k}={v}" for k, v in overrides.items()] + ["--no_progress"]
    # a fresh process, as a user would start it (from a plain checkout too)
    launcher = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); import gpu_suite; "
        "gpu_suite._import_repo(); from ppl_bnn.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    command = [sys.executable, "-c", launcher, str(ROOT / "benchmarks"), *argv]
    env = dict(os.environ)
    t0 = time.perf_counter()
    if args.in_process:  # tests: skips the interpreter start-up, nothing else
        from ppl_bnn.cli import main as cli_main

        with contextlib.redirect_stdout(sys.stderr):
            code = cli_main(argv)
        proc = subprocess.CompletedProcess(command, code, "", "")
    else:
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    run_dir = work / "run"
    files = [p for p in run_dir.rglob("*") if p.is_file()] if run_dir.exists() else []
    summary = run_dir / "summary.json"
    emit(
        "mnist160",
        argv=["ppl-bnn", *argv],
        returncode=proc.returncode,
        wall_s=round(wall, 2),
        target_s=300,
        target_met=proc.returncode == 0 and wall < 300,
        files_written=len(files),
        bytes_written=sum(p.stat().st_size for p in files),
        summary=_summary_figures(summary),
        stderr_tail=proc.stderr[-2000:] if proc.returncode else None,
    )


def _summary_figures(path: Path) -> dict | None:
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    keep = ("iterations_done", "num_parameters", "mean_accept_prob", "wall_time_sampling")
    final = summary.get("final", {})
    return {
        **{k: summary.get(k) for k in keep},
        **{k: final.get(k) for k in ("test/accuracy", "test/ens_accuracy", "test/ens_nll")},
    }


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX: one dict per computation
        cost = cost[0] if cost else {}
    return dict(cost or {})


def figure_roofline(emit, args) -> None:
    import jax

    from ppl_bnn.density.logdensity import LogDensity
    from ppl_bnn.density.sharding import make_mesh, replicate, shard_batch

    kind = jax.devices()[0].device_kind
    peak = peaks_for(kind)
    mesh = make_mesh()
    num_devices = mesh.devices.size
    for spec in args.roofline:
        model_name, data_kind, n, chunk, micro = spec
        x, y, num_classes = _data(data_kind, n)
        model = _classification_problem(model_name, x, y, num_classes, args.roofline_wd)
        # cost of one unchunked gradient over `chunk` examples, scaled to n
        ld_chunk = LogDensity(model, mesh, (x[:2], y[:2]))
        position = replicate(mesh, ld_chunk.init(jax.random.key(0)))
        chunk_batch = shard_batch(mesh, x[:chunk], y[:chunk])
        grad_chunk = jax.jit(jax.value_and_grad(ld_chunk))
        compiled = grad_chunk.lower(position, chunk_batch).compile()
        cost = _cost(compiled)
        scale = n / chunk
        flops = cost.get("flops", float("nan")) * scale
        bytes_moved = cost.get("bytes accessed", float("nan")) * scale
        del chunk_batch
        # measured: the full-batch gradient in chunks of `micro` examples per device
        micro_eff = micro if micro and micro < -(-n // num_devices) else None
        ld = LogDensity(model, mesh, (x[:2], y[:2]), microbatch_size=micro_eff)
        batch = shard_batch(mesh, x, y, multiple=micro_eff or 1)
        grad = jax.jit(jax.value_and_grad(ld))
        t0 = time.perf_counter()
        _block(grad(position, batch))
        first_call = time.perf_counter() - t0
        measured = _best_time(grad, position, batch, repeats=args.repeats)
        record = {
            "model": model_name,
            "num_examples": n,
            "num_parameters": ld.num_parameters(),
            "num_devices": int(num_devices),
            "cost_chunk_examples": chunk,
            "flops_per_grad": flops,
            "bytes_per_grad": bytes_moved,
            "arithmetic_intensity": flops / bytes_moved if bytes_moved else None,
            "microbatch_size": micro_eff,
            "first_call_s": round(first_call, 3),
            "measured_grad_s": round(measured, 5),
            "achieved_flops_per_s": flops / measured,
        }
        if peak is not None:
            mem_bound = bytes_moved / (peak["bandwidth"] * num_devices)
            for name in ("fp32", "tf32"):
                compute_bound = flops / (peak[name] * num_devices)
                bound = max(compute_bound, mem_bound)
                record[f"peak_{name}_flops_per_s"] = peak[name]
                record[f"lower_bound_{name}_s"] = bound
                record[f"measured_over_bound_{name}"] = round(measured / bound, 2)
            record["peak_bandwidth_bytes_per_s"] = peak["bandwidth"]
            record["memory_bound_s"] = mem_bound
        else:
            record["peak"] = f"device kind {kind!r} not in PEAKS"
        emit("roofline", **record)


def _leapfrog_trajectory(value_grad, step_size: float, num_steps: int):
    """``(q, p) -> (q_L, p_L)``: L leapfrog steps with unit mass (jitted)."""
    import jax

    def half_kick(p, g):
        return jax.tree.map(lambda a, b: a + 0.5 * step_size * b, p, g)

    def body(_, carry):
        q, p, g = carry
        p = half_kick(p, g)
        q = jax.tree.map(lambda a, b: a + step_size * b, q, p)
        _, g = value_grad(q)
        return q, half_kick(p, g), g

    @jax.jit
    def trajectory(q, p):
        _, g = value_grad(q)
        q1, p1, _ = jax.lax.fori_loop(0, num_steps, body, (q, p, g))
        return q1, p1

    return trajectory


def _precision_one(emit, args, mesh, spec) -> None:
    """Energy error, acceptance and step time of one model at each matmul precision."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from ppl_bnn.density.logdensity import LogDensity
    from ppl_bnn.density.sharding import replicate, shard_batch
    from ppl_bnn.inference.hmc import build_init, build_kernel

    model_name, data_kind, n, step_size, num_steps, micro = spec
    x, y, num_classes = _data(data_kind, n)
    model = _classification_problem(model_name, x, y, num_classes, 1.0)
    micro = micro if micro and micro < n else None
    ld = LogDensity(model, mesh, (x[:2], y[:2]), microbatch_size=micro)
    batch = shard_batch(mesh, x, y, multiple=micro or 1)
    q0 = replicate(mesh, ld.init(jax.random.key(0)))
    flat0, unravel = ravel_pytree(q0)
    keys = jax.random.split(jax.random.key(2), args.precision_trajectories)
    momenta = [unravel(jax.random.normal(k, flat0.shape, flat0.dtype)) for k in keys]
    with jax.default_matmul_precision("highest"):
        difference = jax.jit(lambda new, old: ld.log_density_difference(new, old, batch))
        _block(difference(q0, q0))
    chains = args.precision_chains
    starts = [ld.init(k) for k in jax.random.split(jax.random.key(3), chains)]
    stacked = replicate(mesh, jax.tree.map(lambda *a: jnp.stack(a), *starts))
    dtype = jnp.zeros(()).dtype
    fixed = (
        jnp.full((chains,), step_size, dtype),
        jnp.ones((chains, ld.num_parameters()), dtype),
        jnp.full((chains,), num_steps),
        jnp.asarray(True),
    )

    def kinetic_change(p0, p1):
        a, b = ravel_pytree(p0)[0], ravel_pytree(p1)[0]
        return 0.5 * jnp.sum((b - a) * (b + a))

    for precision in ("tensorfloat32", "highest"):
        with jax.default_matmul_precision(precision):
            value_grad = jax.value_and_grad(lambda q: ld(q, batch))
            trajectory = _leapfrog_trajectory(value_grad, step_size, num_steps)
            same_precision = jax.jit(lambda q: ld(q, batch))
            errors, naive, times = [], [], []
            for p0 in momenta:
                _block(trajectory(q0, p0))
                t0 = time.perf_counter()
                q1, p1 = _block(trajectory(q0, p0))
                times.append(time.perf_counter() - t0)
                dk = kinetic_change(p0, p1)
                # H1 - H0 = -(log p(q1) - log p(q0)) + (K1 - K0)
                with jax.default_matmul_precision("highest"):
                    errors.append(float(-difference(q1, q0) + dk))
                naive.append(float(-(same_precision(q1) - same_precision(q0)) + dk))
            # the ppl_bnn kernel, whose MH test uses the log density at this precision
            kernel = build_kernel(ld)
            state = build_init(ld)(stacked, batch)
            accept = []
            for i in range(args.precision_iterations):
                step_keys = jax.random.split(jax.random.fold_in(jax.random.key(4), i), chains)
                state, info = kernel(step_keys, state, batch, *fixed)
                accept.append(info.acceptance_rate)
            _block(state)
        emit(
            "precision",
            model=model_name,
            num_examples=n,
            matmul_precision=precision,
            step_size=step_size,
            num_leapfrog_steps=num_steps,
            trajectories=len(errors),
            energy_error_accurate=[round(e, 6) for e in errors],
            mean_abs_energy_error=round(sum(map(abs, errors)) / len(errors), 6),
            energy_error_same_precision=[round(e, 6) for e in naive],
            mean_acceptance=round(float(jnp.mean(jnp.stack(accept))), 4),
            acceptance_iterations=args.precision_iterations,
            acceptance_chains=chains,
            leapfrog_step_s=round(min(times) / num_steps, 7),
        )


def figure_precision(emit, args) -> None:
    from ppl_bnn.density.sharding import make_mesh

    mesh = make_mesh()
    for spec in args.precision:
        _precision_one(emit, args, mesh, spec)


def _spec(text: str, types):
    parts = text.split(":")
    return tuple(t(p) if p not in ("", "none") else None for t, p in zip(types, parts, strict=True))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(FIGURES), help="figures, comma separated")
    ap.add_argument("--tiny", action="store_true", help="seconds on a CPU: checks it runs")
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--in_process", action="store_true", help="mnist160 in this process (tests)")
    ap.add_argument("--mlp_step_size", type=float, default=1e-4)
    ap.add_argument("--chain_counts", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--chains_examples", type=int, default=2000)
    ap.add_argument("--chains_L", type=int, default=100)
    ap.add_argument("--chains_iterations", type=int, default=10)
    ap.add_argument("--mnist_train", type=int, default=60000)
    ap.add_argument("--mnist_test", type=int, default=10000)
    ap.add_argument("--roofline_wd", type=float, default=5.0)
    ap.add_argument(
        "--roofline",
        nargs="+",
        default=["resnet20_frn_swish:images:50000:1000:5000", "cnn_lstm:tokens:20000:1000:5000"],
        help="MODEL:DATA:N:COST_CHUNK:MICROBATCH (DATA: images, tokens or mlp)",
    )
    ap.add_argument(
        "--precision",
        nargs="+",
        default=[
            "mlp_64_100_100_10:mlp:2000:1e-4:100:none",
            "resnet20_frn_swish:images:5000:1e-5:10:none",
        ],
        help="MODEL:DATA:N:STEP_SIZE:L:MICROBATCH",
    )
    ap.add_argument("--precision_trajectories", type=int, default=4)
    ap.add_argument("--precision_iterations", type=int, default=5)
    ap.add_argument("--precision_chains", type=int, default=4)
    args = ap.parse_args(argv)
    args.mnist_overrides = {}
    if args.tiny:
        args.repeats = 1
        args.chain_counts = [1, 2]
        args.chains_examples, args.chains_L, args.chains_iterations = 64, 3, 2
        args.mnist_train, args.mnist_test = 200, 50
        # 2 iterations of L = ceil(1.5e-4 / 3e-5) = 5 leapfrog steps, 1 of burn-in
        args.mnist_overrides = {
            "--num_iterations": "2",
            "--num_burn_in_iterations": "1",
            "--trajectory_len": "1.5e-4",
        }
        args.roofline = ["mlp_classification:images:16:8:8", "mlp_classification:tokens:16:8:8"]
        args.precision = ["mlp_64_100_100_10:mlp:64:1e-4:3:none"]
        args.precision_trajectories, args.precision_iterations, args.precision_chains = 2, 2, 2
    args.roofline = [_spec(s, (str, str, int, int, int)) for s in args.roofline]
    args.precision = [_spec(s, (str, str, int, float, int, int)) for s in args.precision]
    args.figures = [f for f in args.only.split(",") if f]
    unknown = set(args.figures) - set(FIGURES)
    if unknown:
        ap.error(f"unknown figures {sorted(unknown)}; choose from {', '.join(FIGURES)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    _import_repo()
    command = " ".join(
        ["python", "benchmarks/gpu_suite.py", *(sys.argv[1:] if argv is None else argv)]
    )
    emit = Emitter(command, args.out)
    failed = []
    for name in args.figures:
        t0 = time.perf_counter()
        try:
            globals()[f"figure_{name}"](emit, args)
        except Exception as e:  # one figure's failure must not lose the others
            failed.append(name)
            emit(name, error=f"{type(e).__name__}: {e}"[:2000])
        with contextlib.suppress(Exception):
            print(f"# {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
