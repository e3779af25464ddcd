"""Run directories read and resumed safely.

* Reading a run directory never imports a model file that only its ``config.json`` names
  (a crafted payload would create a marker file): every command that reads one.
* A run records a fingerprint of its data and model; a resume or a read under other data
  or another model is refused in one line.
* Checkpoints without a readable ``config.json`` are not resumed.
* Readers never write: a live run's ``.tmp-*`` files survive ``diagnose`` and friends.
* Files written before the checkpoint (draws, samples, metrics) are checked on resume.
* One writer per run directory (a lock naming the holder's PID).
* Atomic files follow the umask; only canonical checkpoint names are checkpoints; a finished
  run run again on a read-only folder rewrites nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_bad_inputs import read_only

TINY = [
    "--dataset_name=digits",
    "--subset_train_to=20",
    "--model_name=logistic_regression",
    "--step_size=1e-3",
    "--trajectory_len=2e-3",
    "--num_iterations=4",
    "--no_progress",
]
MINIBATCH = [*TINY[:3], "--batch_size=20", "--num_epochs=1", "--no_progress"]


def with_flag(flag: str) -> list[str]:
    name = flag.split("=")[0]
    return [f for f in TINY if f.split("=")[0] != name] + [flag]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-iteration hmc run (never modified: tests copy it)."""
    from ppl_bnn.cli import main

    run = tmp_path_factory.mktemp("safety") / "run"
    assert main(["hmc", f"--dir={run}", *TINY]) == 0
    return run


@pytest.fixture
def run(finished, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def one_error(rc: int, err: str, command: str, *words: str) -> str:
    lines = err.strip().splitlines()
    lines = [ln for ln in lines if not ln.startswith("ppl-bnn: warning:")]
    assert rc == 2, err[-2000:]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ppl-bnn {command}: error: "), lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ A: no code from a run
@pytest.fixture
def crafted(run, tmp_path) -> tuple[Path, Path, Path]:
    """The run, its config.json naming a payload file (SHA-256 recorded and matching) that
    creates ``marker`` when imported."""
    marker = tmp_path / "marker"
    evil = tmp_path / "evil_model.py"
    evil.write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "import numpyro, numpyro.distributions as dist\n"
        "def model(x, y=None):\n"
        "    w = numpyro.sample('w', dist.Normal(0, 1).expand([x.shape[1], 10]).to_event(2))\n"
        "    with numpyro.plate('data', x.shape[0]):\n"
        "        numpyro.sample('y', dist.Categorical(logits=x @ w), obs=y)\n"
    )
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"] = f"{evil}:model"
    cfg["model_sha256"] = hashlib.sha256(evil.read_bytes()).hexdigest()
    (run / "config.json").write_text(json.dumps(cfg, indent=2))
    return run, evil, marker


def test_domain_shift_never_imports_a_model_file_named_by_the_run(crafted, cli):
    run, evil, marker = crafted
    rc, _, err = cli("domain-shift", str(run))
    one_error(rc, err, "domain-shift", "config.json", "--model=", "never run")
    assert not marker.exists()


def test_run_predictive_never_imports_a_model_file_named_by_the_run(crafted):
    from ppl_bnn.evaluation.domain_shift import RunPredictive
    from ppl_bnn.store.rundir import RunDirError

    run, evil, marker = crafted
    with pytest.raises(RunDirError, match="never run unless you name it"):
        RunPredictive(run)
    with pytest.raises(RunDirError, match="is not the model"):
        RunPredictive(run, model=f"{evil}:other")
    edited = evil.with_name("edited.py")
    edited.write_text(evil.read_text() + "\n# edited\n")
    with pytest.raises(RunDirError, match="SHA-256 is not the one"):
        RunPredictive(run, model=f"{edited}:model")
    assert not marker.exists()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(lambda run, new: ["diagnose", str(run)], id="diagnose"),
        pytest.param(
            lambda run, new: ["sgd", f"--dir={new}", *MINIBATCH, f"--reference={run}"],
            id="reference",
        ),
        pytest.param(
            lambda run, new: [
                "surface",
                f"--dir={new}",
                *TINY[:3],
                "--grid_size=3",
                f"--checkpoint1={run}/samples/sample_000001.npz:0",
                f"--checkpoint2={run}/samples/sample_000002.npz:0",
                f"--checkpoint3={run}/checkpoints/checkpoint_000001.npz:0",
            ],
            id="surface",
        ),
        pytest.param(lambda run, new: ["hmc", f"--dir={run}", *TINY], id="resume"),
        pytest.param(
            lambda run, new: ["hmc", f"--dir={run}", *with_flag("--num_iterations=5")],
            id="extend",
        ),
    ],
)
def test_no_command_reading_a_run_imports_its_model_file(argv, crafted, tmp_path, cli):
    run, evil, marker = crafted
    rc, _, err = cli(*argv(run, tmp_path / "new"))
    assert rc in (0, 2), err
    assert len([ln for ln in err.strip().splitlines() if "error" in ln]) <= 1, err
    assert not marker.exists(), "a model file named by a run directory was imported"


