"""Every SGD, SG-MCMC and VI command of the original README, run through ``ppl-bnn`` at a
tiny size: the commands are copied verbatim below; only the dataset and model are swapped
(``digits`` / ``mlp_classification`` for CIFAR / IMDB, no download), sizes shrunk, and
``<path-to-sgd-solution>`` filled in."""

from __future__ import annotations

import json
import re
import shlex

import pytest

SGD = {
    "resnet_cifar10": """python3 run_sgd.py --seed=1 --weight_decay=10 --dir=runs/sgd/cifar10/ \\
--dataset_name=cifar10 --model_name=resnet20_frn_swish \\
--init_step_size=3e-7 --num_epochs=500 --eval_freq=10 --batch_size=80 \\
--save_freq=500 --subset_train_to=40960""",
    "resnet_cifar100": """python3 run_sgd.py --seed=1 --weight_decay=10 --dir=runs/sgd/cifar100/ \\
--dataset_name=cifar100 --model_name=resnet20_frn_swish \\
--init_step_size=1e-6 --num_epochs=500 --eval_freq=10 --batch_size=80 \\
--save_freq=500 --subset_train_to=40960""",
    "cnn_lstm_imdb": """python3 run_sgd.py --seed=1 --weight_decay=3. --dir=runs/sgd/imdb/ \\
--dataset_name=imdb --model_name=cnn_lstm --init_step_size=3e-7 \\
--num_epochs=500 --eval_freq=10 --batch_size=80 --save_freq=500""",
}
SGMCMC = {
    "sgld": """python3 run_sgmcmc.py --seed=1 --weight_decay=5. --dir=runs/sgmcmc/cifar10/ \\
--dataset_name=cifar10 --model_name=resnet20_frn_swish --init_step_size=1e-6 \\
--final_step_size=1e-6 --num_epochs=10000 --num_burnin_epochs=1000 \\
--eval_freq=10 --batch_size=80 --save_freq=10 --momentum=0. \\
--subset_train_to=40960""",
    "sghmc": """python3 run_sgmcmc.py --seed=1 --weight_decay=5 --dir=runs/sgmcmc/cifar10/ \\
--dataset_name=cifar10 --model_name=resnet20_frn_swish --init_step_size=3e-7 \\
--final_step_size=3e-7 --num_epochs=10000 --num_burnin_epochs=1000 \\
--eval_freq=10 --batch_size=80 --save_freq=10 --subset_train_to=40960 \\
--momentum=0.9""",
    "sghmc_clr": """python3 run_sgmcmc.py --seed=1 --weight_decay=5 --dir=runs/sgmcmc/cifar10/ \\
--dataset_name=cifar10 --model_name=resnet20_frn_swish --init_step_size=3e-7 \\
--num_epochs=10000 --num_burnin_epochs=1000 --step_size_schedule=cyclical \\
--step_size_cycle_length_epochs=50 --ensemble_freq=50 --eval_freq=10 \\
--batch_size=80 --save_freq=1000 --subset_train_to=40960 \\
--preconditioner=None --momentum=0.95 --eval_freq=10 --save_all_ensembled""",
    "sghmc_clr_prec": """python3 run_sgmcmc.py --seed=1 --weight_decay=5 --dir=runs/sghmc/cifar10/ \\
--dataset_name=cifar10 --model_name=resnet20_frn_swish --init_step_size=3e-5 \\
--num_epochs=10000 --num_burnin_epochs=1000 --step_size_schedule=cyclical \\
--step_size_cycle_length_epochs=50 --ensemble_freq=50 --eval_freq=10 \\
--batch_size=80 --save_freq=50 --subset_train_to=40960 \\
--preconditioner=RMSprop --momentum=0.95 --eval_freq=10 --save_all_ensembled""",
}
VI = {
    "resnet_cifar": """python3 run_vi.py --seed=11 --weight_decay=5. --dir=runs/vi/cifar100/ \\
--dataset_name=[cifar10 | cifar100] --model_name=resnet20_frn_swish \\
--init_step_size=1e-4 --num_epochs=300 --eval_freq=10 --batch_size=80 \\
--save_freq=300 --subset_train_to=40960 --optimizer=Adam \\
--vi_sigma_init=0.01 --temperature=1. --vi_ensemble_size=20 \\
--mean_init_checkpoint=<path-to-sgd-solution>""",
    "cnn_lstm_imdb": """python3 run_vi.py --seed=11 --weight_decay=5. --dir=runs/vi/imdb/ \\
--dataset_name=imdb --model_name=cnn_lstm --init_step_size=1e-4 \\
--num_epochs=500 --eval_freq=10 --batch_size=80 --save_freq=200 \\
--optimizer=Adam --vi_sigma_init=0.01 --temperature=1. --vi_ensemble_size=20 \\
--mean_init_checkpoint=<path-to-sgd-solution>""",
}
SCRIPTS = {"run_sgd.py": "sgd", "run_sgmcmc.py": "sgmcmc", "run_vi.py": "vi"}
TINY = {
    "dataset_name": "digits",
    "model_name": "mlp_classification",
    "subset_train_to": "80",
    "batch_size": "40",
    "num_epochs": "3",
    "eval_freq": "1",
    "save_freq": "2",
    "num_burnin_epochs": "1",
    "step_size_cycle_length_epochs": "1",
    "ensemble_freq": "1",
    "vi_ensemble_size": "3",
}


