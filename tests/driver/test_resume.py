"""Resume == uninterrupted, bit for bit; --init_checkpoint; corrupt checkpoints.

A run stopped after k iterations (``stop_after``) or killed mid-iteration, and restarted
with the same config, must end in exactly the state, ensemble, draws and metrics of a run
that was never stopped: the checkpoint carries the PRNG key, the adapted step size, the
mass-matrix estimate and the online ensemble.
"""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

import ppl_bnn.driver.hmc as runner
from ppl_bnn.config import HMCConfig
from ppl_bnn.declare.problem import build_problem
from ppl_bnn.store.checkpoint import CheckpointError, load_checkpoint
from ppl_bnn.store.rundir import RunDir

pytestmark = pytest.mark.filterwarnings("error")  # a strict harness: warnings fail

WALL_CLOCK = {"time", "iteration_wall"}  # the only fields allowed to differ
SETTINGS = dict(
    dataset_name="digits",
    model_name="logistic_regression",
    subset_train_to=40,
    weight_decay=1.0,
    step_size=1e-3,
    trajectory_len=4e-3,
    num_iterations=5,
    num_burn_in_iterations=2,
    step_size_adaptation_speed=0.5,
    adapt_mass_matrix=True,
    num_chains=2,
    num_param_draws=8,
    seed=3,
    keep_checkpoints=10,  # every checkpoint, to compare them all (the default keeps 2)
)


def config(path, **overrides) -> HMCConfig:
    return HMCConfig(dir=str(path), **{**SETTINGS, **overrides})


class Killed(BaseException):
    """Stands for the process being killed (not an Exception: nothing may catch it)."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted run; one stopped after iteration 1 (in burn-in), then killed while
    writing the checkpoint of iteration 4 (its metrics line and draw already written),
    then restarted to the end."""
    base = tmp_path_factory.mktemp("resume")
    whole, pieces = base / "whole", base / "pieces"
    summary_whole = runner.run_hmc(config(whole), progress=False)
    first = runner.run_hmc(config(pieces), progress=False, stop_after=1)
    assert first["iterations_done"] == 1 and not first["complete"]

    original_save = RunDir.save

    def save(self, step, state):
        if step == 4:
            raise Killed
        return original_save(self, step, state)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunDir, "save", save)
        with pytest.raises(Killed):
            runner.run_hmc(config(pieces), progress=False)
    # the crash left a metrics line and a draw for iteration 4, but no checkpoint
    assert [r["step"] for r in RunDir(pieces).read_metrics()] == [1, 2, 3, 4]
    assert (pieces / "draws/draw_000004.npz").exists()
    assert sorted(p.name for p in (pieces / "checkpoints").iterdir()) == [
        f"checkpoint_{i:06d}.npz" for i in (1, 2, 3)
    ]
    summary_pieces = runner.run_hmc(config(pieces), progress=False)
    return whole, pieces, summary_whole, summary_pieces


def assert_tree_equal(a, b, path="state"):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            assert_tree_equal(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, tuple | list):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_tree_equal(x, y, f"{path}[{i}]")
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)
        assert np.asarray(a).dtype == np.asarray(b).dtype, path


def test_checkpoints_equal_bit_for_bit(runs):
    whole, pieces, *_ = runs
    for step in range(1, 6):
        name = f"checkpoints/checkpoint_{step:06d}.npz"
        a, b = load_checkpoint(whole / name), load_checkpoint(pieces / name)
        a.pop("elapsed"), b.pop("elapsed")
        assert_tree_equal(a, b, name)
    final = load_checkpoint(whole / "checkpoints/checkpoint_000005.npz")
    assert final["ensemble"].count == 2 * 3  # 2 chains x 3 iterations after burn-in
    assert final["step_size"].shape == (2,)
    assert not np.all(final["step_size"] == SETTINGS["step_size"])  # it did adapt
    assert not np.all(final["inverse_mass_matrix"] == 1.0)  # the mass matrix was estimated


