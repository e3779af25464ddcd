"""``--model=file.py:function`` on the commands that take ``--model_name``: a hand-written
NumPyro model with an ``.npz`` dataset, resumable; the BNN flags are not recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

MODEL = """
import numpyro
import numpyro.distributions as dist


def softmax_regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1], 3]).to_event(2))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Categorical(logits=x @ w), obs=y)
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("user_model")
    (base / "models.py").write_text(MODEL)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.argmax(x[:, :3] + 0.5 * rng.normal(size=(60, 3)), -1).astype(np.int32)
    np.savez(base / "data.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    return base


def _flags(files, run):
    return [
        f"--model={files / 'models.py'}:softmax_regression",
        f"--dataset_name={files / 'data.npz'}",
        f"--dir={run}",
        "--no_progress",
    ]


def test_hmc_runs_and_resumes_a_user_model(files, tmp_path, cli):
    run = tmp_path / "hmc"
    hmc = ["hmc", *_flags(files, run), "--step_size=0.05", "--trajectory_len=0.2"]
    rc, out, err = cli(*hmc, "--num_iterations=3", "--num_burn_in_iterations=1")
    assert rc == 0, err
    rc, out, err = cli(*hmc, "--num_iterations=5", "--num_burn_in_iterations=1")
    assert rc == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] and summary["iterations_done"] == 5
    assert summary["model"].endswith("models.py:softmax_regression")
    config = json.loads((run / "config.json").read_text())
    assert config["model"].endswith("models.py:softmax_regression") and config["model_sha256"]
    for field in ("model_name", "weight_decay", "prior_family", "likelihood"):
        assert field not in config and field not in summary["config"], field
    with np.load(run / "samples" / "sample_000005.npz", allow_pickle=False) as f:
        assert f["w"].shape == (1, 4, 3)


def test_an_edited_model_file_is_not_resumed(files, tmp_path, cli):
    import shutil

    local = tmp_path / "copy"
    shutil.copytree(files, local)
    run = tmp_path / "run"
    hmc = ["hmc", *_flags(local, run), "--step_size=0.05", "--trajectory_len=0.2"]
    assert cli(*hmc, "--num_iterations=2")[0] == 0
    (local / "models.py").write_text(MODEL.replace("1.0).expand", "2.0).expand"))
    rc, _, err = cli(*hmc, "--num_iterations=3")
    assert rc == 2 and "model_sha256" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["sgd", "sgmcmc"])
def test_minibatch_commands_take_a_user_model(files, tmp_path, cli, command):
    run = tmp_path / command
    rc, out, err = cli(
        command,
        *_flags(files, run),
        "--num_epochs=2",
        "--batch_size=20",
        "--init_step_size=1e-3",
        *(["--num_burnin_epochs=0", "--ensemble_freq=1"] if command == "sgmcmc" else []),
    )
    assert rc == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] and "model_name" not in summary["config"]
