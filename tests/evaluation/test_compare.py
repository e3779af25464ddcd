"""Agreement, total variation and Wasserstein distances against hand-computed values;
references from files and run directories; ``ppl-bnn compare`` end to end at tiny size."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from ppl_bnn.data import Dataset
from ppl_bnn.evaluation import metrics
from ppl_bnn.evaluation.reference import (
    Reference,
    bayes_average,
    compare_to_reference,
    half_vs_half,
    load_reference,
    mixture_samples,
    per_point_distances,
)

P = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
Q = np.array([[0.5, 0.4, 0.1], [0.6, 0.2, 0.2], [0.0, 0.2, 0.8]])


def _dataset(task="classification", n=3, y_scale=1.0):
    x = np.zeros((n, 2), np.float32)
    y = np.zeros(n, np.int32 if task == "classification" else np.float32)
    return Dataset(
        "toy",
        x,
        y,
        x,
        y,
        task,
        num_classes=3 if task == "classification" else None,
        y_scale=y_scale,
    )


def test_agreement_and_total_variation_by_hand():
    # argmax P = [0, 1, 2], argmax Q = [0, 0, 2]: 2 of 3 agree
    assert metrics.agreement(P, Q) == pytest.approx(2 / 3)
    # TV per row: 0.5*(0.1+0.1+0) = 0.1; 0.5*(0.4+0.3+0.1) = 0.4; 0.5*(0.1+0.1+0) = 0.1
    assert metrics.total_variation(P, Q) == pytest.approx(0.2)
    assert metrics.total_variation(P, P) == 0.0 and metrics.agreement(P, P) == 1.0


def test_wasserstein2_by_hand():
    # equal sample counts: W2^2 = mean of squared differences of sorted samples
    a, b = np.array([[0.0, 1.0, 5.0]]), np.array([[2.0, 1.0, 0.0]])
    assert metrics.wasserstein2(a, b) == pytest.approx(np.sqrt((0 + 0 + 9) / 3))
    # unequal counts: {0} vs {-1, 1}: half the mass moves by 1 each way -> W2 = 1
    assert metrics.wasserstein2(np.array([[0.0]]), np.array([[-1.0, 1.0]])) == pytest.approx(1.0)
    # averaged over inputs
    two = metrics.wasserstein2(np.array([[0.0], [0.0]]), np.array([[3.0], [4.0]]))
    assert two == pytest.approx(3.5)


def test_w2_between_gaussian_mixtures_matches_the_closed_form():
    """W2(N(m1, s1^2), N(m2, s2^2))^2 = (m1 - m2)^2 + (s1 - s2)^2; samples of each
    one-member 'mixture' estimate it with a Monte Carlo error of order 1/sqrt(S)."""
    ds = _dataset("regression", n=4, y_scale=2.0)
    ours = np.array([[[0.0, 1.0]] * 4])  # (members=1, n=4, [mean, std])
    ref = Reference(np.array([[1.0, 2.0]] * 4), np.array([[[1.0, 2.0]] * 4]))
    out = compare_to_reference(ours, ref, ds, num_samples=20000)
    assert out["w2"] == pytest.approx(2.0 * np.sqrt(2.0), rel=0.03)  # in original units
    # W1 of two Gaussians has no such simple form, but W1 <= W2 always
    assert 0 < out["w1"] <= out["w2"]


def test_mixture_samples_have_the_mixture_moments():
    members = np.array([[[0.0, 1.0]], [[4.0, 1.0]]])  # two members, one input
    s = mixture_samples(members, 200_000, np.random.default_rng(0))
    assert s.shape == (1, 200_000)
    assert s.mean() == pytest.approx(2.0, abs=0.02)
    assert s.var() == pytest.approx(1.0 + 4.0, rel=0.02)  # within + between variance
    avg = bayes_average(members, "regression")
    np.testing.assert_allclose(avg, [[2.0, np.sqrt(5.0)]])


def test_classification_comparison_uses_the_member_average():
    ds = _dataset()
    members = np.stack([P, Q])
    out = compare_to_reference(members, Reference(Q), ds)
    avg = (P + Q) / 2
    assert out == {
        "agreement": metrics.agreement(avg, Q),
        "total_variation": metrics.total_variation(avg, Q),
    }


def test_per_point_distances_average_to_the_comparison():
    ds = _dataset()
    members = np.stack([P, Q])
    per = per_point_distances(members, Reference(Q), ds)
    whole = compare_to_reference(members, Reference(Q), ds)
    assert per["agreement"].shape == (3,) and per["agreement"].mean() == whole["agreement"]
    assert per["total_variation"].mean() == pytest.approx(whole["total_variation"])
    reg = _dataset("regression", n=4, y_scale=2.0)
    ours = np.array([[[0.0, 1.0]] * 4])
    ref = Reference(np.array([[1.0, 2.0]] * 4), np.array([[[1.0, 2.0]] * 4]))
    w2 = per_point_distances(ours, ref, reg, num_samples=500)["w2"]
    assert w2.shape == (4,)
    assert w2.mean() == pytest.approx(compare_to_reference(ours, ref, reg, num_samples=500)["w2"])


def test_half_vs_half_floor_splits_chains_then_draws():
    ds = _dataset()
    # (chains=4, draws=2, n=3, k=3): chains 1-2 predict P, chains 3-4 predict Q
    by_chain = np.stack([np.stack([P, P])] * 2 + [np.stack([Q, Q])] * 2)
    per, how = half_vs_half(by_chain, ds)
    assert how == "chains 1-2 against chains 3-4"
    assert per["total_variation"].mean() == pytest.approx(metrics.total_variation(P, Q))
    # one chain: first half of its draws against the second
    per, how = half_vs_half(np.stack([np.stack([P, P, Q, Q])]), ds)
    assert how.startswith("draws 1-2 against draws 3-4")
    assert per["agreement"].mean() == pytest.approx(2 / 3)
    assert half_vs_half(np.stack([np.stack([P])]), ds) is None


def test_load_reference_from_files_and_run_dirs(tmp_path):
    from ppl_bnn.store.rundir import RunDir

    ds = _dataset()
    np.save(tmp_path / "probs.npy", Q)
    ref = load_reference(tmp_path / "probs.npy", ds)
    np.testing.assert_array_equal(ref.predictions, Q)
    rd = RunDir(tmp_path / "run", tensorboard=False)
    rd.path.mkdir()
    rd.save_draw(
        1,
        predictions=np.stack([P, P]).astype(np.float32),
        params=np.zeros((2, 0)),
        burn_in=np.asarray(True),
    )
    rd.save_draw(
        2,
        predictions=np.stack([P, Q]).astype(np.float32),
        params=np.zeros((2, 0)),
        burn_in=np.asarray(False),
    )
    rd.save_draw(
        3,
        predictions=np.stack([Q, Q]).astype(np.float32),
        params=np.zeros((2, 0)),
        burn_in=np.asarray(False),
    )
    ref = load_reference(tmp_path / "run", ds)
    assert ref.members.shape == (4, 3, 3)  # burn-in draw left out, chains x draws kept
    np.testing.assert_allclose(ref.predictions, (P + 3 * Q) / 4, rtol=1e-6)
    with pytest.raises(ValueError, match="test points"):
        load_reference(tmp_path / "probs.npy", replace(ds, x_test=np.zeros((5, 2))))
    with pytest.raises(FileNotFoundError):
        load_reference(tmp_path / "missing", ds)
    # regression samples (n, S) are used as they are
    np.save(tmp_path / "samples.npy", np.random.default_rng(0).normal(size=(3, 50)))
    reg = load_reference(tmp_path / "samples.npy", _dataset("regression"))
    assert reg.samples.shape == (3, 50)


def test_compare_end_to_end(tmp_path, cli):
    """Every method on one model at a tiny size: one table, a report with plots, numbers
    that agree with the runs' own summaries."""
    rc, out, err = cli(
        "compare",
        f"--dir={tmp_path}",
        "--subset_train_to=160",
        "--batch_size=40",
        "--model_name=logistic_regression",
        "--hmc_num_chains=2",
        "--hmc_num_iterations=5",
        "--hmc_num_burn_in_iterations=1",
        "--hmc_trajectory_len=0.05",
        "--sgd_num_epochs=2",
        "--ensemble_size=2",
        "--sgmcmc_num_epochs=4",
        "--sgmcmc_num_burnin_epochs=1",
        "--sgmcmc_ensemble_freq=1",
        "--vi_num_epochs=2",
        "--vi_ensemble_size=3",
    )
    assert rc == 0, err
    result = json.loads((tmp_path / "compare.json").read_text())
    methods = result["methods"]
    assert list(methods) == ["hmc", "sgd", "ensemble", "sgld", "sghmc", "sghmc-clr-prec", "mfvi"]
    assert methods["hmc"]["agreement"] == 1.0 and methods["hmc"]["total_variation"] == 0.0
    for name, row in methods.items():
        assert 0 <= row["accuracy"] <= 1 and row["nll"] > 0 and 0 <= row["ece"] <= 1
        assert 0 <= row["total_variation"] <= 1 and row["wall_time"] > 0
        if name != "hmc":  # the run's own summary measured the same distance to HMC
            summary = json.loads((tmp_path / name / "summary.json").read_text())
            assert summary["reference"]["total_variation"] == pytest.approx(row["total_variation"])
    assert methods["ensemble"]["num_members"] == 2 and methods["mfvi"]["num_members"] == 3
    assert methods["hmc"]["num_members"] == 2 * 4  # chains x post-burn-in draws
    rhat = result["hmc_function_space"]
    assert rhat["num_chains"] == 2 and rhat["max_rhat"] >= rhat["median_rhat"]
    report = (tmp_path / "report.md").read_text()
    assert "| sghmc-clr-prec |" in report and "R-hat" in report
    for png in ("metrics.png", "reliability.png", "entropy.png", "distance_to_hmc.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
        assert f"]({png})" in report
    floor = result["hmc_half_vs_half"]  # chain 1 against chain 2 of the HMC run
    assert floor["how"] == "chain 1 against chain 2"
    assert 0 <= floor["agreement"] <= 1 and 0 <= floor["total_variation"] <= 1
    assert "HMC-vs-HMC floor" in report and "bootstrap" in report
    assert "| mfvi |" in out
    # a rerun resumes every finished method instead of recomputing it
    rc, _, err = cli(
        "compare",
        f"--dir={tmp_path}",
        "--subset_train_to=160",
        "--batch_size=40",
        "--model_name=logistic_regression",
        "--methods=sgd,mfvi",
        f"--reference={tmp_path / 'hmc'}",
        "--sgd_num_epochs=2",
        "--vi_num_epochs=2",
        "--vi_ensemble_size=3",
    )
    assert rc == 0, err
    again = json.loads((tmp_path / "compare.json").read_text())["methods"]
    assert again["sgd"]["total_variation"] == methods["sgd"]["total_variation"]


def test_compare_refuses_unknown_methods(tmp_path, cli):
    rc, _, err = cli("compare", f"--dir={tmp_path}", "--methods=hmc,laplace")
    assert rc == 2 and "laplace" in err
