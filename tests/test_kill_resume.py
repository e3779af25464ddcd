"""``kill -9`` a real ``ppl-bnn`` process, resume it, and get the uninterrupted run bit for bit.

The reference is one uninterrupted ``ppl-bnn hmc`` process. A killed run is started,
killed with SIGKILL (inside a checkpoint write on purpose, via ``kill_worker.py``, or at
random times), restarted with the same command until it finishes, and must end with the
same checkpoints, metrics, draws, samples and summary as the reference, except wall-clock
fields. The fast tests kill once or twice inside checkpoint writes; the slow one kills at
random points of start-up, sampling and writing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ppl_bnn.store.checkpoint import load_checkpoint

HERE = Path(__file__).parent
FLAGS = [
    "--dataset_name=digits",
    "--subset_train_to=40",
    "--model_name=logistic_regression",
    "--weight_decay=1.0",
    "--step_size=1e-3",
    "--trajectory_len=4e-3",
    "--num_burn_in_iterations=2",
    "--step_size_adaptation_speed=0.5",
    "--adapt_mass_matrix",
    "--num_chains=2",
    "--num_param_draws=4",
    "--seed=5",
    "--no_progress",
]
WALL_CLOCK = {"time", "iteration_wall", "elapsed", "wall_time_sampling", "wall_time_call"}
WALL_CLOCK |= {"wall_time_training", "wall_time"}
ORPHANS: list[str] = []  # temporary files the random kills left behind (checked last)


def ppl_bnn() -> list[str]:
    """The installed ``ppl-bnn`` script next to this Python (else the module)."""
    script = Path(sys.executable).with_name("ppl-bnn")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from ppl_bnn.cli import main; sys.exit(main())"]


def env(hash_seed: str = "0") -> dict[str, str]:
    """The processes' environment; ``hash_seed``: their ``PYTHONHASHSEED`` (a result must
    not depend on it: the VI tests give each process another)."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONHASHSEED": hash_seed}


def hmc_args(run: Path, iterations: int) -> list[str]:
    return ["hmc", f"--dir={run}", f"--num_iterations={iterations}", *FLAGS]


