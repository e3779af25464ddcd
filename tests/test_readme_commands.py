"""Every command of the original README runs as ``ppl-bnn <method>`` on mock data.

The commands below are transcribed verbatim from ``shared/reference/original_README.txt``;
only ``python3 run_<method>.py`` becomes ``ppl-bnn <method>``. Each runs under
``tfds.testing.mock_data`` (random data of the real shapes; TFDS is never asked to
download), with ``--dir`` moved into the test's temporary folder.

Two variants per command:

* ``test_readme_command_verbatim`` (slow): nothing changed but ``--num_iterations`` /
  ``--num_epochs`` (the MNIST command keeps its 10 burn-in iterations, so it needs 11);
* ``test_readme_command_small``: also shrinks what a CPU cannot afford, each change listed
  with its reason in ``SMALL`` below. Leapfrog counts are the main one: the README's
  trajectories take 24,000 to 78,000 gradient evaluations per HMC iteration.

Placeholders are filled with real files made by running the prerequisite command first:
``<path-to-sgd-solution>`` by the matching SGD command, ``<ckpt1..3>`` by the IMDB SGD
command with seeds 1, 2, 3. The README's surface command lacks the ``\\`` after
``--checkpoint3=<ckpt3>``; it is read as the one command it is meant to be. Its VI
command names ``--dataset_name=[cifar10 | cifar100]``; both are run.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from ppl_bnn.cli import COMMANDS
from ppl_bnn.store.checkpoint import latest_checkpoint

README = {
    "hmc_imdb_temp1": r"""
python3 run_hmc.py --seed=1 --weight_decay=40. --temperature=1. \
--dir=runs/hmc/imdb/ --dataset_name=imdb --model_name=cnn_lstm \
--use_float64 --step_size=1e-5 --trajectory_len=0.24 \
--max_num_leapfrog_steps=30000""",
    "hmc_imdb_temp0.3": r"""
python3 run_hmc.py --seed=1 --weight_decay=40. --temperature=0.3 \
--dir=runs/hmc/imdb/ --dataset_name=imdb --model_name=cnn_lstm \
--use_float64 --step_size=3e-6 --trajectory_len=0.136 \
--max_num_leapfrog_steps=46000""",
    "hmc_imdb_temp0.1": r"""
python3 run_hmc.py --seed=1 --weight_decay=40. --temperature=0.1 \
--dir=runs/hmc/imdb/ --dataset_name=imdb --model_name=cnn_lstm \
--use_float64 --step_size=1e-6 --trajectory_len=0.078 \
--max_num_leapfrog_steps=90000""",
    "hmc_imdb_temp0.03": r"""
python3 run_hmc.py --seed=1 --weight_decay=40. --temperature=0.03 \
--dir=runs/hmc/imdb/ --dataset_name=imdb --model_name=cnn_lstm \
--use_float64 --step_size=1e-6 --trajectory_len=0.043 \
--max_num_leapfrog_steps=45000""",
    "hmc_mnist_subset160": r"""
python3 run_hmc.py --seed=0 --weight_decay=1. --temperature=1. \
--dir=runs/hmc/mnist_subset160 --dataset_name=mnist \
--model_name=mlp_classification --step_size=3.e-5 --trajectory_len=1.5 \
--num_iterations=100 --max_num_leapfrog_steps=50000 \
--num_burn_in_iterations=10 --subset_train_to=160""",
    "sgd_cifar10": r"""
python3 run_sgd.py --seed=1 --weight_decay=10 --dir=runs/sgd/cifar10/ \
--dataset_name=cifar10 --model_name=resnet20_frn_swish \
--init_step_size=3e-7 --num_epochs=500 --eval_freq=10 --batch_size=80 \
--save_freq=500 --subset_train_to=40960""",
    "sgd_cifar100": r"""
python3 run_sgd.py --seed=1 --weight_decay=10 --dir=runs/sgd/cifar100/ \
--dataset_name=cifar100 --model_name=resnet20_frn_swish \
--init_step_size=1e-6 --num_epochs=500 --eval_freq=10 --batch_size=80 \
--save_freq=500 --subset_train_to=40960""",
    "sgd_imdb": r"""