def test_a_model_file_named_again_with_its_hash_is_read(tmp_path, cli):
    from ppl_bnn.evaluation.domain_shift import RunPredictive
    from ppl_bnn.store.rundir import RunDirError

    source = tmp_path / "softmax.py"
    source.write_text(
        "import numpyro, numpyro.distributions as dist\n"
        "def model(x, y=None):\n"
        "    x = x.reshape(x.shape[0], -1)\n"
        "    w = numpyro.sample('w', dist.Normal(0, 1).expand([x.shape[1], 10]).to_event(2))\n"
        "    with numpyro.plate('data', x.shape[0]):\n"
        "        numpyro.sample('y', dist.Categorical(logits=x @ w), obs=y)\n"
    )
    run = tmp_path / "run"
    flags = [f for f in TINY if not f.startswith("--model_name")]
    rc, _, err = cli("hmc", f"--dir={run}", f"--model={source}:model", *flags)
    assert rc == 0, err
    post = RunPredictive(run, model=f"{source}:model")
    assert post.predict(post.problem.dataset.x_test[:3]).shape == (3, 10)
    source.write_text(source.read_text().replace("Normal(0, 1)", "Normal(0, 2)"))
    with pytest.raises(RunDirError, match="SHA-256"):
        RunPredictive(run, model=f"{source}:model")


# ------------------------------------------------------------- B: data and model fingerprint
def linear(x, y=None):
    import numpyro
    import numpyro.distributions as dist

    w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def _other_linear():
    def linear(x, y=None):  # same __name__, another prior
        import numpyro
        import numpyro.distributions as dist

        w = numpyro.sample("w", dist.Normal(0, 5).expand([x.shape[1]]).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)

    return linear


def test_infer_refuses_a_finished_run_dir_under_other_data_or_another_model(tmp_path):
    import ppl_bnn

    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -1.0, 0.5], np.float32)).astype(np.float32)
    d = str(tmp_path / "run")
    opts = dict(method="sgd", num_warmup=1, num_samples=1, num_chains=1, run_dir=d)
    first = ppl_bnn.infer(linear, x, y, **opts)
    assert first.run_dir == d
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {"data_sha256", "model_structure_sha256", "model_source_sha256"} <= set(config)
    with pytest.raises(ValueError, match="other data"):
        ppl_bnn.infer(linear, x, -y, **opts)
    with pytest.raises(ValueError, match="other model function"):
        ppl_bnn.infer(_other_linear(), x, y, **opts)
    ppl_bnn.infer(linear, x, y, **opts)  # the same data and model: read as it was


def test_cli_refuses_to_extend_a_run_whose_data_file_was_rewritten(tmp_path, cli, snapshot_dir):
    from ppl_bnn.data import load_digits

    ds = load_digits()
    arrays = {"x_train": ds.x_train[:20], "y_train": ds.y_train[:20]}
    arrays |= {"x_test": ds.x_test[:10], "y_test": ds.y_test[:10]}
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    run = tmp_path / "run"
    flags = [*with_flag(f"--dataset_name={data}")]
    rc, _, err = cli("hmc", f"--dir={run}", *flags)
    assert rc == 0, err
    np.savez(data, **{**arrays, "x_train": arrays["x_train"][::-1].copy()})
    before = snapshot_dir(run)
    longer = [f for f in flags if not f.startswith("--num_iterations")] + ["--num_iterations=5"]
    rc, _, err = cli("hmc", f"--dir={run}", *longer)
    one_error(rc, err, "hmc", "other data", "data_sha256")
    assert snapshot_dir(run) == before


