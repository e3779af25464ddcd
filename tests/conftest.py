"""Shared test harness: CPU only, float32 unless a test asks for float64, small helpers.

Fake CPU devices (``jax_num_cpu_devices``) can only be set before JAX initialises its
backends, so the sharding tests start fresh processes of their own; nothing here sets them.
"""

from __future__ import annotations

import os

os.environ["JAX_PLATFORMS"] = "cpu"  # before JAX is imported anywhere in the test run

import hashlib
from pathlib import Path

import jax
import pytest

jax.config.update("jax_platforms", "cpu")

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
