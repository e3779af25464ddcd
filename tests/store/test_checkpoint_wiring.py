"""A run directory's resume state and samples, as ``ppl-bnn hmc`` writes them.

* the resume state is bounded: the latest two checkpoints (``CheckpointStore(keep=2)``);
* every post-burn-in iteration leaves one plain ``samples/sample_NNNNNN.npz`` (positions
  only) that numpy reads without ppl_bnn;
* a corrupt latest checkpoint is reported in one line and the run resumes from the
  previous one, ending in the uninterrupted run's state;
* orphaned ``.tmp-*`` files of a killed write are removed when the run starts again.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ppl_bnn.store.checkpoint import load_checkpoint

FLAGS = [
    "--dataset_name=digits",
    "--subset_train_to=40",
    "--model_name=logistic_regression",
    "--step_size=1e-3",
    "--trajectory_len=4e-3",
    "--num_burn_in_iterations=2",
    "--num_chains=2",
    "--seed=4",
    "--no_progress",
]


def hmc(cli, run, iterations: int):
    return cli("hmc", f"--dir={run}", f"--num_iterations={iterations}", *FLAGS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished runs of 5 and 6 iterations."""
    from ppl_bnn.cli import main

    base = tmp_path_factory.mktemp("wiring")
    for n in (5, 6):
        assert main(["hmc", f"--dir={base / str(n)}", f"--num_iterations={n}", *FLAGS]) == 0
    return base


def names(folder, pattern="*"):
    return sorted(p.name for p in folder.glob(pattern))


def test_the_resume_state_is_the_latest_two_checkpoints(runs):
    assert names(runs / "5" / "checkpoints") == [
        "checkpoint_000004.npz",
        "checkpoint_000005.npz",
    ]


def test_one_plain_sample_file_per_post_burn_in_iteration(runs):
    run = runs / "5"
    assert names(run / "samples", "sample_*") == [f"sample_{s:06d}.npz" for s in (3, 4, 5)]
    assert names(run / "samples", "stats_*") == [f"stats_{s:06d}.npz" for s in (3, 4, 5)]
    final = load_checkpoint(run / "checkpoints" / "checkpoint_000005.npz")["position"]
    with np.load(run / "samples" / "sample_000005.npz", allow_pickle=False) as f:
        for site, value in final.items():  # this model's sites are unconstrained
            np.testing.assert_allclose(f[site], value, rtol=1e-6)
            assert f[site].shape[0] == 2  # (chain, ...)


def test_corrupt_latest_checkpoint_falls_back_in_one_line(runs, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(runs / "5", run)
    latest = run / "checkpoints" / "checkpoint_000005.npz"
    latest.write_bytes(latest.read_bytes()[:100])
    rc, _, err = hmc(cli, run, 6)
    assert rc == 0, err
    warnings = [ln for ln in err.splitlines() if "checkpoint_000005.npz" in ln]
    assert len(warnings) == 1 and "resuming from the previous one" in warnings[0]
    a = load_checkpoint(run / "checkpoints" / "checkpoint_000006.npz")
    b = load_checkpoint(runs / "6" / "checkpoints" / "checkpoint_000006.npz")
    for key in ("key", "position", "logdensity"):
        if isinstance(a[key], dict):
            for site in a[key]:
                assert a[key][site].tobytes() == b[key][site].tobytes(), (key, site)
        else:
            assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), key
    drop = lambda r: {k: v for k, v in r.items() if k not in ("time", "iteration_wall")}  # noqa: E731
    metrics = [
        [drop(json.loads(ln)) for ln in (d / "metrics.jsonl").read_text().splitlines()]
        for d in (run, runs / "6")
    ]
    assert metrics[0] == metrics[1]


def test_orphaned_temporary_files_are_removed_on_start(runs, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(runs / "5", run)
    for sub in ("checkpoints", "samples"):
        (run / sub).mkdir(exist_ok=True)
        (run / sub / ".tmp-killed.npz").write_bytes(b"half a file")
    rc, _, err = hmc(cli, run, 6)
    assert rc == 0, err
    assert list(run.rglob(".tmp-*")) == []