def test_an_older_run_without_a_fingerprint_resumes_with_a_warning(run, cli):
    cfg = json.loads((run / "config.json").read_text())
    for key in ("data_sha256", "model_structure_sha256"):
        cfg.pop(key)
    (run / "config.json").write_text(json.dumps(cfg, indent=2))
    rc, _, err = cli("hmc", f"--dir={run}", *with_flag("--num_iterations=5"))
    assert rc == 0, err
    assert "records no fingerprint" in err


def test_run_predictive_refuses_a_run_of_other_data(run):
    from ppl_bnn.evaluation.domain_shift import RunPredictive
    from ppl_bnn.store.rundir import RunDirError

    cfg = json.loads((run / "config.json").read_text())
    cfg["data_sha256"] = "0" * 64
    (run / "config.json").write_text(json.dumps(cfg, indent=2))
    with pytest.raises(RunDirError, match="other data"):
        RunPredictive(run)


# --------------------------------------------------------------- C: checkpoints, no config
def test_checkpoints_without_config_are_not_resumed(run, cli, snapshot_dir):
    (run / "config.json").unlink()
    before = snapshot_dir(run)
    rc, _, err = cli("hmc", f"--dir={run}", *with_flag("--weight_decay=50"))
    one_error(rc, err, "hmc", "no config.json", str(run))
    assert snapshot_dir(run) == before


def test_a_torn_config_is_named(run, cli, snapshot_dir):
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text[: len(text) // 2])
    before = snapshot_dir(run)
    rc, _, err = cli("hmc", f"--dir={run}", *TINY)
    one_error(rc, err, "hmc", str(run / "config.json"), "not readable JSON")
    rc, _, err = cli("domain-shift", str(run))
    one_error(rc, err, "domain-shift", str(run / "config.json"))
    assert snapshot_dir(run) == before
    (run / "summary.json").unlink()  # diagnose reads the config of a run without a summary
    rc, _, err = cli("diagnose", str(run), f"--output={run.parent / 'd.nc'}")
    one_error(rc, err, "diagnose", str(run / "config.json"), "not readable JSON")


# ---------------------------------------------------------------- D: readers never write
def test_readers_leave_temporary_files_alone(run, cli):
    from ppl_bnn.evaluation.reference import run_predictions
    from ppl_bnn.store.rundir import RunDir

    tmps = [run / ".tmp-live.json", run / "draws/.tmp-live.npz", run / "checkpoints/.tmp-x.npz"]
    tmps.append(run / "samples/.tmp-y.npz")
    for p in tmps:
        p.write_bytes(b"partial")
    rc, _, err = cli("diagnose", str(run), f"--output={run.parent / 'd.nc'}")
    assert rc == 0, err
    RunDir(run).load_draws()
    RunDir(run, primary=True).read_metrics()
    run_predictions(run)
    assert all(p.exists() for p in tmps)
    # the writing process cleans them, once it holds the lock
    rc, _, err = cli("hmc", f"--dir={run}", *with_flag("--num_iterations=5"))
    assert rc == 0, err
    assert not any(p.exists() for p in tmps)


# ----------------------------------------------------- E: files written before the checkpoint
def truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


@pytest.mark.parametrize(
    "name, words",
    [
        ("draws/draw_000001.npz", ("corrupt draw file", "draw_000001.npz")),
        ("samples/sample_000001.npz", ("corrupt sample file", "sample_000001.npz")),
    ],
)
def test_a_truncated_draw_is_one_line_on_resume_and_read(run, name, words, cli, snapshot_dir):
    truncate(run / name)
    before = snapshot_dir(run)
    rc, _, err = cli("hmc", f"--dir={run}", *TINY)
    one_error(rc, err, "hmc", *words)
    rc, _, err = cli("hmc", f"--dir={run}", *with_flag("--num_iterations=5"))
    one_error(rc, err, "hmc", *words)
    rc, _, err = cli("diagnose", str(run), f"--output={run.parent / 'd.nc'}")
    one_error(rc, err, "diagnose", name.split("/")[1])
    assert snapshot_dir(run) == before


def test_a_deleted_or_torn_metrics_file_is_reported(run, cli, snapshot_dir):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:-1] + [lines[-1][:20]]) + "\n")
    before = snapshot_dir(run)
    rc, _, err = cli("hmc", f"--dir={run}", *TINY)
    one_error(rc, err, "hmc", "metrics.jsonl", f"holds {len(lines) - 1} of the {len(lines)}")
    assert snapshot_dir(run) == before
    (run / "metrics.jsonl").unlink()
    rc, _, err = cli("hmc", f"--dir={run}", *with_flag("--num_iterations=5"))
    one_error(rc, err, "hmc", "metrics.jsonl is missing")


