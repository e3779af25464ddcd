"""The GPU suite (``benchmarks/gpu_suite.py``) runs end to end at its ``--tiny`` size on a CPU.

The figures themselves are only meaningful on a GPU; this checks that every figure's code
path runs and reports sane, finite values, so the script is ready for a machine with one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(only: str, tmp_path) -> list[dict]:
    suite = _suite()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = suite.main(
            ["--tiny", "--in_process", "--only", only, "--out", str(tmp_path / "f.jsonl")]
        )
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    assert code == 0, [r for r in lines if "error" in r]
    assert [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()] == lines
    for record in lines:
        assert record["device"] and record["jax"] and "gpu_suite.py --tiny" in record["command"]
    return lines


def test_peak_table_keys_device_kinds():
    suite = _suite()
    assert suite.peaks_for("NVIDIA H200")["bandwidth"] == 4.8e12
    assert suite.peaks_for("NVIDIA H100 80GB HBM3")["bandwidth"] == 3.35e12
    assert suite.peaks_for("NVIDIA H100 PCIe")["bandwidth"] == 2.0e12
    assert suite.peaks_for("NVIDIA A100-SXM4-80GB")["tf32"] == 156e12
    assert suite.peaks_for("NVIDIA L40S")["fp32"] == 91.6e12  # not L4's entry
    assert suite.peaks_for("cpu") is None
    for _, peak in suite.PEAKS:
        assert peak["tf32"] >= peak["fp32"] > 0 and peak["bandwidth"] > 0


@pytest.mark.slow
class TestChainsTiny:  # a class each: its own xdist scope
    def test_runs(self, tmp_path):
        lines = _run("chains", tmp_path)
        chains = [r for r in lines if r["figure"] == "chains"]
        assert [r["num_chains"] for r in chains] == [1, 2]
        assert all(r["draws_per_s"] > 0 and 0 <= r["mean_acceptance"] <= 1 for r in chains)
        summary = next(r for r in lines if r["figure"] == "chains_summary")
        assert summary["speedup"]["1"] == 1.0


class TestRooflineTiny:  # a class each: its own xdist scope
    def test_runs(self, tmp_path):
        roofline = [r for r in _run("roofline", tmp_path) if r["figure"] == "roofline"]
        assert len(roofline) == 2
        for r in roofline:
            assert r["bytes_per_grad"] > 0 and r["measured_grad_s"] > 0
            # an MLP's forward and backward pass: about 6 FLOPs per parameter and example, so
            # the cost of one chunk must have been scaled to the whole dataset
            n_p = r["num_examples"] * r["num_parameters"]
            assert 5 * n_p <= r["flops_per_grad"] <= 20 * n_p


@pytest.mark.slow
class TestPrecisionTiny:  # a class each: its own xdist scope
    def test_runs(self, tmp_path):
        precision = [r for r in _run("precision", tmp_path) if r["figure"] == "precision"]
        assert [r["matmul_precision"] for r in precision] == ["tensorfloat32", "highest"]
        for r in precision:
            assert all(math.isfinite(e) for e in r["energy_error_accurate"])
            assert 0 <= r["mean_acceptance"] <= 1 and r["leapfrog_step_s"] > 0


@pytest.mark.slow
def test_mnist160_tiny(tmp_path):
    (record,) = _run("mnist160", tmp_path)
    assert record["returncode"] == 0 and record["files_written"] > 0
    assert record["summary"]["iterations_done"] == 2
