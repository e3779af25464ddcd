"""``ppl-bnn domain-shift``: a run's averaged predictions on (synthetic) corrupted test sets."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from ppl_bnn.config import HMCConfig
from ppl_bnn.driver import run_hmc
from ppl_bnn.evaluation import metrics
from ppl_bnn.evaluation.domain_shift import RunPredictive, evaluate_domain_shift
from ppl_bnn.store.checkpoint import load_checkpoint

SEVERITIES = (1, 3)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """4 iterations (1 of burn-in) of 2 chains; large steps so that some proposals are rejected."""
    path = tmp_path_factory.mktemp("ds") / "run"
    cfg = HMCConfig(
        dir=str(path),
        dataset_name="digits",
        subset_train_to=200,
        model_name="logistic_regression",
        weight_decay=1.0,
        step_size=0.15,
        trajectory_len=0.75,
        num_iterations=4,
        num_burn_in_iterations=1,
        num_chains=2,
        num_param_draws=2,
        keep_checkpoints=10,  # every checkpoint: the by-hand average and the legacy layout
    )
    run_hmc(cfg, argv=["test"], progress=False)
    return path


def corrupt(x: np.ndarray, corruption: str, severity: int) -> np.ndarray:
    """A deterministic synthetic 'corruption' of the digits test images."""
    rng = np.random.default_rng([severity, len(corruption)])
    if corruption == "noise":
        return x + 0.6 * severity * rng.normal(size=x.shape).astype(x.dtype)
    return x * (1 - 0.2 * severity)  # "contrast"


def test_average_counts_every_post_burn_in_draw(run_dir):
    post = RunPredictive(run_dir)
    assert post.steps == [2, 3, 4] and post.num_draws == 6
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["accepted"] for r in records[1:]) < 6  # a rejection repeats a state: still counted
    probs = post.predict(post.problem.dataset.x_test)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # the run's own online average over the same draws
    last = load_checkpoint(run_dir / "checkpoints" / "checkpoint_000004.npz")
    np.testing.assert_allclose(probs, last["ensemble"].first, atol=2e-6)
    # by hand: the mean over the 3 checkpoints x 2 chains of each draw's predictions
    ld, test = post.problem.logdensity, post.problem.test
    predict = jax.jit(ld.predict)
    by_hand = np.mean(
        [
            np.asarray(
                predict(
                    {
                        k: v[c]
                        for k, v in load_checkpoint(
                            run_dir / "checkpoints" / f"checkpoint_{s:06d}.npz"
                        )["position"].items()
                    },
                    test.x,
                )
            )[: len(probs)]
            for s in (2, 3, 4)
            for c in (0, 1)
        ],
        0,
    )
    np.testing.assert_allclose(probs, by_hand, atol=2e-6)
    assert post.from_samples  # read from samples/, equal to the checkpoints' positions
    assert RunPredictive(run_dir, thin=2, problem=post.problem).steps == [2, 4]
    with pytest.raises(ValueError, match="samples holds post-burn-in draws only"):
        RunPredictive(run_dir, include_burn_in=True, problem=post.problem)


def test_a_run_without_samples_is_read_from_its_checkpoints(run_dir, tmp_path):
    """The layout before samples/ existed: one checkpoint per iteration."""
    import shutil

    legacy = tmp_path / "run"
    shutil.copytree(run_dir, legacy, ignore=shutil.ignore_patterns("samples"))
    post = RunPredictive(legacy)
    assert not post.from_samples and post.steps == [2, 3, 4] and post.num_draws == 6
    with_burn_in = RunPredictive(legacy, include_burn_in=True, problem=post.problem)
    assert with_burn_in.num_draws == 8
    x = post.problem.dataset.x_test
    np.testing.assert_allclose(post.predict(x), RunPredictive(run_dir).predict(x), atol=1e-6)


def test_report_per_corruption_and_severity(run_dir, tmp_path):
    post = RunPredictive(run_dir, batch_size=100)  # 360 test rows: 4 chunks, the last padded
    x, y = post.problem.dataset.x_test, post.problem.dataset.y_test
    calls = []

    def loader(corruption, severity):
        calls.append((corruption, severity))
        return corrupt(x, corruption, severity), y

    report = evaluate_domain_shift(
        run_dir,
        loader=loader,
        corruptions=["noise", "contrast"],
        severities=SEVERITIES,
        predictive=post,
        output=tmp_path,
    )
    assert calls == [("noise", 1), ("noise", 3), ("contrast", 1), ("contrast", 3)]
    assert report["num_draws"] == 6 and len(report["results"]) == 4
    full = RunPredictive(run_dir, problem=post.problem)  # unchunked, for comparison
    for r in report["results"]:
        expected = metrics.classification_metrics(
            full.predict(corrupt(x, r["corruption"], r["severity"])), y
        )
        for k in ("accuracy", "nll", "ece"):
            np.testing.assert_allclose(r[k], expected[k], rtol=1e-5, err_msg=k)
    noisy = [r for r in report["results"] if r["corruption"] == "noise"]
    assert noisy[1]["nll"] > noisy[0]["nll"] > report["clean"]["nll"]  # more shift, worse
    sev3 = [r["accuracy"] for r in report["results"] if r["severity"] == 3]
    assert report["per_severity"]["3"]["accuracy"] == pytest.approx(np.mean(sev3))
    assert report["per_corruption"]["noise"]["nll"] == pytest.approx(
        np.mean([r["nll"] for r in noisy])
    )
    assert json.loads((tmp_path / "domain_shift.json").read_text()) == report
    text = (tmp_path / "domain_shift.txt").read_text()
    assert "severity 3" in text and "contrast" in text and "clean" in text


def test_cli(run_dir, cli, monkeypatch, tmp_path):
    import ppl_bnn.data.tfds as tfds_data

    ds = RunPredictive(run_dir).problem.dataset

    def fake(corruption, severity, data_dir=None):
        return corrupt(ds.x_test, corruption, severity), ds.y_test

    monkeypatch.setattr(tfds_data, "load_cifar10_corrupted", fake)
    rc, out, err = cli(
        "domain-shift", run_dir, "--corruptions=noise", "--severities=1,2", f"--output={tmp_path}"
    )
    assert rc == 0, err
    report = json.loads((tmp_path / "domain_shift.json").read_text())
    assert [r["severity"] for r in report["results"]] == [1, 2]
    assert "severity 2" in out

    rc, out, err = cli("domain-shift", tmp_path / "nothing")
    assert rc == 2 and "no config.json" in err and len(err.strip().splitlines()) == 1


def test_samples_are_read_before_checkpoints(run_dir, tmp_path):
    """A run directory with ``samples/`` needs no checkpoint: the draws are plain .npz
    files (constrained values, one per post-burn-in iteration)."""
    import shutil

    post = RunPredictive(run_dir)
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints"))
    from_samples = RunPredictive(copy, problem=post.problem)
    assert from_samples.from_samples and from_samples.steps == [2, 3, 4]
    x = post.problem.dataset.x_test
    np.testing.assert_array_equal(from_samples.predict(x), post.predict(x))
    with np.load(copy / "samples" / "sample_000003.npz", allow_pickle=False) as f:
        assert all(f[k].shape[0] == 2 for k in f.files)  # (chain, ...)