def test_a_deleted_sample_is_reported(run, cli):
    (run / "samples/sample_000001.npz").unlink()
    rc, _, err = cli("hmc", f"--dir={run}", *TINY)
    one_error(rc, err, "hmc", "samples holds 3 of the 4 files")


# ------------------------------------------------------------------------------ 6: a lock
def test_a_second_process_stops_naming_the_holder(run, cli, snapshot_dir):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, socket, sys\n"
            "from filelock import FileLock\n"
            f"lock = FileLock({str(run / '.lock')!r}, timeout=0)\n"
            "lock.acquire()\n"
            f"open({str(run / '.lock')!r}, 'w').write(f'{{os.getpid()}} {{socket.gethostname()}}\\n')\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot_dir(run)
        rc, _, err = cli("hmc", f"--dir={run}", *with_flag("--num_iterations=5"))
        one_error(rc, err, "hmc", "in use by another process", f"PID {holder.pid}")
        assert snapshot_dir(run) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    rc, _, err = cli("hmc", f"--dir={run}", *with_flag("--num_iterations=5"))
    assert rc == 0, err


def test_a_run_dir_has_one_writer(tmp_path):
    from ppl_bnn.store.rundir import RunDir, RunDirError

    a, b = RunDir(tmp_path / "r", tensorboard=False), RunDir(tmp_path / "r", tensorboard=False)
    a.log(1, {"x": 1.0})
    with pytest.raises(RunDirError, match=f"PID {os.getpid()}"):
        b.log(1, {"x": 1.0})
    a.close()
    b.log(2, {"x": 2.0})  # released: the next writer takes it
    b.close()
    assert [r["step"] for r in RunDir(tmp_path / "r").read_metrics()] == [1, 2]


def test_checkpoints_written_meanwhile_are_not_overwritten(tmp_path):
    from ppl_bnn.store.rundir import RunDir, RunDirError

    late = RunDir(tmp_path / "r", tensorboard=False)
    assert late.latest() is None  # reads a fresh folder
    other = RunDir(tmp_path / "r", tensorboard=False)
    other.latest()
    other.save(1, {"step": 1})
    other.close()
    with pytest.raises(RunDirError, match="another process wrote checkpoints"):
        late.save(1, {"step": 1})


# ------------------------------------------------------------------------- 8: smaller ones
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_follow_the_umask(tmp_path, umask, mode):
    from ppl_bnn.store.checkpoint import atomic_write

    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "f.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == mode


def test_only_canonical_names_are_checkpoints(tmp_path):
    from ppl_bnn.store.checkpoint import CheckpointStore, latest_checkpoint
    from ppl_bnn.store.samples import SampleStore

    store = CheckpointStore(tmp_path / "c")
    stray = tmp_path / "c" / "checkpoint_0000011.npz"
    stray.parent.mkdir()
    stray.write_bytes(b"not mine")
    assert store.steps() == [] and latest_checkpoint(tmp_path / "c") is None
    for step in (1, 2, 3, 12):
        store.save(step, {"step": step})
    assert store.steps() == [3, 12] and stray.exists()
    assert store.restore()[0] == 12
    samples = SampleStore(tmp_path / "s")
    samples.append(1, {"w": np.zeros(2)})
    (tmp_path / "s" / "sample_0000011.npz").write_bytes(b"not mine")
    assert samples.steps() == [1]


def test_a_finished_run_reruns_on_a_read_only_folder(run, cli, snapshot_dir):
    rc, _, err = cli("hmc", f"--dir={run}", *TINY)  # the copy's own paths in its summary
    assert rc == 0, err
    before = snapshot_dir(run)
    with read_only(run):
        rc, out, err = cli("hmc", f"--dir={run}", *TINY)
    assert rc == 0, err
    assert snapshot_dir(run) == before
