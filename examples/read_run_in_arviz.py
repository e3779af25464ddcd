"""Read a run directory in ArviZ: R-hat, ESS and a summary, in function and parameter space.

Runs a short 4-chain ``ppl-bnn hmc`` on the embedded digits data into a run directory
(or reads the one given), then opens it as an ArviZ ``DataTree``: the test predictive
probabilities ``test_prob (chain, draw, test_point, class)`` in the ``predictions`` group
and the model's sample sites (``net.Dense_0.kernel``, ...) in the ``posterior`` group.

    python examples/read_run_in_arviz.py [RUN_DIR]      # a few minutes on a CPU
    PPL_BNN_EXAMPLE_TINY=1 python examples/read_run_in_arviz.py   # seconds (tests)
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import arviz as az

from ppl_bnn.cli import main as ppl_bnn_cli
from ppl_bnn.diagnostics import diagnose_runs, runs_to_datatree

TINY = bool(os.environ.get("PPL_BNN_EXAMPLE_TINY"))


def make_run(run_dir: Path) -> None:
    size = (
        ["--num_iterations=6", "--num_burn_in_iterations=1", "--subset_train_to=64"]
        if TINY
        else ["--num_iterations=60", "--num_burn_in_iterations=10"]
    )
    code = ppl_bnn_cli(
        [
            "hmc",
            f"--dir={run_dir}",
            "--dataset_name=digits",
            "--weight_decay=5",
            "--step_size=3e-4",
            "--trajectory_len=0.03" if not TINY else "--trajectory_len=1.5e-3",
            "--num_chains=4",
            "--no_progress",
            *size,
        ]
    )
    if code:
        raise SystemExit(code)


def main(run_dir: str | None = None):
    if run_dir is None:
        run_dir = str(Path(tempfile.mkdtemp(prefix="ppl_bnn_example_")) / "run")
        make_run(Path(run_dir))
    tree = runs_to_datatree([run_dir])  # several runs' chains merge: runs_to_datatree([a, b])
    print(tree)
    # function space: R-hat of every test point's class probabilities (predictions group)
    rhat = az.rhat(tree, group="predictions", var_names=["test_prob"])
    print("worst function-space R-hat:", float(rhat["test_prob"].max()))
    # parameter space: the model's own sample sites (posterior group), e.g. the last bias
    site = sorted(tree["posterior"].data_vars)[0]
    print(az.summary(tree, var_names=[site]).head())
    # the same, as ppl-bnn diagnose writes it (diagnostics.nc reopens with az.from_netcdf)
    report = diagnose_runs([run_dir])
    print(report)
    return tree, report


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