def test_metrics_draws_and_summary_equal(runs):
    whole, pieces, summary_whole, summary_pieces = runs
    drop = lambda r: {k: v for k, v in r.items() if k not in WALL_CLOCK}  # noqa: E731
    a = [drop(r) for r in RunDir(whole).read_metrics()]
    b = [drop(r) for r in RunDir(pieces).read_metrics()]
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5]  # no duplicated or missing line
    assert a == b
    for (sa, da), (sb, db) in zip(
        RunDir(whole).load_draws(), RunDir(pieces).load_draws(), strict=True
    ):
        assert sa == sb
        assert_tree_equal(da, db, f"draw {sa}")
    # the run directory (in the config and the predictions' path) is the only other change
    differ = {"wall_time_sampling", "config", "predictions"}
    same = lambda s: {k: v for k, v in s.summary.items() if k not in differ}  # noqa: E731
    assert same(summary_whole) == same(summary_pieces)
    assert {**summary_whole["config"], "dir": ""} == {**summary_pieces["config"], "dir": ""}
    assert summary_pieces["complete"] and summary_pieces["iterations_done"] == 5
    # the restarts are recorded, the config once
    assert len((pieces / "command.sh").read_text().splitlines()) == 3
    assert json.loads((pieces / "config.json").read_text())["seed"] == 3


def test_keys_are_split_once_per_iteration(runs):
    """Checkpoint k holds the run key after k splits: key(seed) -> (key, init) -> ..."""
    whole, *_ = runs
    key = jax.random.key(SETTINGS["seed"])
    key, _init = jax.random.split(key)
    seen = set()
    for step in range(1, 6):
        key, _step = jax.random.split(key)
        saved = load_checkpoint(whole / f"checkpoints/checkpoint_{step:06d}.npz")["key"]
        np.testing.assert_array_equal(saved, np.asarray(jax.random.key_data(key)))
        seen.add(tuple(saved.ravel().tolist()))
    assert len(seen) == 5


def test_restarting_a_finished_run_changes_nothing(runs, snapshot_dir):
    whole, *_ = runs
    before = {
        k: v
        for k, v in snapshot_dir(whole).items()
        if not k.startswith(("tensorboard", "command.sh", "summary.json"))
    }
    summary = runner.run_hmc(config(whole), progress=False)
    after = {
        k: v
        for k, v in snapshot_dir(whole).items()
        if not k.startswith(("tensorboard", "command.sh", "summary.json"))
    }
    assert after == before
    assert summary["complete"]


# ---------------------------------------------------------------- init_checkpoint
def _capture_init_positions(monkeypatch) -> list:
    captured = []
    original = runner.build_init

    def build_init(ld):
        init = original(ld)

        def wrapped(positions, batch):
            captured.append(jax.tree.map(np.asarray, positions))
            return init(positions, batch)

        return wrapped

    monkeypatch.setattr(runner, "build_init", build_init)
    return captured


def test_init_checkpoint_starts_from_saved_parameters(runs, tmp_path, monkeypatch):
    """A run with --init_checkpoint starts (chain by chain) from the saved positions."""
    whole, *_ = runs
    source = whole / "checkpoints/checkpoint_000005.npz"
    saved = load_checkpoint(source)["position"]
    captured = _capture_init_positions(monkeypatch)
    cfg = config(
        tmp_path / "from_ckpt",
        init_checkpoint=str(source),
        num_iterations=1,
        num_burn_in_iterations=0,
        seed=99,
    )
    summary = runner.run_hmc(cfg, progress=False)
    assert summary["complete"]
    assert len(captured) == 1
    assert_tree_equal(captured[0], saved, "initial positions")


def test_init_checkpoint_with_fewer_chains_uses_its_first_chain(runs, tmp_path):
    whole, *_ = runs
    source = whole / "checkpoints/checkpoint_000005.npz"
    saved = load_checkpoint(source)["position"]
    cfg = config(tmp_path / "one", init_checkpoint=str(source), num_chains=1)
    problem = build_problem(cfg)
    for chains, want in ((1, {k: v[:1] for k, v in saved.items()}), (2, saved)):
        got = runner.initial_positions(problem, jax.random.key(0), chains, str(source))
        assert_tree_equal(jax.tree.map(np.asarray, got), want, f"{chains} chain(s)")
    three = runner.initial_positions(problem, jax.random.key(0), 3, str(source))
    assert_tree_equal(
        jax.tree.map(np.asarray, three),
        {k: np.repeat(v[:1], 3, 0) for k, v in saved.items()},
        "3 chains",
    )


