"""Metrics and ensemble averaging on tiny examples worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ppl_bnn.evaluation import metrics
from ppl_bnn.evaluation.bma import ensemble_init, ensemble_prediction, ensemble_update

pytestmark = pytest.mark.filterwarnings("error")  # a strict harness: warnings fail

# 4 examples, 3 classes. argmax = [0, 1, 2, 1]; labels [0, 2, 2, 1]: correct [1, 0, 1, 1].
# confidences (max prob) = [0.7, 0.6, 0.4, 0.9].
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.6, 0.3],
        [0.3, 0.3, 0.4],
        [0.05, 0.9, 0.05],
    ]
)
LABELS = np.array([0, 2, 2, 1])


def test_accuracy():
    assert metrics.accuracy(PROBS, LABELS) == 0.75


def test_nll():
    # -(log 0.7 + log 0.3 + log 0.4 + log 0.9) / 4
    want = -(math.log(0.7) + math.log(0.3) + math.log(0.4) + math.log(0.9)) / 4
    assert metrics.nll(PROBS, LABELS) == pytest.approx(want, rel=1e-14)


def test_nll_of_a_zero_probability_is_finite():
    """The original returned inf; here p is clipped at the smallest positive float64."""
    p = np.array([[1.0, 0.0]])
    assert metrics.nll(p, np.array([1])) == pytest.approx(-math.log(np.finfo(np.float64).tiny))


def test_ece_equal_width_two_bins():
    # bins [0, .5) and [.5, 1]: {0.4 (correct)} and {0.7, 0.6, 0.9 (correct, wrong, correct)}
    # |0.4 - 1| * 1/4 + |(0.7+0.6+0.9)/3 - 2/3| * 3/4 = 0.15 + 0.05
    assert metrics.ece(PROBS, LABELS, 2, equal_mass=False) == pytest.approx(0.2, rel=1e-12)


def test_ece_equal_mass_two_bins():
    # sorted confidences 0.4, 0.6 | 0.7, 0.9 -> bins {0.4 (1), 0.6 (0)} and {0.7 (1), 0.9 (1)}
    # |0.5 - 0.5| * 1/2 + |0.8 - 1| * 1/2 = 0.1
    assert metrics.ece(PROBS, LABELS, 2, equal_mass=True) == pytest.approx(0.1, rel=1e-12)


def test_ece_default_twenty_bins_puts_each_of_four_points_alone():
    # each example its own bin: mean |conf - correct| = (0.6 + 0.6 + 0.3 + 0.1) / 4
    assert metrics.ece(PROBS, LABELS) == pytest.approx(0.4, rel=1e-12)
    assert metrics.ece(PROBS, LABELS, equal_mass=False) == pytest.approx(0.4, rel=1e-12)


def test_calibration_curve_counts_every_example_once():
    """Confidences exactly on bin edges (0.5, 1.0) are kept, unlike in the original."""
    p = np.array([[0.5, 0.5], [1.0, 0.0], [0.75, 0.25], [0.25, 0.75]])
    y = np.array([0, 0, 1, 1])
    c = metrics.calibration_curve(p, y, 4, equal_mass=False)
    # confidences 0.5, 1.0, 0.75, 0.75 -> bins [.5,.75): {0.5}, [.75, 1]: {1.0, .75, .75}
    np.testing.assert_allclose(c["proportion"], [0, 0, 0.25, 0.75])
    np.testing.assert_allclose(c["confidence"], [0, 0, 0.5, (1.0 + 0.75 + 0.75) / 3])
    np.testing.assert_allclose(c["accuracy"], [0, 0, 1.0, 2 / 3])
    assert c["proportion"].sum() == 1.0


def test_classification_metrics_keys():
    m = metrics.classification_metrics(PROBS, LABELS)
    assert m == {
        "accuracy": 0.75,
        "nll": metrics.nll(PROBS, LABELS),
        "ece": metrics.ece(PROBS, LABELS),
    }


def test_agreement_and_total_variation():
    ref = np.array([[0.6, 0.4, 0.0], [0.1, 0.2, 0.7], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    # argmax PROBS [0,1,2,1] vs ref [0,2,2,0]: 2 of 4 agree
    assert metrics.agreement(PROBS, ref) == 0.5
    # TV per row: 0.5*(.1+.2+.1)=.2, 0.5*(0+.4+.4)=.4, 0.5*(.1+.1+.2)=.2, 0.5*(.45+.5+.05)=.5
    assert metrics.total_variation(PROBS, ref) == pytest.approx((0.2 + 0.4 + 0.2 + 0.5) / 4)


def test_wasserstein2_one_dimensional():
    a = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 1.0]])
    b = np.array([[0.5, 1.5, 2.5], [1.0, 0.0, 0.0]])  # a shift by 0.5; the same sample
    assert metrics.wasserstein2(a, b) == pytest.approx((0.5 + 0.0) / 2)
    # unequal sample counts: {0, 1} vs {0, 0, 1, 1} are the same distribution
    assert metrics.wasserstein2(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0, 0.0, 1.0]])) == 0.0
    # {0} vs {0, 3}: half the mass moves by 3 -> sqrt(0.5 * 9)
    assert metrics.wasserstein2(np.array([[0.0]]), np.array([[0.0, 3.0]])) == pytest.approx(
        math.sqrt(4.5)
    )


# ------------------------------------------------------------------ regression
def test_regression_metrics_in_original_units():
    mean = np.array([0.5, -1.0, 2.0])
    std = np.array([1.0, 0.5, 2.0])
    y = np.array([1.0, -1.5, 1.0])  # standardised targets
    s, m = 2.5, 10.0  # y_scale and y_mean of the dataset
    got = metrics.regression_metrics(np.stack([mean, std], 1), y, y_scale=s)
    # residuals 0.5, -0.5, -1.0 (standardised) -> x2.5 in original units
    assert got["rmse"] == pytest.approx(math.sqrt((0.25 + 0.25 + 1.0) / 3) * s, rel=1e-14)
    # Gaussian NLL of the original-unit targets under N(m + s*mean, (s*std)^2)
    y0, mu0, sd0 = m + s * y, m + s * mean, s * std
    nll = np.mean(0.5 * ((y0 - mu0) / sd0) ** 2 + np.log(sd0) + 0.5 * math.log(2 * math.pi))
    assert got["nll"] == pytest.approx(nll, rel=1e-14)


def test_regression_metrics_unit_scale():
    pred = np.array([[0.0, 1.0]])
    got = metrics.regression_metrics(pred, np.array([1.0]))
    assert got["rmse"] == 1.0
    assert got["nll"] == pytest.approx(0.5 + 0.5 * math.log(2 * math.pi), rel=1e-14)


# -------------------------------------------------------------------- ensembles
def test_classification_ensemble_is_the_mean_of_member_probabilities():
    p1, p2, p3 = PROBS, PROBS[::-1], np.full((4, 3), 1 / 3)
    state = ensemble_init((4, 3))
    state = ensemble_update(state, np.stack([p1, p2]), "classification")  # two chains at once
    state = ensemble_update(state, p3[None], "classification")
    assert state.count == 3
    np.testing.assert_allclose(
        ensemble_prediction(state, "classification"), (p1 + p2 + p3) / 3, rtol=1e-14
    )


def test_regression_ensemble_matches_moments():
    # one test point, members N(1, 1^2), N(3, 2^2), N(-1, 0.5^2):
    # mean = (1 + 3 - 1) / 3 = 1
    # E[sigma^2 + mu^2] = ((1 + 1) + (4 + 9) + (0.25 + 1)) / 3 = 16.25 / 3
    # var = 16.25 / 3 - 1
    members = [np.array([[1.0, 1.0]]), np.array([[3.0, 2.0]]), np.array([[-1.0, 0.5]])]
    state = ensemble_init((1, 2))
    for m in members:
        state = ensemble_update(state, m[None], "regression")
    pred = ensemble_prediction(state, "regression")
    assert state.count == 3
    np.testing.assert_allclose(pred, [[1.0, math.sqrt(16.25 / 3 - 1)]], rtol=1e-14)


def test_regression_ensemble_of_one_member_is_that_member():
    member = np.array([[0.3, 0.7], [-2.0, 1.5]])
    state = ensemble_update(ensemble_init((2, 2)), member[None], "regression")
    np.testing.assert_allclose(ensemble_prediction(state, "regression"), member, rtol=1e-12)
