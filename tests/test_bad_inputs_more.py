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

import json
import re
from pathlib import Path

import numpy as np
import pytest

from ppl_bnn.store.checkpoint import latest_checkpoint, load_checkpoint

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
        "import sys; from ppl_bnn.store.checkpoint import load_checkpoint; "
        "print(sorted(load_checkpoint(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(checkpoints["nuts"])], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "position" in done.stdout


# ------------------------------------------------------------------ files for the cases
BAD_MODELS = """
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist


def reg(x, y=None):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, s), obs=y)


def nan(x, y=None):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w + jnp.log(-1.0 - w[0] ** 2), 1.0), obs=y)


def nan_off_zero(x, y=None):
    # finite only where every weight is 0: every proposal from there is NaN
    w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    loc = x @ w + jnp.where(jnp.any(w != 0), jnp.nan, 0.0)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(loc, 1.0), obs=y)


def raises(x, y=None):
    raise RuntimeError("the model is not ready")


def broadcast(x, y=None):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1] + 1]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def discrete(x, y=None):
    k = numpyro.sample("k", dist.Poisson(3.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x[:, 0] * k, 1.0), obs=y)
"""


class Inputs:
    """A folder of models and data files, written once for the module."""

    def __init__(self, folder: Path):
        self.folder = folder
        (folder / "models.py").write_text(BAD_MODELS)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(30, 3)).astype(np.float32)
        y = (x @ np.array([1.0, -1.0, 0.5]) + 0.1 * rng.normal(size=30)).astype(np.float32)
        self.x, self.y = x, y
        self.reg = self.npz("reg", x_train=x[:24], y_train=y[:24], x_test=x[24:], y_test=y[24:])
        labels = (y > 0).astype(np.int64)
        self.labels = self.npz(
            "labels", x_train=x[:24], y_train=labels[:24], x_test=x[24:], y_test=labels[24:]
        )

    def model(self, name: str) -> str:
        return f"--model={self.folder / 'models.py'}:{name}"

    def npz(self, name: str, **arrays) -> str:
        path = self.folder / f"{name}.npz"
        np.savez(path, **arrays)
        return str(path)

    def labels_with(self, name: str, **change) -> str:
        with np.load(self.labels) as f:
            arrays = {k: f[k] for k in f.files}
        return self.npz(name, **{**arrays, **change})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    return Inputs(tmp_path_factory.mktemp("inputs"))


HMC_FAST = ["--step_size=1e-2", "--trajectory_len=0.03", "--num_iterations=3", "--no_progress"]


def hmc_on(inputs: Inputs, model: str, data: str, *flags: str) -> list[str]:
    return ["hmc", inputs.model(model), f"--dataset_name={data}", *HMC_FAST, *flags]


def assert_refused(cli, argv: list[str], new: Path, pattern: str) -> str:
    rc, _, err = cli(*argv[:1], f"--dir={new}", *argv[1:])
    line = one_line_error(rc, err, argv[0], pattern)
    assert not new.exists(), "a run directory was created"
    return line


# ------------------------------------------------------------------ non-finite densities
def test_nan_log_density_at_the_initial_point_writes_nothing(inputs, tmp_path, cli):
    assert_refused(
        cli,
        hmc_on(inputs, "nan", inputs.reg),
        tmp_path / "run",
        r"log density at the initial point is nan .*nothing was written",
    )


@pytest.mark.parametrize("command", ["sgmcmc", "sgd", "vi"])
def test_nan_log_density_under_minibatch_methods(command, inputs, tmp_path, cli):
    argv = [command, inputs.model("nan"), f"--dataset_name={inputs.reg}"]
    argv += ["--batch_size=12", "--num_epochs=1", "--no_progress"]
    assert_refused(cli, argv, tmp_path / "run", r"initial point is nan")


def test_nan_under_nuts_is_one_line(inputs, tmp_path, cli):
    argv = ["nuts", inputs.model("nan"), f"--dataset_name={inputs.reg}", "--num_warmup=2"]
    argv += ["--num_samples=1", "--num_chains=1", "--no_progress"]
    assert_refused(cli, argv, tmp_path / "run", r"nan|invalid")


def test_nan_on_every_proposal_stops_naming_the_iteration(inputs, tmp_path, cli):
    """Finite at the start (all weights 0), NaN at every proposal: the run stops at the
    patience with one line, keeping the checkpoints of the iterations before."""
    from ppl_bnn.store.checkpoint import save_checkpoint

    start = save_checkpoint(tmp_path / "zero.npz", {"position": {"w": np.zeros(3, np.float32)}})
    run = tmp_path / "run"
    argv = hmc_on(inputs, "nan_off_zero", inputs.reg, f"--init_checkpoint={start}")
    argv = [a for a in argv if not a.startswith(("--num_iterations", "--trajectory_len"))]
    argv.append("--trajectory_len=1e-2")  # one leapfrog step: proposals at finite positions
    rc, _, err = cli(
        argv[0], f"--dir={run}", *argv[1:], "--num_iterations=6", "--zero_accept_patience=3"
    )
    one_line_error(rc, err, "hmc", r"^ppl-bnn hmc: error: iteration 3: .*every proposal.* nan")
    kept = sorted(p.name for p in (run / "checkpoints").glob("checkpoint_*.npz"))
    assert kept == ["checkpoint_000001.npz", "checkpoint_000002.npz"]
    assert (run / "metrics.jsonl").read_text().count("\n") == 2