def run_to_end(run: Path, iterations: int, args=hmc_args, hash_seed: str = "0") -> float:
    """Run ``ppl-bnn`` (``args(run, iterations)``: hmc) to completion; its wall time."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [*ppl_bnn(), *args(run, iterations)], env=env(hash_seed), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return time.perf_counter() - t0


def killed_in_write(
    run: Path, iterations: int, n: int, where: str, args=hmc_args, hash_seed: str = "0"
) -> None:
    """Start a run that SIGKILLs itself in its ``n``-th checkpoint write at ``where``."""
    done = subprocess.run(
        [sys.executable, str(HERE / "kill_worker.py"), str(n), where, *args(run, iterations)],
        env=env(hash_seed),
        capture_output=True,
        text=True,
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-3000:])


def metrics_lines(run: Path) -> int:
    try:
        return (run / "metrics.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def killed_at(run: Path, iterations: int, lines: int, jitter: float) -> bool:
    """Start a run and SIGKILL it ``jitter`` seconds after ``metrics.jsonl`` holds
    ``lines`` lines (``lines=0``: ``jitter`` seconds after the start, in start-up); whether
    it was killed (rather than finished first). Timing by the run's own progress, not by
    the clock, so that a busy machine does not move every kill past the end."""
    proc = subprocess.Popen(
        [*ppl_bnn(), *hmc_args(run, iterations)],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while lines and metrics_lines(run) < lines and proc.poll() is None:
        time.sleep(0.002)
    try:
        proc.wait(timeout=jitter)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    return False


# ------------------------------------------------------------------ comparison
def _drop(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in WALL_CLOCK}


def assert_same_tree(a, b, path: str) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            if k not in WALL_CLOCK:
                assert_same_tree(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, tuple | list):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tree(x, y, f"{path}[{i}]")
    elif hasattr(a, "dtype"):
        x, y = np.asarray(a), np.asarray(b)
        assert x.dtype == y.dtype and x.shape == y.shape, path
        assert x.tobytes() == y.tobytes(), f"{path} differs"
    else:
        assert a == b, path


def npz_files(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """The draw or sample files of ``folder`` (exact names: temporary files are not)."""
    out = {}
    names = re.compile(r"(draw|sample)_\d{6,}\.npz")
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not names.fullmatch(p.name):
            continue
        with np.load(p, allow_pickle=False) as f:
            out[p.name] = {k: f[k] for k in f.files}
    return out


def assert_same_run(ref: Path, run: Path) -> None:
    """Same final state as the reference, bit for bit (wall-clock fields aside)."""
    ref_ckpts = sorted(p.name for p in (ref / "checkpoints").glob("checkpoint_*.npz"))
    run_ckpts = sorted(p.name for p in (run / "checkpoints").glob("checkpoint_*.npz"))
    assert run_ckpts[-len(ref_ckpts) :] == ref_ckpts  # the reference keeps as many
    for name in ref_ckpts[-2:]:
        a = load_checkpoint(ref / "checkpoints" / name)
        b = load_checkpoint(run / "checkpoints" / name)
        assert_same_tree(a, b, name)
    assert read_json_lines(run, "metrics.jsonl") == read_json_lines(ref, "metrics.jsonl")
    for sub in ("draws", "samples"):
        a, b = npz_files(ref / sub), npz_files(run / sub)
        assert list(a) == list(b), sub
        for name in a:
            assert_same_tree(a[name], b[name], f"{sub}/{name}")
    assert read_json_lines(run, "summary.json") == read_json_lines(ref, "summary.json")
    for name in ("predictions.npy",):
        if (ref / name).exists():
            assert (run / name).read_bytes() == (ref / name).read_bytes(), name


def read_json_lines(run: Path, name: str) -> list:
    """The JSON records of ``run/name``, wall-clock fields dropped, the run's own path
    replaced by ``RUN`` (it is recorded in the config and the summary)."""
    text = (run / name).read_text().replace(str(run), "RUN")
    if name.endswith(".jsonl"):
        return [_drop(json.loads(ln)) for ln in text.splitlines() if ln.strip()]
    return [_drop(json.loads(text))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of 6 iterations, and its wall time."""
    ref = tmp_path_factory.mktemp("kill") / "ref"
    return ref, run_to_end(ref, 6)


# ------------------------------------------------------------------------ fast
@pytest.fixture(scope="module")
def killed_twice(tmp_path_factory):
    """SIGKILL half-way through writing the 3rd checkpoint (during sampling, after
    burn-in), then, in the restarted process, with its 1st checkpoint complete but not yet
    renamed into place; then a restart to the end."""
    run = tmp_path_factory.mktemp("killed") / "run"
    killed_in_write(run, 6, 3, "mid-write")
    left = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert left, "the kill left no temporary file: it did not land inside the write"
    killed_in_write(run, 6, 1, "before-rename")
    run_to_end(run, 6)
    return run


def test_killed_inside_checkpoint_writes_resumes_bit_for_bit(reference, killed_twice):
    assert_same_run(reference[0], killed_twice)


def test_no_orphaned_temporary_files_after_resume(killed_twice):
    """The temporary files of the killed writes are removed by the next start."""
    left = sorted(str(p.relative_to(killed_twice)) for p in killed_twice.rglob(".tmp-*"))
    assert left == []


# ------------------------------------------------------------------------ VI
VI_FLAGS = [
    "--dataset_name=digits",
    "--subset_train_to=40",
    "--model_name=mlp_classification",
    "--batch_size=20",
    "--save_freq=1",
    "--eval_freq=1",
    "--vi_ensemble_size=4",
    "--num_param_draws=4",
    "--seed=5",
    "--no_progress",
]


def vi_args(run: Path, epochs: int) -> list[str]:
    return ["vi", f"--dir={run}", f"--num_epochs={epochs}", *VI_FLAGS]


