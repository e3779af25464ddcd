"""Named experiments: the paper's Table 3 settings, smoke shrinking, and ``ppl-bnn experiment``."""

from __future__ import annotations

import json
import math

import pytest

from ppl_bnn.cli import COMMANDS
from ppl_bnn.experiments import EXPERIMENTS, Experiment, get_experiment, smoke
from ppl_bnn.inference.hmc import num_leapfrog_steps


@pytest.mark.parametrize(
    "dataset, model, wd, samples, sgld_lr, sgd_wd, sgd_lr",
    [
        ("cifar10", "resnet20_frn_swish", 5, 240, 1e-6, 10, 3e-7),
        ("cifar100", "resnet20_frn_swish", 5, 40, 3e-6, 10, 1e-6),
        ("imdb", "cnn_lstm", 40, 400, 1e-5, 3, 3e-7),
    ],
)
def test_table3(dataset, model, wd, samples, sgld_lr, sgd_wd, sgd_lr):
    hmc = get_experiment(f"hmc_{dataset}_table3").flags
    assert (hmc["dataset_name"], hmc["model_name"], hmc["weight_decay"]) == (dataset, model, wd)
    assert hmc["step_size"] == 1e-5 and hmc["num_burn_in_iterations"] == 50
    assert hmc["num_chains"] == 3 and hmc["num_iterations"] - 50 == samples
    # a trajectory of about (pi/2) prior standard deviations fits the leapfrog bound
    assert hmc["trajectory_len"] == pytest.approx(math.pi / 2 / math.sqrt(wd), rel=0.04)
    num_leapfrog_steps(hmc["trajectory_len"], hmc["step_size"], hmc["max_num_leapfrog_steps"])

    sgld = get_experiment(f"sgld_{dataset}_table3")
    f = sgld.flags
    assert sgld.method == "sgmcmc" and sgld.replicas == 5 and f["weight_decay"] == 5
    assert f["init_step_size"] == f["final_step_size"] == sgld_lr and f["momentum_decay"] == 0
    assert (f["num_epochs"] - f["num_burnin_epochs"]) // f["ensemble_freq"] == 900
    assert f["batch_size"] == 80

    vi = get_experiment(f"mfvi_{dataset}_table3")
    f = vi.flags
    assert (f["weight_decay"], f["num_epochs"], f["optimizer"], f["init_step_size"]) == (
        5,
        300,
        "Adam",
        1e-4,
    )
    assert (f["vi_sigma_init"], f["vi_ensemble_size"], f["batch_size"]) == (0.01, 50, 80)
    assert "mean_init_checkpoint" in vi.requires

    # SGD (momentum 0.9 is the SGD default, which the README relies on) and deep ensembles
    for name, replicas in ((f"sgd_{dataset}", 1), (f"deep_ensemble_{dataset}", 50)):
        exp = get_experiment(name)
        f = exp.flags
        assert exp.method == "sgd" and exp.replicas == replicas
        assert (f["weight_decay"], f["init_step_size"]) == (sgd_wd, sgd_lr)
        assert (f["num_epochs"], f["batch_size"]) == (500, 80)


def test_every_experiment_runs_a_registered_command():
    unknown = {e.name: e.method for e in EXPERIMENTS.values() if e.method not in COMMANDS}
    assert not unknown


def test_every_experiment_has_its_own_run_directory():
    dirs = [e.flags["dir"] for e in EXPERIMENTS.values()]
    assert len(dirs) == len(set(dirs))


def test_replicas_get_their_own_seed_and_directory():
    exp = get_experiment("deep_ensemble_cifar10")
    argv = exp.argv(replica=49)
    assert "--seed=50" in argv and "--dir=runs/deep_ensemble_cifar10/seed_50" in argv
    argv = exp.argv(replica=1, overrides={"seed": 10, "dir": "ens/"})
    assert "--seed=11" in argv and "--dir=ens/seed_11" in argv


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_smoke_shrinks_only_the_size(name):
    exp = get_experiment(name)
    small = smoke(exp)
    f, g = exp.flags, small.flags
    assert small.method == exp.method and small.replicas == 1
    assert g["subset_train_to"] <= 16
    for key in (
        "weight_decay",
        "temperature",
        "model_name",
        "dataset_name",
        "step_size",
        "init_step_size",
        "seed",
        "use_float64",
        "preconditioner",
        "momentum_decay",
    ):
        assert g.get(key) == f.get(key), key
    if exp.method == "hmc":
        assert g["num_iterations"] <= 2 and g.get("num_burn_in_iterations", 0) <= 1
        assert (
            num_leapfrog_steps(g["trajectory_len"], g["step_size"], g["max_num_leapfrog_steps"])
            <= 3
        )
    if exp.method in ("sgd", "sgmcmc", "vi"):
        assert g["num_epochs"] <= 2 and g["batch_size"] <= 8


def test_list_and_dry_run(cli):
    rc, out, _ = cli("experiment", "--list")
    assert rc == 0 and len(out.strip().splitlines()) == len(EXPERIMENTS)
    rc, out, _ = cli("experiment", "hmc_imdb_temp0.3", "--dry_run", "--dir=elsewhere")
    exp = get_experiment("hmc_imdb_temp0.3")
    assert out.strip() == "ppl-bnn " + " ".join(exp.argv(overrides={"dir": "elsewhere"}))
    rc, out, _ = cli("experiment", "deep_ensemble_imdb", "--dry_run", "--smoke")
    assert rc == 0 and len(out.strip().splitlines()) == 1  # smoke runs one replica
    rc, out, _ = cli("experiment", "sgld_cifar10_table3", "--dry_run")
    assert len(out.strip().splitlines()) == 5


def test_errors_are_one_line(cli, monkeypatch):
    rc, _, err = cli("experiment", "no_such_run")
    assert rc == 2 and "unknown experiment" in err and len(err.strip().splitlines()) == 1
    rc, _, err = cli("experiment", "vi_imdb", "--smoke")
    assert rc == 2 and "--set mean_init_checkpoint=" in err
    rc, _, err = cli("experiment", "deep_ensemble_imdb", "--replica=50")
    assert rc == 2 and "--replica" in err
    fake = Experiment("fake", "no_such_method", {"dir": "x"}, "a method nobody provides")
    monkeypatch.setitem(EXPERIMENTS, "fake", fake)
    rc, _, err = cli("experiment", "fake")
    assert rc == 2 and "ppl-bnn no_such_method" in err


def test_smoke_run_on_mock_data(cli, tmp_path):
    run_dir = tmp_path / "run"
    rc, _, err = cli(
        "experiment",
        "hmc_mnist_subset160",
        "--smoke",
        "--mock_data",
        f"--dir={run_dir}",
        "--set",
        "seed=3",
    )
    assert rc == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert summary["iterations_done"] == 2 and summary["dataset"] == "mnist"
    assert config["seed"] == 3 and config["subset_train_to"] == 16
    assert config["model_name"] == "mlp_classification" and config["step_size"] == 3e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_smoke_runs(name, cli, tmp_path):
    exp = get_experiment(name)
    if exp.requires:
        pytest.skip(
            f"needs {', '.join(exp.requires)} from another run (covered by test_readme_commands)"
        )
    rc, _, err = cli("experiment", name, "--smoke", "--mock_data", f"--dir={tmp_path / 'run'}")
    assert rc == 0, err