def test_a_state_that_turns_non_finite_stops_the_run(tmp_path, cli):
    """SGD with an absurd step size: the parameters overflow in the first epoch."""
    rc, _, err = cli("sgd", f"--dir={tmp_path / 'run'}", *SMALL, *MINI, "--init_step_size=1e38")
    one_line_error(rc, err, "sgd", r"epoch 1: .*(not finite|log density is nan)")
    assert not list((tmp_path / "run" / "checkpoints").glob("checkpoint_*.npz"))


def test_non_finite_step_size_flag(tmp_path, cli):
    argv = ["hmc", *SMALL, "--step_size=nan", "--trajectory_len=1e-3", "--num_iterations=2"]
    assert_refused(cli, argv, tmp_path / "run", r"--step_size must be a finite number")


def _linear(x, y=None):
    import numpyro
    import numpyro.distributions as dist

    w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def _with(a: np.ndarray, index, value) -> np.ndarray:
    a = a.astype(np.result_type(a, type(value))).copy()
    a[index] = value
    return a


INFER_CASES = {
    "nan in x": (lambda x, y: (_with(x, (3, 1), np.nan), y), {}, r"x holds nan at index \(3, 1\)"),
    "inf in x": (lambda x, y: (_with(x, (0, 0), np.inf), y), {}, r"x holds inf"),
    "-inf in x": (lambda x, y: (_with(x, (0, 0), -np.inf), y), {}, r"x holds -inf"),
    "nan in y": (lambda x, y: (x, _with(y, 2, np.nan)), {}, r"y holds nan at index \(2,\)"),
    "nan step_size": (lambda x, y: (x, y), {"step_size": float("nan")}, r"step_size must be"),
    "1-D x": (lambda x, y: (x[:, 0], y), {}, r"x has shape \(30,\).*x\[:, None\]"),
    "string x": (lambda x, y: (x.astype(str), y), {}, r"x has dtype <U.*numbers"),
    "complex x": (lambda x, y: (x + 1j, y), {}, r"x holds complex numbers"),
    "integer y under a normal likelihood": (
        lambda x, y: (x, (y > 0).astype(int)),
        {},
        r"y holds integers .*continuous \(Normal\)",
    ),
}


@pytest.mark.parametrize("method", ["nuts", "hmc", "sgld", "sgd", "vi"])
@pytest.mark.parametrize("case", list(INFER_CASES))
def test_infer_refuses_bad_arrays(case, method, inputs):
    import ppl_bnn

    if method != "nuts" and case not in ("nan in x", "nan in y", "nan step_size"):
        pytest.skip("the arrays are checked before the method is chosen")
    change, kw, pattern = INFER_CASES[case]
    x, y = change(inputs.x, inputs.y)
    with pytest.raises(ValueError, match=pattern) as e:
        ppl_bnn.infer(_linear, x, y, method=method, num_warmup=2, num_samples=1, num_chains=1, **kw)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ a user's regression model
REG_COMMANDS = {
    "hmc": HMC_FAST,
    "nuts": ["--num_warmup=2", "--num_samples=1", "--num_chains=1", "--no_progress"],
    "sgmcmc": ["--batch_size=12", "--num_epochs=2", "--num_burnin_epochs=1", "--no_progress"],
    "sgd": ["--batch_size=12", "--num_epochs=1", "--no_progress"],
    "vi": ["--batch_size=12", "--num_epochs=1", "--vi_ensemble_size=2", "--no_progress"],
}


