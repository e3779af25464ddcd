"""``--reference=hmc-reference:<task>``: the published HMC predictive probabilities (an
N x C comma-separated file, written here in the competition's format) scored against a
run's test predictions: agreement and total variation by hand, refusals of a wrong size,
of rows that are not probabilities and of a missing download; one method end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ppl_bnn.data import Dataset
from ppl_bnn.evaluation import metrics
from ppl_bnn.evaluation.reference import compare_to_reference, load_reference, run_predictions


def _write_probs(root, task: str, probs: np.ndarray):
    folder = root / "hmc_reference" / task
    folder.mkdir(parents=True)
    np.savetxt(folder / "probs.csv", probs, delimiter=",")  # the starter kit's format
    return folder / "probs.csv"


def _dataset(n: int, c: int) -> Dataset:
    x = np.zeros((n, 2), np.float32)
    y = np.zeros(n, np.int32)
    return Dataset("toy", x, y, x, y, "classification", num_classes=c)


def test_hmc_reference_scores_agreement_and_total_variation(tmp_path, monkeypatch):
    monkeypatch.setenv("PPL_BNN_DATA", str(tmp_path))
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(10), size=50)
    _write_probs(tmp_path, "cifar10", ref)
    ds = _dataset(50, 10)
    loaded = load_reference("hmc-reference:cifar10", ds)
    np.testing.assert_allclose(loaded.predictions, ref, rtol=1e-12)
    members = rng.dirichlet(np.ones(10), size=(3, 50))
    out = compare_to_reference(members, loaded, ds)
    avg = members.mean(0)
    assert out == {
        "agreement": pytest.approx(np.mean(avg.argmax(1) == ref.argmax(1))),
        "total_variation": pytest.approx(0.5 * np.abs(avg - ref).sum(1).mean()),
    }
    assert compare_to_reference(ref[None], loaded, ds) == {"agreement": 1.0, "total_variation": 0.0}
    # a plain .csv path works the same way
    direct = load_reference(tmp_path / "hmc_reference" / "cifar10" / "probs.csv", ds)
    np.testing.assert_array_equal(direct.predictions, loaded.predictions)


def test_hmc_reference_refusals(tmp_path, monkeypatch):
    monkeypatch.setenv("PPL_BNN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ppl-bnn download hmc-reference imdb"):
        load_reference("hmc-reference:imdb", _dataset(4, 2))
    _write_probs(tmp_path, "imdb", np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="predicts 4 test points, the dataset has 5"):
        load_reference("hmc-reference:imdb", _dataset(5, 2))
    with pytest.raises(ValueError, match="has 2 classes, the dataset 3"):
        load_reference("hmc-reference:imdb", _dataset(4, 3))
    _write_probs(tmp_path, "bad", np.array([[0.2, 0.9], [0.6, 0.4]]))
    with pytest.raises(ValueError, match="not probability vectors"):
        load_reference("hmc-reference:bad", _dataset(2, 2))


def test_a_method_scored_against_a_published_reference_end_to_end(tmp_path, cli, monkeypatch):
    """``ppl-bnn compare --reference=hmc-reference:<task>`` runs no HMC and scores each
    method against the file; here the task is digits (360 test points, 10 classes)."""
    monkeypatch.setenv("PPL_BNN_DATA", str(tmp_path / "data"))
    ref = np.random.default_rng(1).dirichlet(np.ones(10), size=360)
    _write_probs(tmp_path / "data", "digits", ref)
    rc, out, err = cli(
        "compare",
        f"--dir={tmp_path / 'cmp'}",
        "--methods=sgd",
        "--reference=hmc-reference:digits",
        "--subset_train_to=80",
        "--batch_size=40",
        "--model_name=logistic_regression",
        "--sgd_num_epochs=1",
        "--bootstrap=50",
    )
    assert rc == 0, err
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    sgd = result["methods"]["sgd"]
    probs = run_predictions(tmp_path / "cmp" / "sgd").mean(0)
    assert sgd["agreement"] == pytest.approx(metrics.agreement(probs, ref), abs=1e-9)
    assert sgd["total_variation"] == pytest.approx(metrics.total_variation(probs, ref), rel=1e-5)
    assert result["hmc_half_vs_half"] is None and "hmc" not in result["methods"]
    assert (tmp_path / "cmp" / "distance_to_hmc.png").is_file()
