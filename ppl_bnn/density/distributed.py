"""Multi-process (multi-host) runs: ``jax.distributed`` start-up and process roles.

JAX is multi-controller: every host runs the same program, each process drives its own
devices, and ``jax.devices()`` lists the devices of every process. ppl_bnn needs three
things from that model, all here:

* **start-up** (:func:`initialize`): from the ``--coordinator_address``,
  ``--num_processes`` and ``--process_id`` flags, or from the environment: JAX's own
  variables (``JAX_COORDINATOR_ADDRESS``, ``JAX_LOCAL_DEVICE_IDS``) and its cluster
  auto-detection (SLURM ``srun``, Open MPI ``mpirun``, Kubernetes, Cloud TPU). A plain
  single-process run starts nothing;
* **roles**: only the primary process (index 0) writes files (:func:`is_primary`);
* **barriers** (:func:`sync`): wait until every process reached the same point.

The mesh (``ppl_bnn.density.sharding.make_mesh``) then spans every device of every process and
each process places only its own rows of the data (``ppl_bnn.density.sharding.shard_batch``).

Example (two processes on one machine, CPU)::

    # shell 1                                           # shell 2
    ppl-bnn hmc --dir=runs/a --coordinator_address=localhost:1234 \\
        --num_processes=2 --process_id=0 ...            ... --process_id=1 ...
"""

from __future__ import annotations

import os

import jax

__all__ = [
    "check_same",
    "initialize",
    "initialize_from_config",
    "is_primary",
    "multiprocess_requested",
    "process_count",
    "sync",
]

# variables a launcher sets to the number of processes of the job
_LAUNCHER_SIZES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def _launcher_size() -> int:
    for name in _LAUNCHER_SIZES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def multiprocess_requested(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Whether the flags or the environment ask for a multi-process run.

    Yes if any flag is set, if ``JAX_COORDINATOR_ADDRESS`` is set, if
    ``PPL_BNN_DISTRIBUTED=1`` (forces JAX's cluster auto-detection, e.g. on a TPU pod), or
    if a launcher started several tasks (``SLURM_NTASKS``, ``OMPI_COMM_WORLD_SIZE`` or
    ``PMI_SIZE`` above 1). ``SLURM_NTASKS=1`` (an interactive allocation) is a plain run.
    """
    if coordinator_address is not None or process_id is not None:
        return True
    if num_processes is not None:
        return num_processes > 1
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("PPL_BNN_DISTRIBUTED") == "1":
        return True
    return _launcher_size() > 1


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: list[int] | None = None,
) -> bool:
    """Start ``jax.distributed`` if a multi-process run is asked for; return whether it is one.

    Arguments left ``None`` are filled in by JAX from its environment variables and its
    cluster auto-detection. Idempotent: a second call returns at once. Must run before
    the first JAX computation of the process (JAX's own rule; note that importing
    blackjax, hence ``ppl_bnn.driver``, already computes), otherwise ``ValueError``.
    ``ppl-bnn`` commands call it first thing. On CPU, cross-process collectives use gloo.
    """
    if jax.distributed.is_initialized():
        return True
    if not multiprocess_requested(coordinator_address, num_processes, process_id):
        return False
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address, num_processes, process_id, local_device_ids=local_device_ids
        )
    except RuntimeError as e:  # e.g. "must be called before any JAX computations"
        raise ValueError(
            f"cannot start the multi-process run: {e} (call ppl_bnn.density.distributed.initialize "
            "first thing: importing blackjax or ppl_bnn.driver already starts JAX)"
        ) from None
    return True


def initialize_from_config(cfg) -> bool:
    """:func:`initialize` from a ``CommonConfig``'s ``--coordinator_address``,
    ``--num_processes`` and ``--process_id``."""
    return initialize(
        getattr(cfg, "coordinator_address", None),
        getattr(cfg, "num_processes", None),
        getattr(cfg, "process_id", None),
    )


def process_count() -> int:
    return jax.process_count()


def is_primary() -> bool:
    """True in the process that writes files (process 0; always true in a plain run)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """A barrier across all processes (a no-op in a single-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def check_same(value: int, message: str) -> None:
    """Raise ``ValueError(message)`` unless every process passes the same integer."""
    if jax.process_count() == 1:
        return
    import numpy as np
    from jax.experimental import multihost_utils

    values = np.asarray(multihost_utils.process_allgather(np.asarray(value, np.int64)))
    if np.any(values != values.flat[0]):
        raise ValueError(f"{message} (per process: {values.ravel().tolist()})")