@pytest.mark.parametrize("command", list(REG_COMMANDS))
def test_a_user_regression_model_runs_on_float_targets(command, inputs, tmp_path, cli):
    run = tmp_path / "run"
    argv = [command, f"--dir={run}", inputs.model("reg"), f"--dataset_name={inputs.reg}"]
    rc, out, err = cli(*argv, *REG_COMMANDS[command])
    assert rc == 0, err[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "regression"
    assert "test/rmse" in summary["final"]


# ------------------------------------------------------------------ inputs refused in one line
def _case_argv(inputs: Inputs, case: str) -> list[str]:
    x = inputs.x
    if case == "complex x_train":
        data = inputs.labels_with("complex", x_train=x[:24] + 1j)
        return hmc_on(inputs, "reg", data)[:1] + SMALL[1:3] + [f"--dataset_name={data}"]
    if case == "1-D x_train":
        data = inputs.labels_with("flat", x_train=x[:24, 0], x_test=x[24:, 0])
        return hmc_on(inputs, "reg", data)
    if case == "prior flag with --model":
        return hmc_on(inputs, "reg", inputs.reg, "--weight_decay=3")
    if case == "prior family with --model":
        return hmc_on(inputs, "reg", inputs.reg, "--prior_family=student_t")
    if case == "integer labels under a regression model":
        return hmc_on(inputs, "reg", inputs.labels)
    if case == "num_classes=[3, 4]":
        return hmc_on(inputs, "reg", inputs.labels_with("nc_list", num_classes=np.array([3, 4])))
    if case == "num_classes=1e9":
        return hmc_on(inputs, "reg", inputs.labels_with("nc_float", num_classes=np.array(1e9)))
    if case == "num_classes=10**9":
        return hmc_on(inputs, "reg", inputs.labels_with("nc_int", num_classes=np.array(10**9)))
    if case == "a model that raises":
        return hmc_on(inputs, "raises", inputs.reg)
    if case == "a broadcasting error in a model":
        return hmc_on(inputs, "broadcast", inputs.reg)
    if case == "a discrete latent under nuts":
        argv = hmc_on(inputs, "discrete", inputs.reg)[:3]
        return ["nuts", *argv[1:], "--num_warmup=2", "--num_samples=1", "--no_progress"]
    if case == "--num_iterations=0":
        return ["hmc", *SMALL, "--step_size=1e-3", "--trajectory_len=1e-3", "--num_iterations=0"]
    raise AssertionError(case)


CLI_CASES = {
    "complex x_train": r"complex\.npz: x_train holds complex numbers",
    "1-D x_train": r"flat\.npz: x_train has shape \(24,\).*x_train\[:, None\]",
    "prior flag with --model": r"--weight_decay=3.0 does not apply to --model=.*models\.py:reg",
    "prior family with --model": r"--prior_family=student_t does not apply to --model",
    "integer labels under a regression model": r"y_train holds integers .*continuous \(Normal\)",
    "num_classes=[3, 4]": r"nc_list\.npz: num_classes must be one integer, got \[3, 4\]",
    "num_classes=1e9": r"nc_float\.npz: num_classes must be one integer",
    "num_classes=10**9": r"nc_int\.npz: num_classes=1000000000 must lie in 2\.\.100000",
    "a model that raises": r"model 'raises' raised RuntimeError at models\.py:\d+ .*not ready",
    "a broadcasting error in a model": (
        r"model 'broadcast' raised TypeError at models\.py:\d+ \(numpyro\.sample\(\"y\".*"
        r"after site 'w'"
    ),
    "a discrete latent under nuts": r"latent site 'k' is discrete \(Poisson\)",
    "--num_iterations=0": r"--num_iterations must be at least 1, got 0",
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_input_is_one_line(case, inputs, tmp_path, cli):
    assert_refused(cli, _case_argv(inputs, case), tmp_path / "run", CLI_CASES[case])


# ------------------------------------------------------------------ crafted checkpoints
def _crafted(path: Path, kind: str) -> Path:
    import io
    import zipfile

    from ppl_bnn.store import checkpoint as ckpt

    if kind == "deep":
        depth = 200_000
        text = (
            f'{{"format": "ppl_bnn-checkpoint", "version": {ckpt.VERSION}, "tree": '
            + '{"list": [' * depth
            + "]}" * depth
            + "}"
        ).encode()
        members = {"__tree__": np.frombuffer(text, np.uint8)}
        members["__sha256__"] = np.frombuffer(ckpt._digest(text, []), np.uint8)
        np.savez(path, **members)
        return path
    # an array whose header declares 10**13 float64 values (80 TB) with 8 bytes behind it
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**13,)}
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("0.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + bytes(8))
        z.writestr("__tree__.npy", _npy(np.frombuffer(b"{}", np.uint8)))
        z.writestr("__sha256__.npy", _npy(np.zeros(32, np.uint8)))
    return path


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["deep", "huge"])
def test_a_crafted_checkpoint_is_refused_in_one_line(kind, tmp_path, cli):
    bad = _crafted(tmp_path / "crafted.npz", kind)
    argv = ["hmc", *SMALL, "--step_size=1e-3", "--trajectory_len=1e-3", "--num_iterations=1"]
    assert_refused(cli, [*argv, f"--init_checkpoint={bad}"], tmp_path / "run", r"crafted\.npz")


@pytest.mark.parametrize("kind", ["deep", "huge"])
def test_a_crafted_latest_checkpoint_falls_back_to_the_previous(kind, tmp_path, cli):
    run = tmp_path / "run"
    argv = ["hmc", f"--dir={run}", *SMALL, "--step_size=1e-3", "--trajectory_len=1e-3"]
    rc, _, err = cli(*argv, "--num_iterations=2")
    assert rc == 0, err
    _crafted(run / "checkpoints" / "checkpoint_000002.npz", kind)
    rc, _, err = cli(*argv, "--num_iterations=3")
    assert rc == 0, err[-3000:]
    assert "checkpoint_000002.npz" in err  # the one line that says it fell back
    assert json.loads((run / "summary.json").read_text())["iterations_done"] == 3
