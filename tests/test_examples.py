"""Every script in ``examples/`` runs, at its tiny size (``PPL_BNN_EXAMPLE_TINY=1``).

Each example is loaded as a module and its ``main()`` called, so that its results can be
checked, not only its exit code. One class per example: pytest-xdist (``--dist
loadscope``) runs each class on a worker of its own. The tiny sizes are far too short for the numbers to
mean anything; the checks are on shapes, finiteness and what each script promises. The
examples that take most of a minute run in the slow tier (`-m slow`).
"""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str, monkeypatch) -> dict:
    monkeypatch.setenv("PPL_BNN_EXAMPLE_TINY", "1")
    return runpy.run_path(str(EXAMPLES / name), run_name="example")


def test_every_example_is_tested():
    tested = {
        "own_model_every_backend.py",
        "cold_posterior_sweep.py",
        "read_run_in_arviz.py",
        "uci_one_dataset.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.slow  # every backend on one model: test_api's same-call test covers it fast
class TestOwnModelEveryBackend:
    def test_runs(self, monkeypatch):
        example = _load("own_model_every_backend.py", monkeypatch)
        results = example["main"]()
        assert set(results) == set(example["METHODS"])
        for method, result in results.items():
            sigma = result.samples["sigma"]
            assert sigma.ndim == 2 and np.all(np.isfinite(sigma)) and np.all(sigma > 0), method
            # every weight of the hand-written network is a posterior site of its own
            assert any(k.startswith("net/") for k in result.samples), method


@pytest.mark.slow
class TestColdPosteriorSweep:
    def test_runs(self, monkeypatch):
        example = _load("cold_posterior_sweep.py", monkeypatch)
        rows = example["main"]()
        assert list(rows) == list(example["TEMPERATURES"])
        for final in rows.values():
            assert 0 <= final["test/ens_accuracy"] <= 1 and math.isfinite(final["test/ens_nll"])


class TestReadRunInArviz:
    def test_runs(self, monkeypatch):
        example = _load("read_run_in_arviz.py", monkeypatch)
        tree, report = example["main"]()
        posterior, predictions = tree["posterior"], tree["predictions"]
        assert posterior.sizes["chain"] == 4 and posterior.sizes["draw"] >= 4
        assert predictions["test_prob"].sizes["class"] == 10
        # class probabilities of every draw sum to one
        np.testing.assert_allclose(predictions["test_prob"].sum("class"), 1.0, rtol=1e-4)
        assert "net.Dense_0.kernel" in posterior.data_vars
        assert set(report.entries) == {"test_prob", *posterior.data_vars}
        assert report.netcdf_path.is_file()


@pytest.mark.slow  # test_uci_benchmark runs one split end to end in the default tier
class TestUCIOneDataset:
    def test_runs(self, monkeypatch, uci_dir):
        example = _load("uci_one_dataset.py", monkeypatch)
        summary = example["main"](str(uci_dir), "yacht", "0")
        (row,) = summary["datasets"].values()
        assert list(summary["datasets"]) == ["yacht"] and row["num_splits"] == 1
        assert math.isfinite(row["test_ll"][0]) and row["rmse"][0] > 0
