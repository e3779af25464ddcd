"""Smoke runs of the scale benchmarks at tiny sizes (the real runs are in docs/distributed.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_leapfrog_runs_at_tiny_size():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "gpu_leapfrog.py"),
            "--num_examples=64",
            "--microbatch_size=16",
            "--num_leapfrog=3",
            "--repeats=1",
            "--model_name=mlp_classification",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert [r["event"] for r in records] == ["setup", "grad", "iteration", "iteration", "summary"]
    assert records[0]["padded_examples"] == 64 and records[0]["microbatch_size"] == 16
    summary = records[-1]
    assert summary["grad_s"] > 0 and summary["iteration_over_L_s"] > 0
    assert [r["num_leapfrog"] for r in records[2:4]] == [1, 3]


def test_fullbatch_memory_chunking_bounds_temporaries():
    spec = importlib.util.spec_from_file_location(
        "fullbatch_memory", BENCHMARKS / "fullbatch_memory.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    whole = bench.measure(4096, None, "mlp_classification", 1, image_shape=(4, 4, 3))
    chunked = bench.measure(4096, 64, "mlp_classification", 1, image_shape=(4, 4, 3))
    assert whole["num_examples"] == chunked["num_examples"] == 4096
    assert whole["grad_s"] > 0 and chunked["grad_s"] > 0 and whole["peak_rss_mb"] > 0
    # the hidden activations of 4096 examples (~8 MB) against those of one chunk of 64
    assert chunked["temp_mb"] < 0.5 * whole["temp_mb"]
