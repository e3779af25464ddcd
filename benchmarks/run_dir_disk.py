"""Disk per iteration of a run directory, before (pickle per iteration) and after (bounded).

Runs ``ppl-bnn hmc`` with the settings of ``ppl-bnn compare``'s HMC (the 3,760-parameter
MLP on digits, 3 chains; fewer iterations: every iteration writes the same sizes) and
measures what each iteration adds to the run directory:

* **before** (ppl_bnn 0.1): a pickle checkpoint of the whole state kept for every
  iteration (position, gradient, mass matrix and its two accumulators, ensemble); its
  size is that of the old format (magic + pickle protocol 5 + SHA-256) of the same state;
* **after**: a posterior sample per post-burn-in iteration (positions only, float32,
  ``samples/sample_NNNNNN.npz``), the resume state bounded to two checkpoints
  (``CheckpointStore(keep=2)``) in the safe ``.npz`` format;

and both share the per-iteration draw (test predictions) and metrics line. The paper's
runs are extrapolated from the bytes per parameter: CIFAR-10 (ResNet-20-FRN, 274,042
parameters, 50 burn-in + 240 sampling iterations per chain, float32) and IMDB (CNN-LSTM,
2,700,098 parameters, 50 + 400 iterations, ``--use_float64``), 3 chains each, run as
separate single-chain runs as the paper did.

    python benchmarks/run_dir_disk.py [--iterations 12] [--dir /tmp/run_dir_disk]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ppl_bnn.store import checkpoint as ckpt
from ppl_bnn.store.checkpoint import latest_checkpoint, load_checkpoint
from ppl_bnn.store.samples import SampleStore

PAPER = {  # name: (parameters, iterations per chain, chains, bytes per float)
    "CIFAR-10 HMC (ResNet-20-FRN)": (274_042, 50 + 240, 3, 4),
    "IMDB HMC (CNN-LSTM, float64)": (2_700_098, 50 + 400, 3, 8),
}


def old_checkpoint_bytes(tree) -> int:
    """Size of ``tree`` in ppl_bnn 0.1's checkpoint format (a pickle, kept per iteration)."""
    body = pickle.dumps(tree, protocol=5)
    return len(ckpt._OLD_MAGIC) + len(body) + len(hashlib.sha256(body).digest())


def folder_bytes(folder: Path, pattern: str = "*") -> list[int]:
    return [p.stat().st_size for p in sorted(folder.glob(pattern))] if folder.is_dir() else []


def run(iterations: int, run_dir: Path) -> dict:
    from ppl_bnn.cli import main
    from ppl_bnn.experiments.compare import CompareConfig

    c = CompareConfig(dir=str(run_dir))
    argv = [
        "hmc",
        f"--dir={run_dir / 'hmc'}",
        f"--dataset_name={c.dataset_name}",
        f"--model_name={c.model_name}",
        f"--weight_decay={c.weight_decay}",
        f"--step_size={c.hmc_step_size}",
        f"--trajectory_len={c.hmc_trajectory_len}",
        f"--num_iterations={iterations}",
        "--num_burn_in_iterations=2",
        f"--num_chains={c.hmc_num_chains}",
        "--max_num_leapfrog_steps=100000",
        "--no_progress",
    ]
    assert main(argv) == 0
    hmc = run_dir / "hmc"
    state = load_checkpoint(latest_checkpoint(hmc / "checkpoints"))
    position = {k: np.asarray(v, np.float32) for k, v in state["position"].items()}
    chains = next(iter(position.values())).shape[0]
    params = sum(v[0].size for v in position.values())
    written = folder_bytes(hmc / "samples", "sample_*.npz")  # what the run itself kept
    if written:
        sample_bytes = float(np.mean(written))
    else:  # a driver that keeps no samples: the size the sample store would write
        sample = SampleStore(run_dir / "samples").append(iterations, position)
        sample_bytes = sample.stat().st_size if sample else 0
    checkpoint_sizes = folder_bytes(hmc / "checkpoints", "checkpoint_*.npz")
    draws = folder_bytes(hmc / "draws", "draw_*.npz")
    metrics = (hmc / "metrics.jsonl").stat().st_size / iterations
    shared = (np.mean(draws) if draws else 0.0) + metrics
    before_ckpt = old_checkpoint_bytes(state)
    after_ckpt = checkpoint_sizes[-1]
    return {
        "parameters": params,
        "chains": chains,
        "compare_iterations": c.hmc_num_iterations,
        "compare_burn_in": c.hmc_num_burn_in_iterations,
        "checkpoint_before_bytes": before_ckpt,
        "checkpoint_after_bytes": after_ckpt,
        "sample_bytes": sample_bytes,
        "samples_kept_by_the_run": len(written),
        "checkpoints_kept_by_the_run": len(checkpoint_sizes),
        "draw_and_metrics_bytes_per_iteration": shared,
        "before_bytes_per_iteration": before_ckpt + shared,
        "after_bytes_per_iteration": sample_bytes + shared,
        "before_bytes_per_param_per_chain_per_iteration": before_ckpt / params / chains,
        "after_bytes_per_param_per_draw": sample_bytes / params / chains,
        "checkpoint_after_bytes_per_param_per_chain": after_ckpt / params / chains,
    }


def extrapolate(m: dict) -> dict:
    """Totals of the main job and of the paper's runs, before and after."""
    n, b = m["compare_iterations"], m["compare_burn_in"]
    main_before = n * m["before_bytes_per_iteration"]
    main_after = (n - b) * m["after_bytes_per_iteration"] + 2 * m["checkpoint_after_bytes"]
    out = {"main job (compare HMC, 400 iterations, 3 chains)": (main_before, main_after)}
    per_param_before = m["before_bytes_per_param_per_chain_per_iteration"] / 4  # per float byte
    per_param_ckpt = m["checkpoint_after_bytes_per_param_per_chain"] / 4
    for name, (params, iterations, chains, width) in PAPER.items():
        before = per_param_before * width * params * iterations  # one chain
        after = width * params * (iterations - 50) + 2 * per_param_ckpt * width * params
        out[name] = (before * chains, after * chains)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--dir", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="run_dir_disk-"))
    try:
        m = run(args.iterations, folder)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    totals = extrapolate(m)
    print(json.dumps(m, indent=2))
    print(f"\n{'run (all chains)':<52} {'before':>11} {'after':>11}")
    for name, (before, after) in totals.items():
        print(f"{name:<52} {before / 1e6:>9.1f}MB {after / 1e6:>9.1f}MB")


if __name__ == "__main__":
    main()
