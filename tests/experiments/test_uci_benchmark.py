"""``ppl-bnn uci-benchmark``: the mixture log-likelihood, the summary against the published
figures, and one tiny split end to end (resumable) when the UCI folder is present."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import UCI_DIR
from scipy import stats

from ppl_bnn.experiments import uci_benchmark as ub


def test_mixture_ll_matches_closed_forms():
    rng = np.random.default_rng(0)
    y = rng.normal(size=5)
    mean, std = rng.normal(size=(1, 5)), rng.uniform(0.5, 2, (1, 5))
    # one draw: the Gaussian log density
    np.testing.assert_allclose(
        ub.gaussian_mixture_ll(mean, std, y), stats.norm.logpdf(y, mean[0], std[0]), rtol=1e-12
    )
    # two different draws: log of the average density
    mean2, std2 = np.stack([mean[0], mean[0] + 1]), np.stack([std[0], 2 * std[0]])
    want = np.log(
        0.5 * stats.norm.pdf(y, mean2[0], std2[0]) + 0.5 * stats.norm.pdf(y, mean2[1], std2[1])
    )
    np.testing.assert_allclose(ub.gaussian_mixture_ll(mean2, std2, y), want, rtol=1e-10)


def test_split_rhat_is_one_for_iid_and_large_for_separated_chains():
    from ppl_bnn.experiments.sampling import split_rhat

    rng = np.random.default_rng(1)
    iid = rng.normal(size=(4, 500, 3))
    assert np.all(np.abs(split_rhat(iid) - 1) < 0.02)
    apart = iid + np.arange(4)[:, None, None] * 3.0
    assert np.all(split_rhat(apart) > 2)


def _fake_result(folder: Path, split: int, ll: float, rmse: float):
    folder.mkdir(parents=True, exist_ok=True)
    r = {
        "split": split,
        "test_ll": ll,
        "rmse": rmse,
        "wall_s": 10.0,
        "cpu_s": 5.0,
        "chosen": {"likelihood": "homoscedastic", "weight_decay": 1.0},
        "final": {"function_rhat_max": 1.0, "divergent_frac": 0.0},
    }
    (folder / f"split_{split}.json").write_text(json.dumps(r))


def test_summary_mean_se_and_count_against_published(tmp_path):
    lls = [-2.0, -2.2, -2.4]
    for i, ll in enumerate(lls):
        _fake_result(tmp_path / "boston-housing", i, ll, 3.0 + i)
    _fake_result(tmp_path / "yacht", 0, -2.0, 1.0)  # worse than every published yacht LL
    _fake_result(tmp_path / "my-new-set", 0, -1.0, 1.0)  # no published figure
    s = ub.summarise(tmp_path)
    b = s["datasets"]["boston-housing"]
    assert b["num_splits"] == 3
    assert b["test_ll"][0] == pytest.approx(np.mean(lls))
    assert b["test_ll"][1] == pytest.approx(np.std(lls, ddof=1) / math.sqrt(3))
    assert b["rmse"][0] == pytest.approx(4.0)
    assert b["best_published"] == ["deep_ensembles", -2.41] or b["best_published"] == (
        "deep_ensembles",
        -2.41,
    )
    assert b["beats_best_published_ll"] is True  # -2.2 > -2.41
    assert s["datasets"]["yacht"]["beats_best_published_ll"] is False
    assert s["datasets"]["my-new-set"]["beats_best_published_ll"] is None
    assert s["num_compared"] == 2 and s["num_beating_best_published_ll"] == 1
    table = ub.format_summary(s)
    assert (
        "| boston-housing | 3 | -2.20 ± 0.12 | -2.57 ± 0.09 | -2.46 ± 0.25 | -2.41 ± 0.25 | yes"
        in table
    )
    assert "on 1 of 2 datasets" in table


def test_published_table_is_complete():
    from ppl_bnn.data.registry import UCI_DATASETS

    assert set(ub.STANDARD_DATASETS) == set(UCI_DATASETS) and len(UCI_DATASETS) == 10
    for method, metrics in ub.PUBLISHED.items():
        for metric in ("test_ll", "rmse"):
            assert set(metrics[metric]) == set(ub.STANDARD_DATASETS), (method, metric)
    assert ub.best_published("yacht") == ("deep_ensembles", -1.18)
    assert ub.best_published("wine-quality-red") == ("mc_dropout", -0.93)
    assert ub.best_published("power-plant", "rmse") == ("mc_dropout", 4.02)
    # the sets the shared copies lack, Table 1 of the deep-ensembles paper (LL = -NLL)
    assert ub.best_published("kin8nm") == ("deep_ensembles", 1.20)
    assert ub.best_published("naval-propulsion-plant") == ("deep_ensembles", 5.63)
    assert ub.best_published("protein-tertiary-structure") == ("deep_ensembles", -2.83)
    assert ub.best_published("concrete") == ("mc_dropout", -3.04)
    assert ub.best_published("year-prediction-msd", "rmse") == ("mc_dropout", 8.849)


def test_summary_counts_every_dataset_with_published_figures(tmp_path):
    _fake_result(tmp_path / "kin8nm", 0, 1.25, 0.08)  # beats deep ensembles' 1.20
    _fake_result(tmp_path / "protein-tertiary-structure", 0, -2.90, 4.5)  # loses to -2.83
    _fake_result(tmp_path / "year-prediction-msd", 0, -3.40, 8.9)  # loses to -3.35
    s = ub.summarise(tmp_path)
    assert s["num_compared"] == 3 and s["num_beating_best_published_ll"] == 1
    table = ub.format_summary(s)
    assert "on 1 of 3 datasets" in table
    assert "| year-prediction-msd | 1 |" in table and "-3.60 ± NA" in table
    assert "not in this run: boston-housing, concrete" in table


def _uci_dir() -> Path:
    """The UCI folder of the environment, else a copy next to the repository, else skip."""
    d = ub.default_data_dir()
    if (d / "yacht" / "data.txt").is_file():
        return d
    if (UCI_DIR / "yacht" / "data.txt").is_file():
        return UCI_DIR
    pytest.skip(
        f"UCI data not found at {d} or {UCI_DIR}: run `ppl-bnn download uci yacht` or set "
        "PPL_BNN_UCI_DIR to a folder in the standard layout"
    )


def test_one_split_end_to_end_and_resume(tmp_path):
    data_dir = _uci_dir()
    assert "yacht" in ub.list_datasets(data_dir)
    cfg = ub.UCIBenchmarkConfig(
        out=str(tmp_path),
        datasets="yacht",
        data_dir=str(data_dir),
        splits="0",
        weight_decays="1",
        likelihoods="homoscedastic,heteroscedastic",
        profile="smoke",
    )
    s = ub.run_benchmark(cfg, write=lambda *_: 0)
    path = tmp_path / "yacht" / "split_0.json"
    r = json.loads(path.read_text())
    assert r["num_train"] + r["num_test"] == 308 and r["num_validation"] == round(0.2 * 277)
    assert {g["likelihood"] for g in r["validation"]} == {"homoscedastic", "heteroscedastic"}
    best = max(r["validation"], key=lambda g: g["val_ll"])
    assert r["chosen"] == {"likelihood": best["likelihood"], "weight_decay": 1.0}
    assert math.isfinite(r["test_ll"]) and r["rmse"] > 0
    assert s["datasets"]["yacht"]["num_splits"] == 1
    # a rerun skips the finished split (the file is untouched)
    before = path.stat().st_mtime_ns
    messages = []
    ub.run_benchmark(cfg, write=messages.append)
    assert path.stat().st_mtime_ns == before
    assert any("done, skipped" in m for m in messages)
    # a rerun with settings that change the result does not pass the old file off as new
    for changed, field in [({"method": "mams"}, "method"), ({"seed": 1}, "seed")]:
        with pytest.raises(ValueError, match=rf"written with other settings \({field}\)"):
            ub.run_benchmark(dataclasses.replace(cfg, **changed), write=lambda *_: 0)
    assert path.stat().st_mtime_ns == before
    # where the results go and which splits run are not settings of a result
    ub.run_benchmark(dataclasses.replace(cfg, summarise_only=True), write=lambda *_: 0)


def test_biased_or_unknown_method_is_refused(tmp_path):
    for method in ("mclmc", "sgd", "nope"):
        with pytest.raises(ValueError, match=f"method '{method}' is not one the benchmark runs"):
            ub.run_benchmark(
                ub.UCIBenchmarkConfig(out=str(tmp_path), data_dir=str(tmp_path), method=method)
            )


@pytest.mark.slow
def test_one_split_with_mams(tmp_path):
    cfg = ub.UCIBenchmarkConfig(
        out=str(tmp_path),
        datasets="yacht",
        data_dir=str(_uci_dir()),
        splits="0",
        weight_decays="1",
        likelihoods="homoscedastic",
        profile="smoke",
        method="mams",
    )
    ub.run_benchmark(cfg, write=lambda *_: 0)
    r = json.loads((tmp_path / "yacht" / "split_0.json").read_text())
    assert r["sampler"] == "mams" and math.isfinite(r["test_ll"]) and r["rmse"] > 0
    assert 0.0 <= r["final"]["acceptance_rate"] <= 1.0


def test_bad_split_and_missing_folder(tmp_path):
    data_dir = _uci_dir()
    with pytest.raises(ValueError, match="out of range"):
        ub.run_benchmark(
            ub.UCIBenchmarkConfig(
                out=str(tmp_path), datasets="yacht", data_dir=str(data_dir), splits="20"
            )
        )
    with pytest.raises(FileNotFoundError):
        ub.run_benchmark(ub.UCIBenchmarkConfig(out=str(tmp_path), data_dir=str(tmp_path / "no")))