python3 run_sgd.py --seed=1 --weight_decay=3. --dir=runs/sgd/imdb/ \
--dataset_name=imdb --model_name=cnn_lstm --init_step_size=3e-7 \
--num_epochs=500 --eval_freq=10 --batch_size=80 --save_freq=500""",
    "sgld_cifar10": r"""
python3 run_sgmcmc.py --seed=1 --weight_decay=5. --dir=runs/sgmcmc/cifar10/ \
--dataset_name=cifar10 --model_name=resnet20_frn_swish --init_step_size=1e-6 \
--final_step_size=1e-6 --num_epochs=10000 --num_burnin_epochs=1000 \
--eval_freq=10 --batch_size=80 --save_freq=10 --momentum=0. \
--subset_train_to=40960""",
    "sghmc_cifar10": r"""
python3 run_sgmcmc.py --seed=1 --weight_decay=5 --dir=runs/sgmcmc/cifar10/ \
--dataset_name=cifar10 --model_name=resnet20_frn_swish --init_step_size=3e-7 \
--final_step_size=3e-7 --num_epochs=10000 --num_burnin_epochs=1000 \
--eval_freq=10 --batch_size=80 --save_freq=10 --subset_train_to=40960 \
--momentum=0.9""",
    "sghmc_clr_cifar10": r"""
python3 run_sgmcmc.py --seed=1 --weight_decay=5 --dir=runs/sgmcmc/cifar10/ \
--dataset_name=cifar10 --model_name=resnet20_frn_swish --init_step_size=3e-7 \
--num_epochs=10000 --num_burnin_epochs=1000 --step_size_schedule=cyclical \
--step_size_cycle_length_epochs=50 --ensemble_freq=50 --eval_freq=10 \
--batch_size=80 --save_freq=1000 --subset_train_to=40960 \
--preconditioner=None --momentum=0.95 --eval_freq=10 --save_all_ensembled""",
    "sghmc_clr_prec_cifar10": r"""
python3 run_sgmcmc.py --seed=1 --weight_decay=5 --dir=runs/sghmc/cifar10/ \
--dataset_name=cifar10 --model_name=resnet20_frn_swish --init_step_size=3e-5 \
--num_epochs=10000 --num_burnin_epochs=1000 --step_size_schedule=cyclical \
--step_size_cycle_length_epochs=50 --ensemble_freq=50 --eval_freq=10 \
--batch_size=80 --save_freq=50 --subset_train_to=40960 \
--preconditioner=RMSprop --momentum=0.95 --eval_freq=10 --save_all_ensembled""",
    "vi_cifar": r"""
python3 run_vi.py --seed=11 --weight_decay=5. --dir=runs/vi/cifar100/ \
--dataset_name=[cifar10 | cifar100] --model_name=resnet20_frn_swish \
--init_step_size=1e-4 --num_epochs=300 --eval_freq=10 --batch_size=80 \
--save_freq=300 --subset_train_to=40960 --optimizer=Adam \
--vi_sigma_init=0.01 --temperature=1. --vi_ensemble_size=20 \
--mean_init_checkpoint=<path-to-sgd-solution>""",
    "vi_imdb": r"""
python3 run_vi.py --seed=11 --weight_decay=5. --dir=runs/vi/imdb/ \
--dataset_name=imdb --model_name=cnn_lstm --init_step_size=1e-4 \
--num_epochs=500 --eval_freq=10 --batch_size=80 --save_freq=200 \
--optimizer=Adam --vi_sigma_init=0.01 --temperature=1. --vi_ensemble_size=20 \
--mean_init_checkpoint=<path-to-sgd-solution>""",
    "surface_imdb": r"""
