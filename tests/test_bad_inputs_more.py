"""More bad inputs, and checkpoints that cross methods.

* Non-finite log densities (NaN or Inf in the data, in the model, in the step size): the
  run stops before anything is written, or, mid-run, with a one-line error naming the
  iteration and keeping the last good checkpoint; under every method.
* Any run's checkpoint initialises any method: the matrix of sources (HMC, NUTS,
  SG-MCMC, SGD, ensemble, VI) and readers (``--init_checkpoint``,
  ``--mean_init_checkpoint``, ``surface --checkpoint1``).
* Inputs that were accepted silently or ended in an internal error: complex or 1-D
  inputs, ignored prior flags, integer labels under a regression model, bad
  ``num_classes``, a model that raises, a discrete latent under NUTS, a broadcasting error
  inside a model, crafted checkpoints (deep structure, huge shapes), ``infer`` with bad
  arrays.
* A user's regression model runs from the command line (the task from ``y``'s dtype or
  ``--task``).

Command-line cases assert what ``test_bad_inputs.py`` does: exit status 2, one stderr line
``ppl-bnn COMMAND: error: ...``, the run directory unchanged or not created.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ppl_bnn.driver.checkpoint import latest_checkpoint, load_checkpoint

SMALL = [
    "--dataset_name=digits",
    "--subset_train_to=40",
    "--model_name=logistic_regression",
    "--no_progress",
]
MINI = ["--batch_size=20", "--num_epochs=1"]
SOURCES = {
    "hmc": ["hmc", *SMALL, "--step_size=1e-3", "--trajectory_len=2e-3", "--num_iterations=1"],
    "nuts": [
        "nuts",
        *SMALL,
        "--num_warmup=2",
        "--num_samples=1",
        "--num_chains=2",
        "--max_num_doublings=2",
    ],
    "sgmcmc": ["sgmcmc", *SMALL, *MINI, "--num_burnin_epochs=0", "--ensemble_freq=1"],
    "sgd": ["sgd", *SMALL, *MINI],
    "ensemble": ["ensemble", *SMALL, *MINI, "--ensemble_size=2"],
    "vi": ["vi", *SMALL, *MINI, "--vi_ensemble_size=2"],
}


def one_line_error(rc: int, err: str, command: str, pattern: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err[-2000:])
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ppl-bnn {command}: error: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# ---------------------------------------------------------- checkpoints across methods
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """The latest checkpoint of one tiny run of every method."""
    from ppl_bnn.cli import main

    base = tmp_path_factory.mktemp("sources")
    out = {}
    for seed, (name, argv) in enumerate(SOURCES.items()):  # other seeds: other positions
        assert main([argv[0], f"--dir={base / name}", *argv[1:], f"--seed={seed}"]) == 0, name
        out[name] = latest_checkpoint(base / name / "checkpoints")
    return out


@pytest.fixture(scope="module")
def small_problem():
    from ppl_bnn.config import HMCConfig
    from ppl_bnn.declare.problem import build_problem

    return build_problem(
        HMCConfig(
            dir="", dataset_name="digits", subset_train_to=40, model_name="logistic_regression"
        )
    )


@pytest.mark.parametrize("source", list(SOURCES))
def test_every_checkpoint_gives_its_positions_to_every_reader(source, checkpoints, small_problem):
    """Both readers of positions (``initial_positions``: hmc, nuts, sgmcmc, sgd, ensemble
    and vi's ``--init_checkpoint`` / ``--mean_init_checkpoint``; ``load_position``:
    ``surface``) take the positions of every method's checkpoint, whatever else it holds
    (a NUTS run's adaptation state among them)."""
    from ppl_bnn.driver.hmc import initial_positions
    from ppl_bnn.evaluation.surface import load_position

    path = checkpoints[source]
    saved = load_checkpoint(path)["position"]
    ld = small_problem.logdensity
    for chains in (1, 2, 3):
        got = initial_positions(small_problem, None, chains, str(path))
        for name in ld.latent_sites:
            want = np.asarray(saved[name])
            assert got[name].shape == (chains, *ld.shapes[name])
            expected = want[:chains] if want.shape[0] == chains else want[:1]
            np.testing.assert_array_equal(np.asarray(got[name][: len(expected)]), expected)
    one = load_position(str(path), ld)
    for name in ld.latent_sites:
        np.testing.assert_array_equal(one[name], np.asarray(saved[name])[0])


def _consumer(command: str, path: Path, out: Path, others: dict[str, Path]) -> list[str]:
    flag = {"vi": "--mean_init_checkpoint"}.get(command, "--init_checkpoint")
    if command == "surface":  # the plane through it and the HMC and SGD runs' positions
        specs = [f"--checkpoint1={path}", f"--checkpoint2={others['hmc']}:0"]
        specs.append(f"--checkpoint3={others['sgd']}")
        return ["surface", f"--dir={out}", *SMALL[:3], "--grid_size=2", *specs]
    argv = SOURCES[command]
    return [command, f"--dir={out}", *argv[1:], f"{flag}={path}"]


# every source into one other command, and a NUTS checkpoint into every command
CROSS = [
    ("hmc", "nuts"),
    ("sgmcmc", "vi"),
    ("sgd", "sgmcmc"),
    ("ensemble", "surface"),
    ("vi", "hmc"),
    *(("nuts", c) for c in ("hmc", "nuts", "sgmcmc", "vi", "surface")),
]


@pytest.mark.parametrize(("source", "command"), CROSS, ids=[f"{s}->{c}" for s, c in CROSS])
def test_a_checkpoint_of_one_method_starts_another(source, command, checkpoints, tmp_path, cli):
    rc, out, err = cli(*_consumer(command, checkpoints[source], tmp_path / "out", checkpoints))
    assert rc == 0, err[-3000:]


def test_a_nuts_checkpoint_reads_in_a_process_that_never_ran_nuts(checkpoints):
    """The adaptation state's types are known to every reader, not only after a NUTS run
    was built in the same process (here: a fresh one)."""
    import subprocess
    import sys

    code = (
        "import sys; from ppl_bnn.driver.checkpoint import load_checkpoint; "
        "print(sorted(load_checkpoint(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(checkpoints["nuts"])], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "position" in done.stdout
