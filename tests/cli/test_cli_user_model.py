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


def test_nuts_runs_a_user_model_and_resumes_bit_for_bit(files, tmp_path, cli):
    """``ppl-bnn nuts`` end to end on a hand-written model: a run extended by a second
    call (more samples, resumed from its checkpoint) holds the draws, statistics and
    predictions of one uninterrupted call, bit for bit."""
    flags = ["nuts", "--num_warmup=10", "--num_chains=2", "--eval_freq=5"]
    rc, out, err = cli(*flags, *_flags(files, tmp_path / "whole"), "--num_samples=6")
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["method"] == "nuts"
    for samples in (3, 6):  # stopped after 3 draws, then resumed to 6
        rc, _, err = cli(*flags, *_flags(files, tmp_path / "resumed"), f"--num_samples={samples}")
        assert rc == 0, err
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["complete"] and summary["iterations_done"] == 16
    assert summary["config"]["kernel"] == "nuts" and "model_name" not in summary["config"]
    files_whole = sorted(p.relative_to(whole) for p in whole.glob("[sd]*/*.npz"))
    assert files_whole == sorted(p.relative_to(resumed) for p in resumed.glob("[sd]*/*.npz"))
    assert {p.parent.name for p in files_whole} == {"samples", "draws"}
    assert len([p for p in files_whole if p.name.startswith("stats_")]) == 6
    for name in files_whole:
        with np.load(whole / name) as a, np.load(resumed / name) as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")
    with np.load(resumed / "samples" / "stats_000016.npz") as f:
        assert f["sample_stats/acceptance_rate"].shape == (2,)