python3 make_posterior_surface_plot.py --weight_decay=40 --temperature=1. \
--dir=runs/surface_plots/imdb/ --model_name=cnn_lstm --dataset_name=imdb \
--checkpoint1=<ckpt1> --checkpoint2=<ckpt2> --checkpoint3=<ckpt3>
--limit_bottom=-0.75 --limit_left=-0.75 --limit_right=1.75 --limit_top=1.75 \
--grid_size=50""",
}
SCRIPTS = {
    "run_hmc.py": "hmc",
    "run_sgd.py": "sgd",
    "run_sgmcmc.py": "sgmcmc",
    "run_vi.py": "vi",
    "make_posterior_surface_plot.py": "surface",
}

# The only change in the verbatim variant: the length of the run.
LENGTH = {
    **{f"hmc_imdb_temp{t}": {"num_iterations": 1} for t in ("1", "0.3", "0.1", "0.03")},
    "hmc_mnist_subset160": {"num_iterations": 11},  # its 10 burn-in iterations, then 1
    **{k: {"num_epochs": 1} for k in README if not k.startswith(("hmc", "surface"))},
    "surface_imdb": {},
}

# The small variant: further changes, each with its reason.
_FEW_LEAPFROG = "3 leapfrog steps instead of 24,000-78,000 (minutes per iteration on a CPU)"
_CIFAR = (
    "--subset_train_to=160 (2 batches of 80) instead of 40960: an epoch of ResNet-20 "
    "over 40960 images takes minutes on a CPU"
)
SMALL = {
    "hmc_imdb_temp1": ({"trajectory_len": 3e-5}, _FEW_LEAPFROG),
    "hmc_imdb_temp0.3": ({"trajectory_len": 9e-6}, _FEW_LEAPFROG),
    "hmc_imdb_temp0.1": ({"trajectory_len": 3e-6}, _FEW_LEAPFROG),
    "hmc_imdb_temp0.03": ({"trajectory_len": 3e-6}, _FEW_LEAPFROG),
    "hmc_mnist_subset160": (
        {"num_iterations": 2, "num_burn_in_iterations": 1, "trajectory_len": 9e-5},
        "2 iterations (1 of burn-in) of 3 leapfrog steps instead of 100 (10) of 50,000",
    ),
    "sgd_cifar10": ({"subset_train_to": 160}, _CIFAR),
    "sgd_cifar100": ({"subset_train_to": 160}, _CIFAR),
    "sgd_imdb": ({}, "nothing beyond the epochs: the mock training set has 160 reviews"),
    **{
        k: (
            {"subset_train_to": 160, "num_burnin_epochs": 1},
            _CIFAR + "; 1 burn-in epoch so that the second epoch samples",
        )
        for k in ("sgld_cifar10", "sghmc_cifar10", "sghmc_clr_cifar10", "sghmc_clr_prec_cifar10")
    },
    "vi_cifar": (
        {"subset_train_to": 160, "vi_ensemble_size": 2},
        _CIFAR + "; 2 predictive samples instead of 20",
    ),
    "vi_imdb": ({"vi_ensemble_size": 2}, "2 predictive samples instead of 20"),
    "surface_imdb": ({"grid_size": 3}, "a 3x3 grid instead of 50x50 full-batch evaluations"),
}
# fast enough for the default run (the others are marked slow)
DEFAULT_RUN = {"hmc_mnist_subset160"}
MOCK_EXAMPLES = 160  # every split of every mocked dataset: 2 minibatches of 80
MOCK_EXAMPLES_HMC = 16  # full batch: a small one keeps the float64 IMDB runs fast


def _argv(name: str, dataset: str | None = None) -> list[str]:
    text = README[name].strip().replace("\\\n", " ")
    if dataset is not None:
        text = text.replace("[cifar10 | cifar100]", dataset)
    python, script, *flags = shlex.split(text)
    assert python == "python3"
    return [SCRIPTS[script], *flags]


def _set(argv: list[str], changes: dict) -> list[str]:
    """Replace (or append) ``--flag=value`` for each change; nothing else is touched."""
    out = list(argv)
    for key, value in changes.items():
        idx = [i for i, a in enumerate(out) if a.split("=", 1)[0] == f"--{key}"]
        if idx:
            for i in idx:  # the README repeats --eval_freq once; keep both in step
                out[i] = f"--{key}={value}"
        else:
            out.append(f"--{key}={value}")
    return out


def _flag(argv: list[str], key: str) -> str | None:
    found = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{key}=")]
    return found[-1] if found else None


def _run(cli, argv: list[str], tmp_path: Path, num_examples: int) -> Path:
    readme_dir = _flag(argv, "dir")
    run_dir = tmp_path / readme_dir
    argv = _set(argv, {"dir": run_dir})
    with tfds.testing.mock_data(num_examples=num_examples):
        rc, out, err = cli(*argv)
    assert rc == 0, f"ppl-bnn {' '.join(argv)} failed:\n{err[-3000:]}"
    assert run_dir.is_dir()
    return run_dir


def _checkpoint(run_dir: Path) -> str:
    found = latest_checkpoint(run_dir / "checkpoints") or latest_checkpoint(run_dir)
    assert found is not None, f"no checkpoint in {run_dir}"
    return str(found)


def _fill_placeholders(name, argv, cli, tmp_path, small, dataset):
    """Run the prerequisite SGD command(s) and put their checkpoints into ``argv``."""
    if "<path-to-sgd-solution>" in " ".join(argv):
        sgd = f"sgd_{dataset or 'imdb'}"
        sgd_argv = _set(_argv(sgd), {**LENGTH[sgd], **(SMALL[sgd][0] if small else {})})
        ckpt = _checkpoint(_run(cli, sgd_argv, tmp_path / "prerequisite", _mock_size(sgd_argv)))
        argv = [a.replace("<path-to-sgd-solution>", ckpt) for a in argv]
    if "<ckpt1>" in " ".join(argv):
        for seed in (1, 2, 3):
            sgd_argv = _set(_argv("sgd_imdb"), {**LENGTH["sgd_imdb"], "seed": seed})
            run_dir = _run(cli, sgd_argv, tmp_path / f"prerequisite{seed}", MOCK_EXAMPLES)
            argv = [a.replace(f"<ckpt{seed}>", _checkpoint(run_dir)) for a in argv]
    return argv


def _mock_size(argv: list[str]) -> int:
    subset = _flag(argv, "subset_train_to")
    base = MOCK_EXAMPLES_HMC if argv[0] == "hmc" else MOCK_EXAMPLES
    return max(base, int(subset) if subset else 0)


def _check_hmc(run_dir: Path, argv: list[str]) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] and summary["iterations_done"] == int(_flag(argv, "num_iterations"))


CASES = [(name, None) for name in README if name != "vi_cifar"] + [
    ("vi_cifar", "cifar10"),
    ("vi_cifar", "cifar100"),
]


def _ids(case):
    return case[0] if case[1] is None else f"{case[0]}-{case[1]}"


def test_every_readme_command_is_registered():
    methods = {_argv(name, dataset)[0] for name, dataset in CASES}
    assert methods <= set(COMMANDS), methods - set(COMMANDS)


def _small_param(case):
    marks = [] if case[0] in DEFAULT_RUN else [pytest.mark.slow]
    return pytest.param(*case, marks=marks, id=_ids(case))


@pytest.mark.parametrize("name, dataset", [_small_param(c) for c in CASES])
def test_readme_command_small(name, dataset, cli, tmp_path):
    argv = _argv(name, dataset)
    changes, _reason = SMALL[name]
    argv = _set(argv, {**LENGTH[name], **changes})
    argv = _fill_placeholders(name, argv, cli, tmp_path, True, dataset)
    run_dir = _run(cli, argv, tmp_path, _mock_size(argv))
    if argv[0] == "hmc":
        _check_hmc(run_dir, argv)


@pytest.mark.slow
@pytest.mark.parametrize("name, dataset", CASES, ids=[_ids(c) for c in CASES])
def test_readme_command_verbatim(name, dataset, cli, tmp_path):
    argv = _argv(name, dataset)
    argv = _set(argv, LENGTH[name])
    argv = _fill_placeholders(name, argv, cli, tmp_path, False, dataset)
    run_dir = _run(cli, argv, tmp_path, _mock_size(argv))
    if argv[0] == "hmc":
        _check_hmc(run_dir, argv)


def test_experiments_match_the_readme():
    """Each README command is registered as an experiment with the same flags."""
    from ppl_bnn.experiments import get_experiment

    for name, dataset in CASES:
        exp = get_experiment(f"vi_{dataset}" if dataset else name)
        method, *flags = _argv(name, dataset)
        assert exp.method == method
        readme = {}
        for a in flags:
            key, _, value = a[2:].partition("=")
            readme[{"momentum": "momentum_decay"}.get(key, key)] = value if value else True
        readme.pop("dir")
        registered = {k: v for k, v in exp.flags.items() if k != "dir" and v is not None}
        assert set(registered) == set(readme) - set(exp.requires), name
        for key, value in registered.items():
            if isinstance(value, bool):
                assert readme[key] is value, (name, key)
            elif isinstance(value, int | float):
                assert float(readme[key]) == value, (name, key)
            else:
                assert readme[key] == value, (name, key)
