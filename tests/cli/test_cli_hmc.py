"""``ppl-bnn hmc`` end to end at tiny sizes, and its one-line errors.

The README's MNIST-160 command runs on the embedded ``digits`` data. Its trajectory
(``--trajectory_len=1.5`` at ``--step_size=3.e-5``: 50,000 leapfrog steps, about two
minutes an iteration on a CPU) is shortened to 10 leapfrog steps in the default run; the
unchanged command runs under ``-m slow``, and its flags are parsed unchanged here.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from ppl_bnn.cli import build_parser
from ppl_bnn.cli.flags import config_from_args
from ppl_bnn.config import HMCConfig
from ppl_bnn.declare import priors
from ppl_bnn.inference.hmc import num_leapfrog_steps
from ppl_bnn.store.checkpoint import load_checkpoint

pytestmark = pytest.mark.filterwarnings("error")  # a strict harness: warnings fail

README_MNIST = [
    "--seed=0",
    "--weight_decay=1.",
    "--temperature=1.",
    "--dataset_name=mnist",
    "--model_name=mlp_classification",
    "--step_size=3.e-5",
    "--trajectory_len=1.5",
    "--num_iterations=100",
    "--max_num_leapfrog_steps=50000",
    "--num_burn_in_iterations=10",
    "--subset_train_to=160",
]


def readme_command(run_dir, **replace) -> list[str]:
    flags = []
    for flag in README_MNIST:
        name = flag[2:].split("=")[0]
        flags.append(f"--{name}={replace.pop(name)}" if name in replace else flag)
    assert not replace
    return ["hmc", *flags, f"--dir={run_dir}", "--no_progress"]


def read_tensorboard(folder) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` from the TFRecord-framed event files of a run."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        raw = path.read_bytes()
        pos = 0
        while pos < len(raw):
            (length,) = struct.unpack("<Q", raw[pos : pos + 8])
            event = Event.FromString(raw[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = v.simple_value
    return out


def check_run_dir(run_dir, num_iterations: int, num_chains: int, task: str) -> dict:
    """Every output of a run exists, and the summary agrees with the metrics file."""
    for name in ("config.json", "command.sh", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["num_chains"] == num_chains and config["dir"] == str(run_dir)
    assert "ppl-bnn hmc" in (run_dir / "command.sh").read_text()
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    # the resume state: the latest two checkpoints (--keep_checkpoints); the samples: one
    # file of site values and one of sampler statistics per post-burn-in iteration
    keep = range(max(1, num_iterations - 1), num_iterations + 1)
    assert checkpoints == [f"checkpoint_{i:06d}.npz" for i in keep]
    samples = sorted(p.name for p in (run_dir / "samples").iterdir())
    first = config["num_burn_in_iterations"] + 1
    steps = range(first, num_iterations + 1)
    assert samples == sorted(f"{kind}_{i:06d}.npz" for kind in ("sample", "stats") for i in steps)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, num_iterations + 1))
    last = records[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"] == {k: v for k, v in last.items() if "/" in k}
    assert summary["iterations_done"] == num_iterations and summary["complete"]
    assert summary["num_ensembled"] == last["num_ensembled"]
    assert summary["task"] == task and summary["num_chains"] == num_chains
    keys = ("accuracy", "nll", "ece") if task == "classification" else ("rmse", "nll")
    for split in ("train", "test"):
        for k in keys:
            assert math.isfinite(last[f"{split}/{k}"]), (split, k)
    # draws: one file per iteration, (chains, test points, k) predictions
    draws = sorted((run_dir / "draws").glob("draw_*.npz"))
    assert len(draws) == num_iterations
    with np.load(draws[-1]) as d:
        assert d["predictions"].shape[0] == num_chains
        assert d["params"].shape[0] == num_chains
    # TensorBoard: the same scalars as the metrics file
    events = read_tensorboard(run_dir / "tensorboard")
    tag = "test/accuracy" if task == "classification" else "test/rmse"
    assert set(events[tag]) == set(range(1, num_iterations + 1))
    assert events[tag][num_iterations] == pytest.approx(last[tag], rel=1e-6)
    return summary


def check_stdout(out: str, run_dir, summary: dict):
    line = json.loads(out.strip().splitlines()[-1])
    assert line.pop("summary") == f"{run_dir}/summary.json"
    assert line == summary["final"]


# ------------------------------------------------------------------- README runs
def test_readme_mnist_flags_parse_unchanged(tmp_path):
    args = build_parser().parse_args(readme_command(tmp_path / "r"))
    cfg = config_from_args(HMCConfig, args)
    assert (cfg.weight_decay, cfg.temperature, cfg.step_size, cfg.trajectory_len) == (
        1.0,
        1.0,
        3e-5,
        1.5,
    )
    assert (cfg.num_iterations, cfg.num_burn_in_iterations, cfg.subset_train_to) == (100, 10, 160)
    assert cfg.model_name == "mlp_classification" and cfg.dataset_name == "mnist"
    assert not cfg.no_mh and cfg.num_chains == 1
    # ceil(1.5 / 3e-5) = 50000 leapfrog steps: exactly the allowed maximum
    steps = num_leapfrog_steps(cfg.trajectory_len, cfg.step_size, cfg.max_num_leapfrog_steps)
    assert steps == 50_000


def test_readme_mnist_subset_command_on_digits(tmp_path, cli):
    run = tmp_path / "mnist_subset160"
    rc, out, err = cli(
        *readme_command(
            run,
            dataset_name="digits",
            num_iterations=3,
            num_burn_in_iterations=1,
            trajectory_len="3.e-4",  # 10 leapfrog steps instead of 50,000 (time)
        )
    )
    assert rc == 0, err
    summary = check_run_dir(run, 3, 1, "classification")
    check_stdout(out, run, summary)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["burn_in"] for r in records] == [True, False, False]
    assert [r["do_mh"] for r in records] == [False, True, True]
    assert all(r["num_leapfrog_steps"] == 10 for r in records)
    assert records[-1]["num_ensembled"] == sum(r["accepted"] for r in records[1:])
    assert summary["num_parameters"] == 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["subset_train_to"] == 160 and cfg["dataset_name"] == "digits"


@pytest.mark.slow
def test_readme_mnist_subset_command_full_trajectory(tmp_path, cli):
    """The README command unchanged but for the data and the number of iterations."""
    run = tmp_path / "full"
    rc, out, err = cli(
        *readme_command(run, dataset_name="digits", num_iterations=2, num_burn_in_iterations=1)
    )
    assert rc == 0, err
    check_run_dir(run, 2, 1, "classification")
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["num_leapfrog_steps"] == 50_000


# ------------------------------------------------------------------ regression
def test_synthetic_regression_two_chains_homoscedastic_learned_noise(tmp_path, cli):
    run = tmp_path / "synth"
    rc, out, err = cli(
        "hmc",
        f"--dir={run}",
        "--dataset_name=synthetic_regression",
        "--model_name=mlp_regression_small",
        "--likelihood=homoscedastic",
        "--weight_decay=10",
        "--step_size=1e-3",
        "--trajectory_len=5e-3",
        "--num_iterations=3",
        "--num_burn_in_iterations=1",
        "--num_chains=2",
        "--no_progress",
    )
    assert rc == 0, err
    summary = check_run_dir(run, 3, 2, "regression")
    check_stdout(out, run, summary)
    assert summary["num_parameters"] == 2 * 50 + 50 + 50 + 1 + 1  # one output, one noise
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(len(r["accept_prob_per_chain"]) == 2 for r in records)
    final = load_checkpoint(run / "checkpoints/checkpoint_000003.npz")
    assert final["position"]["net/Dense_0.kernel"].shape == (2, 2, 50)
    assert final["position"]["noise_std"].shape == (2,)  # a latent site (log space), per chain
    sigma = np.exp(final["position"]["noise_std"].astype(np.float64))
    with np.load(run / "draws/draw_000003.npz") as d:
        assert d["predictions"].shape == (2, 200, 2)  # 2 chains, 200 test points, (mean, std)
        # the predictive std of every test point is the chain's learned noise
        std = d["predictions"][:, :, 1]
        np.testing.assert_allclose(std, np.broadcast_to(sigma[:, None], std.shape), rtol=1e-5)


def test_uci_yacht_heteroscedastic(tmp_path, cli, uci_dir):
    run = tmp_path / "yacht"
    rc, out, err = cli(
        "hmc",
        f"--dir={run}",
        "--dataset_name=yacht",
        f"--data_dir={uci_dir}",
        "--model_name=mlp_regression_small",
        "--weight_decay=5",
        "--step_size=1e-3",
        "--trajectory_len=3e-3",
        "--num_iterations=2",
        "--no_progress",
    )
    assert rc == 0, err
    summary = check_run_dir(run, 2, 1, "regression")
    assert summary["dataset"] == "yacht@split0"
    ckpt = load_checkpoint(run / "checkpoints/checkpoint_000002.npz")
    assert ckpt["position"]["net/Dense_1.kernel"].shape == (1, 50, 2)  # mean and std heads
    assert summary["num_parameters"] == 6 * 50 + 50 + 50 * 2 + 2
    with np.load(run / "draws/draw_000002.npz") as d:
        assert d["predictions"].shape == (1, 31, 2)  # the 31 test points of split 0


# --------------------------------------------------------------- prior families
FAMILY_FORMULAS = {
    "gaussian": lambda x, v: -0.5 * x * x / v - 0.5 * np.log(2 * np.pi * v),
    "laplace": lambda x, v: -np.abs(x) / np.sqrt(v / 2) - np.log(2 * np.sqrt(v / 2)),
    "logistic": lambda x, v: (
        -np.abs(x) / (np.sqrt(3 * v) / np.pi)
        - 2 * np.log1p(np.exp(-np.abs(x) / (np.sqrt(3 * v) / np.pi)))
        - np.log(np.sqrt(3 * v) / np.pi)
    ),
    # df = 3: Gamma(2) / Gamma(1.5) = 2 / sqrt(pi)
    "student_t": lambda x, v: (
        np.log(2 / np.sqrt(np.pi)) - 0.5 * np.log(3 * np.pi * v) - 2 * np.log1p(x * x / (3 * v))
    ),
    # weight 0.3, ratio 5: stds s and 5 s with 0.3 s^2 + 0.7 * 25 s^2 = v
    "mixture_gaussian": lambda x, v: np.logaddexp(
        np.log(0.3) - 0.5 * x * x / (v / 17.8) - 0.5 * np.log(2 * np.pi * v / 17.8),
        np.log(0.7) - 0.5 * x * x / (25 * v / 17.8) - 0.5 * np.log(2 * np.pi * 25 * v / 17.8),
    ),
}


@pytest.mark.parametrize("family", sorted(priors.PRIOR_FAMILIES))
def test_every_prior_family_end_to_end(tmp_path, cli, family):
    """The logged log prior equals the family's formula over the sampled weights / T."""
    assert set(FAMILY_FORMULAS) == set(priors.PRIOR_FAMILIES)
    run = tmp_path / family
    wd, bias_wd, T = 4.0, 25.0, 0.5
    rc, out, err = cli(
        "hmc",
        f"--dir={run}",
        "--dataset_name=digits",
        "--subset_train_to=40",
        "--model_name=logistic_regression",
        f"--prior_family={family}",
        f"--weight_decay={wd}",
        f"--bias_weight_decay={bias_wd}",
        "--fan_in_scaling",
        f"--temperature={T}",
        "--student_t_df=3",
        "--mixture_weight=0.3",
        "--mixture_scale_ratio=5",
        "--step_size=1e-3",
        "--trajectory_len=2e-3",
        "--num_iterations=1",
        "--num_chains=2",
        "--no_progress",
    )
    assert rc == 0, err
    check_run_dir(run, 1, 2, "classification")
    position = load_checkpoint(run / "checkpoints/checkpoint_000001.npz")["position"]
    kernel = position["net/Dense_0.kernel"].astype(np.float64)  # (chains, 64, 10)
    bias = position["net/Dense_0.bias"].astype(np.float64)  # (chains, 10)
    f = FAMILY_FORMULAS[family]
    # the kernel's variance divided by its fan-in (64); the bias has its own precision
    per_chain = (f(kernel, 1 / wd / 64).sum((1, 2)) + f(bias, 1 / bias_wd).sum(1)) / T
    logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["log_prior"]
    assert logged == pytest.approx(per_chain.mean(), rel=1e-5)


