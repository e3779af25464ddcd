"""One process of a multi-process run, for ``density/test_multiprocess.py`` (not collected
by pytest).

``python multiprocess_worker.py OUT_DIR PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES``.
With ``NUM_PROCESSES=0`` it runs the same work as a plain single-process run (the reference).
Every process runs ``ppl-bnn hmc`` for two iterations (one of burn-in) into ``OUT_DIR/run``,
then computes the log density, its gradient and predictions at a fixed position; the
primary process saves what it computed to ``OUT_DIR/result.npz``.
"""

from __future__ import annotations

import sys

FLAGS = {
    "dataset_name": "digits",
    "subset_train_to": 101,  # 101 rows over 4 devices x microbatches of 8: padding and mask
    "model_name": "mlp_regression_small",
    "microbatch_size": 8,
    "weight_decay": 1.0,
    "step_size": 1e-3,
    "trajectory_len": 1e-2,
    "num_iterations": 2,
    "num_burn_in_iterations": 1,
    "num_param_draws": 4,
}


def main(out_dir: str, process_id: int, num_processes: int, port: int, local_devices: int) -> None:
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", local_devices)
    flags = {"dir": f"{out_dir}/run", **FLAGS}
    if num_processes:
        flags.update(
            coordinator_address=f"localhost:{port}",
            num_processes=num_processes,
            process_id=process_id,
        )
    # the CLI starts jax.distributed before anything imports blackjax
    from ppl_bnn.cli import main as cli

    if cli(["hmc", "--no_progress", *(f"--{k}={v}" for k, v in flags.items())]) != 0:
        raise SystemExit("ppl-bnn hmc failed")

    import numpy as np

    from ppl_bnn.config import HMCConfig
    from ppl_bnn.declare.problem import build_problem
    from ppl_bnn.density.distributed import is_primary
    from ppl_bnn.density.sharding import replicate, to_host

    problem = build_problem(HMCConfig(**flags))
    ld = problem.logdensity
    position = replicate(problem.mesh, ld.init(jax.random.key(3)))
    value, grad = jax.jit(jax.value_and_grad(ld))(position, problem.train)
    preds = jax.jit(ld.predict)(position, problem.test.x)
    result = {
        "num_devices": np.asarray(problem.mesh.devices.size),
        "num_processes": np.asarray(jax.process_count()),
        "value": to_host(value),
        "preds": to_host(preds, problem.dataset.x_test.shape[0]),
        **{f"grad/{k}": to_host(v) for k, v in grad.items()},
    }
    if is_primary():
        np.savez(f"{out_dir}/result.npz", **result)


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:6]))
