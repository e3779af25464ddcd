"""Shared test harness: CPU only, float32 unless a test asks for float64, small helpers.

Fake CPU devices (``jax_num_cpu_devices``) can only be set before JAX initialises its
backends, so the sharding tests start fresh processes of their own; nothing here sets them.
"""

from __future__ import annotations

import os

os.environ["JAX_PLATFORMS"] = "cpu"  # before JAX is imported anywhere in the test run

import hashlib
import shutil
import tempfile
from pathlib import Path

# One XLA compilation cache for every process of this test run: the pytest-xdist workers
# and the subprocesses tests start inherit it (it is set before they start). Many tests
# compile the same small programs (metrics, predictions, the same MLP under several
# commands); the cache turns the repeats into reads. It starts empty for every run, so a
# run's time is that of a fresh clone; a JAX_COMPILATION_CACHE_DIR of your own is kept.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="ppl_bnn_tests_xla_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_platforms", "cpu")


def pytest_unconfigure(config):
    # the process that created the cache (the xdist controller, or the only process)
    if _OWN_CACHE is not None and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_cache_where_compilations_are_counted(request):
    """Tests that count backend compilations (``inference/test_compile.py``) see every one
    of them: a program read from the cache would not show up as compiled."""
    if request.module.__name__.rsplit(".", 1)[-1] != "test_compile":
        yield
        return
    from jax.experimental.compilation_cache import compilation_cache

    before = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()  # JAX decides once per process whether to use it
    yield
    jax.config.update("jax_enable_compilation_cache", before)
    compilation_cache.reset_cache()


# The UCI folder of the shared workspace (a user's clone of the repository does not have it).
UCI_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci"
UCI_SKIP_REASON = "needs ../shared/data/uci (not in a user's clone)"


@pytest.fixture(autouse=True)
def _restore_x64():
    """Every test ends with ``jax_enable_x64`` as it found it.

    ``build_problem(use_float64=True)`` (``--use_float64``) switches float64 on for the
    whole process, as the original did; without this, one such test would silently turn
    every later test into a float64 test.
    """
    before = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", before)


@pytest.fixture
def x64():
    """Run the test in float64 (restored afterwards by ``_restore_x64``)."""
    jax.config.update("jax_enable_x64", True)
    yield


@pytest.fixture(params=["float32", "float64"])
def dtype_name(request):
    """Parametrize a test over float32 and float64 (the x64 pass of the suite)."""
    jax.config.update("jax_enable_x64", request.param == "float64")
    yield request.param


@pytest.fixture
def uci_dir() -> Path:
    """The shared UCI folder, or skip."""
    if not (UCI_DIR / "yacht" / "data.txt").is_file():
        pytest.skip(UCI_SKIP_REASON)
    return UCI_DIR


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """``{relative path: (sha256, mtime_ns)}`` of every file (and folder) under ``folder``."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_file():
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        else:
            out[rel] = ("dir", 0)
    return out


@pytest.fixture
def snapshot_dir():
    """``snapshot_dir(folder)``: contents and modification times, to prove nothing changed."""
    return snapshot


@pytest.fixture
def cli(capsys):
    """``cli(*flags) -> (exit code, stdout, stderr)`` of ``ppl_bnn.cli.main``."""
    from ppl_bnn.cli import main

    def run(*argv: str):
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run