# ---------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
    """A finished tiny run, for the errors below to (not) write into."""
    from ppl_bnn.cli import main

    run = tmp_path_factory.mktemp("cli") / "existing"
    rc = main(
        [
            "hmc",
            f"--dir={run}",
            "--dataset_name=digits",
            "--subset_train_to=40",
            "--model_name=logistic_regression",
            "--step_size=1e-3",
            "--trajectory_len=2e-3",
            "--num_iterations=1",
            "--no_progress",
        ]
    )
    assert rc == 0
    return run


BAD_INPUTS = {
    "unknown model": (["--model_name=resnet1000"], "unknown model 'resnet1000'"),
    "unknown dataset": (["--dataset_name=cifar11"], "unknown dataset 'cifar11'"),
    "unknown prior family": (["--prior_family=cauchy"], "unknown prior family 'cauchy'"),
    "unknown likelihood": (["--likelihood=poisson"], "unknown likelihood 'poisson'"),
    "likelihood for another task": (["--likelihood=homoscedastic"], "is for regression"),
    "L above the maximum": (
        ["--step_size=3e-5", "--trajectory_len=1.5", "--max_num_leapfrog_steps=1000"],
        "50000 leapfrog steps exceeds --max_num_leapfrog_steps=1000",
    ),
    "missing UCI data folder": (
        ["--dataset_name=yacht_2", "--data_dir=/nonexistent/uci"],
        "UCI dataset 'yacht' not found: no /nonexistent/uci/yacht/data.txt",
    ),
    "burn-in longer than the run": (
        ["--num_iterations=2", "--num_burn_in_iterations=3"],
        "--num_burn_in_iterations",
    ),
    "non-positive temperature": (["--temperature=0"], "temperature must be positive"),
    "no chains": (["--num_chains=0"], "--num_chains must be at least 1"),
    "subset larger than the data": (["--subset_train_to=5000"], "--subset_train_to=5000"),
    "settings of another run": (["--weight_decay=3"], "holds a run with other settings"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_one_line_error_exit_2_nothing_written(case, existing_run, cli, snapshot_dir):
    flags, message = BAD_INPUTS[case]
    base = [
        "--dataset_name=digits",
        "--subset_train_to=40",
        "--model_name=logistic_regression",
        "--step_size=1e-3",
        "--trajectory_len=2e-3",
        "--num_iterations=2",
        "--no_progress",
    ]
    names = {f.split("=")[0] for f in flags}
    argv = [f for f in base if f.split("=")[0] not in names] + flags
    before = snapshot_dir(existing_run)
    rc, out, err = cli("hmc", f"--dir={existing_run}", *argv)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ppl-bnn hmc: error: ")
    assert message in lines[0]
    assert snapshot_dir(existing_run) == before


def test_missing_dir_flag_is_a_usage_error(cli):
    with pytest.raises(SystemExit) as exit_info:
        cli("hmc", "--dataset_name=digits")
    assert exit_info.value.code == 2


def test_a_setting_an_older_run_did_not_record_resumes_at_its_default(tmp_path, cli):
    """A run directory written before a setting existed has no entry for it in
    config.json; it ran with the setting's default, so resuming with the default goes on,
    and anything else is refused as another run's settings."""
    import json

    argv = [
        "--dataset_name=digits",
        "--subset_train_to=40",
        "--model_name=logistic_regression",
        "--step_size=1e-3",
        "--trajectory_len=2e-3",
        "--no_progress",
    ]
    run = tmp_path / "older"
    rc, out, err = cli("hmc", f"--dir={run}", "--num_iterations=1", *argv)
    assert rc == 0, err
    cfg_file = run / "config.json"
    cfg = json.loads(cfg_file.read_text())
    del cfg["max_num_leapfrog_steps"]  # as if written before the setting existed
    cfg_file.write_text(json.dumps(cfg))
    rc, out, err = cli(
        "hmc", f"--dir={run}", "--num_iterations=2", "--max_num_leapfrog_steps=99", *argv
    )
    assert rc == 2 and "max_num_leapfrog_steps differ" in err, err
    rc, out, err = cli("hmc", f"--dir={run}", "--num_iterations=2", *argv)
    assert rc == 0, err
