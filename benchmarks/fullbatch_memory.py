"""Peak memory and time of one full-batch gradient against the number of examples.

For each size and for the likelihood summed at once (unchunked) and in microbatches
(``microbatch_size``, rematerialised in the backward pass), a fresh subprocess builds the
BNN (default ``resnet20_frn_swish`` on CIFAR-shaped random data, 10 classes, Gaussian
prior), compiles ``value_and_grad`` of the sharded log density ahead of time and runs it.
One JSON line per measurement:

* ``temp_mb``: XLA's compiled ``memory_analysis()`` temporary buffers (the activations
  kept for the backward pass live here); ``argument_mb``: inputs (data + parameters);
* ``peak_rss_mb``: the process's maximum resident set (``getrusage``), compile included;
  ``rss_before_run_mb``: the resident set after compiling, before the first run; their
  difference ``run_rss_increase_mb`` is what running the gradient added on top;
* ``grad_s``: the fastest of ``--repeats`` timed runs (compiled ahead, so the first run
  is not a compile).

On XLA:CPU (jax 0.12) a convolution's gradient inside a ``lax.scan`` runs 20-40x slower
than outside one (measured here: resnet20, 64 examples, a one-step scan: 34 s against
0.8 s), so chunked CNN gradients are slow on CPU; ``--run_chunked_max N`` compiles and
analyses the chunked configurations above ``N`` examples without running them.

    python benchmarks/fullbatch_memory.py [--sizes 256 512 1024 2048] \\
        [--microbatch_size 128] [--model_name resnet20_frn_swish] [--repeats 1] \\
        [--run_chunked_max 256]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

MB = 2.0**20


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def measure(
    num_examples: int,
    microbatch_size: int | None,
    model_name: str,
    repeats: int,
    image_shape=(32, 32, 3),
    num_classes: int = 10,
    run: bool = True,
) -> dict:
    """One configuration, in this process (run it in a fresh one)."""
    import jax
    import numpy as np

    from ppl_bnn.declare import likelihoods, priors
    from ppl_bnn.declare.bnn import bnn_model
    from ppl_bnn.density.logdensity import LogDensity
    from ppl_bnn.density.sharding import make_mesh, replicate, shard_batch
    from ppl_bnn.models import get_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_examples, *image_shape)).astype(np.float32)
    y = rng.integers(0, num_classes, num_examples).astype(np.int32)
    model = bnn_model(
        get_model(model_name, num_classes),
        priors.gaussian(5.0),
        likelihoods.make_likelihood("categorical"),
    )
    mesh = make_mesh()
    ld = LogDensity(model, mesh, (x[:2], y[:2]), microbatch_size=microbatch_size)
    batch = shard_batch(mesh, x, y, multiple=microbatch_size or 1)
    del x, y
    position = replicate(mesh, ld.init(jax.random.key(0)))
    t0 = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(ld)).lower(position, batch).compile()
    compile_s = time.perf_counter() - t0
    analysis = compiled.memory_analysis()
    rss_before = _rss_now_mb()
    times = []
    for _ in range(repeats if run else 0):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(position, batch))
        times.append(time.perf_counter() - t0)
    peak = _peak_rss_mb()
    return {
        "benchmark": "fullbatch_memory",
        "model": model_name,
        "num_parameters": ld.num_parameters(),
        "num_examples": num_examples,
        "microbatch_size": microbatch_size,
        "num_devices": int(mesh.devices.size),
        "device": jax.devices()[0].device_kind,
        "temp_mb": round(analysis.temp_size_in_bytes / MB, 1) if analysis else None,
        "argument_mb": round(analysis.argument_size_in_bytes / MB, 1) if analysis else None,
        "peak_rss_mb": round(peak, 1),
        "rss_before_run_mb": round(rss_before, 1),
        "run_rss_increase_mb": round(max(0.0, peak - rss_before), 1) if times else None,
        "compile_s": round(compile_s, 2),
        "grad_s": round(min(times), 4) if times else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--microbatch_size", type=int, default=128)
    parser.add_argument("--model_name", default="resnet20_frn_swish")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--run_chunked_max",
        type=int,
        default=None,
        help="only analyse (do not run) chunked configurations above this size",
    )
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per configuration")
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:  # one measurement, in this fresh process
        n, m, run = (int(v) for v in args.child.split(","))
        print(
            json.dumps(measure(n, m or None, args.model_name, args.repeats, run=bool(run))),
            flush=True,
        )
        return
    env = {**os.environ}
    env.setdefault("JAX_PLATFORMS", "cpu")
    for n in args.sizes:
        for m in (0, args.microbatch_size):
            run = not (m and args.run_chunked_max is not None and n > args.run_chunked_max)
            cmd = [
                sys.executable,
                __file__,
                f"--child={n},{m},{int(run)}",
                f"--model_name={args.model_name}",
                f"--repeats={args.repeats}",
            ]
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, env=env, timeout=args.timeout
                )
            except subprocess.TimeoutExpired:
                print(
                    json.dumps(
                        {
                            "benchmark": "fullbatch_memory",
                            "num_examples": n,
                            "microbatch_size": m or None,
                            "error": "timeout",
                        }
                    ),
                    flush=True,
                )
                continue
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(
                    json.dumps(
                        {
                            "benchmark": "fullbatch_memory",
                            "num_examples": n,
                            "microbatch_size": m or None,
                            "error": err,
                        }
                    ),
                    flush=True,
                )
                continue
            print(lines[-1], flush=True)


if __name__ == "__main__":
    main()