def to_ppl_bnn(command: str, run_dir, **fill) -> list[str]:
    """The README command as ``ppl-bnn`` arguments, shrunk to ``TINY`` sizes."""
    command = command.replace("\\\n", " ").replace("[cifar10 | cifar100]", "cifar10")
    for placeholder, value in fill.items():
        command = command.replace(f"<{placeholder}>", str(value))
    tokens = shlex.split(command)
    assert tokens[0] == "python3"
    argv = [SCRIPTS[tokens[1]]]
    seen = set()
    for tok in tokens[2:]:
        m = re.fullmatch(r"--(\w+)=(.*)", tok)
        if m and m.group(1) == "dir":
            tok = f"--dir={run_dir}"
        elif m and m.group(1) in TINY:
            tok = f"--{m.group(1)}={TINY[m.group(1)]}"
        if m:
            seen.add(m.group(1))
        argv.append(tok)
    added = ["dataset_name", "model_name", "subset_train_to"]
    if argv[0] == "sgmcmc":  # the default of 10 epochs between samples leaves none in 3
        added.append("ensemble_freq")
    argv += [f"--{k}={TINY[k]}" for k in added if k not in seen]
    return argv + ["--no_progress"]


def test_momentum_prefix_is_unambiguous():
    """``--momentum=`` reaches ``--momentum_decay`` by argparse's prefix matching, as in the
    original; no other flag of these commands starts with ``momentum``."""
    from ppl_bnn.cli import build_parser

    parser = build_parser()
    for command in ("sgd", "ensemble", "sgmcmc", "vi"):
        args = parser.parse_args([command, "--dir=x", "--momentum=0.25"])
        assert args.momentum_decay == 0.25
        flags = [a for a in vars(args) if a.startswith("momentum")]
        assert flags == ["momentum_decay"], flags


@pytest.fixture(scope="module")
def sgd_solution(tmp_path_factory):
    from ppl_bnn.cli import main

    run_dir = tmp_path_factory.mktemp("sgd_solution")
    assert main(to_ppl_bnn(SGD["resnet_cifar10"], run_dir)) == 0
    return run_dir / "checkpoints" / "checkpoint_000003.npz"


@pytest.mark.parametrize("name", sorted(SGD))
def test_readme_sgd_commands(name, tmp_path, cli, sgd_solution):
    if name == "resnet_cifar10":  # ran by the fixture: check what it wrote
        run_dir = sgd_solution.parents[1]
    else:
        rc, _, err = cli(*to_ppl_bnn(SGD[name], tmp_path))
        assert rc == 0, err
        run_dir = tmp_path
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == "sgd" and summary["complete"] and summary["epochs_done"] == 3
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 1


@pytest.mark.parametrize("name", sorted(SGMCMC))
def test_readme_sgmcmc_commands(name, tmp_path, cli):
    rc, out, err = cli(*to_ppl_bnn(SGMCMC[name], tmp_path))
    assert rc == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    want = {
        "sgld": "sgld",
        "sghmc": "sghmc",
        "sghmc_clr": "sghmc-clr",
        "sghmc_clr_prec": "sghmc-clr-prec",
    }
    assert summary["method"] == want[name] and summary["complete"]
    assert json.loads(out.strip().splitlines()[-1])["method"] == want[name]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["momentum_decay"] == {"sgld": 0.0, "sghmc": 0.9}.get(name, 0.95)
    # burn-in 1 epoch, every epoch after: the original's rule keeps 0-based epoch 2 of 0..2
    draws = sorted((tmp_path / "draws").glob("*.npz"))
    assert [d.name for d in draws] == ["draw_000003.npz"] and summary["num_ensembled"] == 1
    if "clr" in name:  # --save_all_ensembled: a checkpoint at every ensembled epoch
        ckpts = {p.name for p in (tmp_path / "checkpoints").glob("*.npz")}
        assert {d.name.replace("draw", "checkpoint") for d in draws} <= ckpts


@pytest.mark.parametrize("name", sorted(VI))
def test_readme_vi_commands(name, tmp_path, cli, sgd_solution):
    rc, _, err = cli(*to_ppl_bnn(VI[name], tmp_path, **{"path-to-sgd-solution": sgd_solution}))
    assert rc == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["method"] == "mfvi" and summary["complete"] and summary["vi_ensemble_size"] == 3
    # the mean started at the SGD solution and moved little in 6 Adam steps of 1e-4
    from ppl_bnn.store.checkpoint import latest_checkpoint, load_checkpoint

    sgd = load_checkpoint(sgd_solution)["position"]
    mean = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))["position"]
    for site, value in sgd.items():
        assert abs(mean[site] - value).max() < 2e-3, site


def test_bad_flags_are_one_line_errors(tmp_path, cli):
    rc, _, err = cli("sgmcmc", f"--dir={tmp_path}", "--preconditioner=Adam", "--subset_train_to=80")
    assert rc == 2 and "preconditioner" in err and len(err.strip().splitlines()) == 1
    rc, _, err = cli("vi", f"--dir={tmp_path / 'v'}", "--optimizer=RMSprop", "--subset_train_to=80")
    assert rc == 2 and "optimizer" in err
    assert not (tmp_path / "v").exists()


def test_missing_checkpoints_fail_before_writing(tmp_path, cli):
    for flag in ("init_checkpoint", "mean_init_checkpoint"):
        command = "vi" if flag == "mean_init_checkpoint" else "sgd"
        rc, _, err = cli(
            command,
            f"--dir={tmp_path / flag}",
            f"--{flag}={tmp_path / 'nope.pkl'}",
            "--subset_train_to=80",
        )
        assert rc == 2 and "does not exist" in err
        assert not (tmp_path / flag).exists()