def test_init_checkpoint_of_another_model_is_refused(runs, tmp_path):
    whole, *_ = runs
    source = whole / "checkpoints/checkpoint_000005.npz"
    cfg = config(tmp_path / "other", init_checkpoint=str(source), model_name="mlp_classification")
    with pytest.raises(ValueError, match="--init_checkpoint=.*lacks parameters"):
        runner.run_hmc(cfg, progress=False)


# ------------------------------------------------------------ corrupt checkpoints
def _args(path, **overrides):
    settings = {**SETTINGS, **overrides}
    flags = [f"--dir={path}", "--no_progress"]
    for k, v in settings.items():
        if isinstance(v, bool):
            flags += [f"--{k}"] if v else []
        else:
            flags.append(f"--{k}={v}")
    return ["hmc", *flags]


def _truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """Killed while writing: the previous checkpoint survives whole, no temp file remains."""
    import ppl_bnn.store.checkpoint as ckpt

    path = tmp_path / "checkpoints" / "checkpoint_000001.npz"
    ckpt.save_checkpoint(path, {"step": 1, "x": np.arange(3.0)})

    def killed(fd):
        raise Killed

    monkeypatch.setattr(ckpt.os, "fsync", killed)
    with pytest.raises(Killed):
        ckpt.save_checkpoint(path, {"step": 2, "x": np.zeros(1000)})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and state["x"].tolist() == [0.0, 1.0, 2.0]
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_truncated_checkpoint_is_reported_as_corrupt(runs, tmp_path):
    whole, *_ = runs
    copy = tmp_path / "ckpt.npz"
    shutil.copy(whole / "checkpoints/checkpoint_000005.npz", copy)
    _truncate(copy)
    with pytest.raises(CheckpointError, match="corrupt checkpoint .*truncated or altered"):
        load_checkpoint(copy)
    copy.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a ppl_bnn checkpoint"):
        load_checkpoint(copy)


def test_corrupt_latest_checkpoint_one_line_error_and_nothing_written(
    runs, tmp_path, cli, snapshot_dir
):
    whole, *_ = runs
    run = tmp_path / "run"
    shutil.copytree(whole, run)
    for ckpt in (run / "checkpoints").glob("checkpoint_*.npz"):  # no valid one to fall back to
        _truncate(ckpt)
    before = snapshot_dir(run)
    rc, out, err = cli(*_args(run, num_iterations=6))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "corrupt checkpoint" in err and "checkpoint_000005.npz" in err
    assert snapshot_dir(run) == before


def test_corrupt_latest_checkpoint_one_line_error(runs, tmp_path, cli):
    """The part of the above that holds today: exit code 2 and one line naming the file."""
    whole, *_ = runs
    run = tmp_path / "run"
    shutil.copytree(whole, run)
    for ckpt in (run / "checkpoints").glob("checkpoint_*.npz"):  # no valid one to fall back to
        _truncate(ckpt)
    checkpoints_before = sorted(p.name for p in (run / "checkpoints").iterdir())
    metrics_before = (run / "metrics.jsonl").read_bytes()
    rc, out, err = cli(*_args(run, num_iterations=6))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "corrupt checkpoint" in err and "checkpoint_000005.npz" in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == checkpoints_before
    assert (run / "metrics.jsonl").read_bytes() == metrics_before


def test_corrupt_init_checkpoint_one_line_error_and_nothing_written(
    runs, tmp_path, cli, snapshot_dir
):
    whole, *_ = runs
    bad = tmp_path / "bad.npz"
    shutil.copy(whole / "checkpoints/checkpoint_000005.npz", bad)
    _truncate(bad)
    run = tmp_path / "fresh"
    run.mkdir()
    before = snapshot_dir(run)
    rc, out, err = cli(*_args(run, init_checkpoint=bad))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "corrupt checkpoint" in err and "bad.npz" in err
    assert snapshot_dir(run) == before