@pytest.fixture(scope="module")
def vi_reference(tmp_path_factory):
    """One uninterrupted VI run of 4 epochs (a checkpoint every epoch)."""
    ref = tmp_path_factory.mktemp("vi") / "ref"
    run_to_end(ref, 4, vi_args, hash_seed="1")
    return ref


def test_two_uninterrupted_vi_runs_are_identical(vi_reference, tmp_path):
    """Same command, another process (another string-hash seed): the same run, bit for
    bit (the ELBO's terms were summed in an order that followed the hash seed)."""
    run = tmp_path / "again"
    run_to_end(run, 4, vi_args, hash_seed="3")
    assert_same_run(vi_reference, run)


def test_vi_killed_inside_a_checkpoint_write_resumes_bit_for_bit(vi_reference, tmp_path):
    run = tmp_path / "run"
    killed_in_write(run, 4, 2, "mid-write", vi_args, hash_seed="4")
    assert any(p.name.startswith(".tmp-") for p in (run / "checkpoints").iterdir())
    run_to_end(run, 4, vi_args, hash_seed="5")
    assert_same_run(vi_reference, run)
    assert sorted(run.rglob(".tmp-*")) == []


@pytest.mark.slow
@pytest.mark.parametrize("where", ["before-rename", "after-rename"])
def test_vi_killed_twice_resumes_bit_for_bit(where, vi_reference, tmp_path):
    run = tmp_path / "run"
    killed_in_write(run, 4, 3, where, vi_args, hash_seed="6")
    killed_in_write(run, 4, 1, where, vi_args, hash_seed="7")
    run_to_end(run, 4, vi_args, hash_seed="8")
    assert_same_run(vi_reference, run)


# ------------------------------------------------------------------------ slow
@pytest.mark.slow
@pytest.mark.parametrize("where", ["mid-write", "before-rename", "after-rename"])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_killed_at_every_point_of_a_write(where, n, reference, tmp_path):
    """A kill at each point of the ``n``-th write (in burn-in or sampling), twice."""
    run = tmp_path / "run"
    killed_in_write(run, 6, n, where)
    killed_in_write(run, 6, 1, where)
    run_to_end(run, 6)
    assert_same_run(reference[0], run)


@pytest.mark.slow
def test_random_kills_resume_bit_for_bit(reference, tmp_path):
    """Kills at random times over the whole life of the process (start-up, sampling,
    writes), several trials, each resumed until it finishes."""
    ref, _ = reference
    rng = np.random.default_rng(2026)
    total = 0
    for trial in range(6):
        run = tmp_path / f"trial{trial}"
        kills = startups = 0
        while True:
            done = metrics_lines(run)  # lines on disk (some may be past the checkpoint)
            if startups < 2 and rng.uniform() < 0.3:  # in start-up: imports, compiling
                startups += 1
                lines, jitter = 0, float(rng.uniform(0.0, 3.0))
            elif done < 6:  # while sampling and writing: just after a later metrics line
                lines = int(rng.integers(done + 1, 7))
                jitter = float(rng.uniform(0, 0.05))
            else:  # every line is written (the last checkpoint maybe not): let it finish
                lines, jitter = 0, 600.0
            if not killed_at(run, 6, lines, jitter):
                break
            kills += 1
            assert kills < 30, "the run never finished"
        assert_same_run(ref, run)
        ORPHANS.extend(str(p.relative_to(tmp_path)) for p in run.rglob(".tmp-*"))
        total += kills
    assert total >= 6, f"only {total} kills landed before the runs finished"
    # one more trial: a kill inside a write at a random checkpoint, twice
    run = tmp_path / "writes"
    for _ in range(2):
        killed_in_write(run, 6, int(rng.integers(1, 4)), "mid-write")
    run_to_end(run, 6)
    assert_same_run(ref, run)


@pytest.mark.slow
def test_random_kills_leave_no_temporary_files():
    """After the random-kill trials above resumed to the end, no ``.tmp-*`` file is left."""
    assert ORPHANS == []
