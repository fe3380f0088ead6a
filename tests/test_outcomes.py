"""Outcome definitions (NHS Talking Therapies) with known answers, and cohort metrics."""

import math

import numpy as np
import pytest

from sim.dynamics import CASENESS
from sim.outcomes import (
    RELIABLE_CHANGE,
    classify,
    cohort_metrics,
    masked_corr,
    masked_mean,
    reliable_change_index,
    sudden_gains,
)


def test_thresholds():
    assert RELIABLE_CHANGE == 6, "reliable change on the PHQ-9 is 6 points (NHS Talking Therapies)"
    assert CASENESS == 10, "caseness on the PHQ-9 is a score of 10 or more"


@pytest.mark.parametrize(
    ("intake", "final", "improved", "deteriorated", "recovered", "reliably_recovered"),
    [
        (16, 10, True, False, False, False),  # 6 points better, still at caseness
        (15, 10, False, False, False, False),  # 5 points: not reliable
        (10, 9, False, False, True, False),  # crosses caseness by one point
        (16, 9, True, False, True, True),  # reliable recovery
        (12, 9, False, False, True, False),  # recovery without reliable change
        (9, 3, True, False, False, False),  # not at caseness at intake: no recovery
        (10, 16, False, True, False, False),  # 6 points worse
        (10, 15, False, False, False, False),  # 5 points worse: not reliable
        (20, 20, False, False, False, False),
    ],
)
def test_classify_known_answers(intake, final, improved, deteriorated, recovered, reliably_recovered):
    f = classify(np.array([intake]), np.array([final]), np.array([5]))
    assert f["reliable_improvement"][0] == improved
    assert f["reliable_deterioration"][0] == deteriorated
    assert f["recovery"][0] == recovered
    assert f["reliable_recovery"][0] == reliably_recovered
    assert f["caseness"][0] == (intake >= 10)


def test_finished_means_two_sessions():
    f = classify(np.array([15, 15, 15]), np.array([15, 15, 15]), np.array([0, 1, 2]))
    assert f["finished"].tolist() == [False, False, True]


def test_reliable_change_index_known_answer():
    # Jacobson & Truax: S_diff = sqrt(2) * 5 * sqrt(1 - 0.84) = 2.8284; RCI = -10 / 2.8284.
    rci = reliable_change_index(20, 10, sd_pre=5.0, reliability=0.84)
    assert rci == pytest.approx(-3.5355339, abs=1e-6)
    assert abs(reliable_change_index(20, 17, 5.0, 0.84)) < 1.96, "a 3-point fall is not reliable here"


def test_rci_agrees_with_six_point_rule_for_phq9():
    # PHQ-9 sd about 5, test-retest .84 (Kroenke 2001): the reliable change is about 5.5 points,
    # which the service rounds up to 6.
    threshold = 1.96 * np.sqrt(2) * 5.0 * np.sqrt(1 - 0.84)
    assert 5 < threshold <= RELIABLE_CHANGE


def _gains(*scores):
    scores = np.array(scores, dtype=float)
    return bool(sudden_gains(scores[:1], scores[1:, None])[0][0])


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ((20, 19, 12, 12, 11), True),  # 7 points, 37%, held
        ((20, 19, 12, 19, 19), False),  # reversed: later mean 16.7 > 19 - 3.5
        ((20, 18, 14, 12), False),  # never 6 points between consecutive sessions
        ((27, 21, 21), False),  # 6 points but only 22% of the pre-gain score
        ((20, 13), False),  # the t criterion needs two scores on each side of the gain
        ((20, 21, np.nan, 13, 13), True),  # missed sessions are skipped: consecutive observed scores
        ((20, 20, 20), False),
        ((20, 19, 13, 18, 12), False),  # 6 points, but the post-gain scores scatter: t = 2.1 < 3.18 (df 3)
    ],
)
def test_sudden_gain_known_answers(scores, expected):
    assert _gains(*scores) == expected, f"sudden gain in {scores}"


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ((20, 19, 12, 12, 11, 16), True),  # a later score gives back 4 of the 7 points
        ((20, 19, 12, 12, 11, 15), False),  # 3 of 7 points back: less than half
        ((20, 19, 12, 12, 11), False),
    ],
)
def test_sudden_gain_reversal_known_answers(scores, expected):
    scores = np.array(scores, dtype=float)
    gained, reversed_ = sudden_gains(scores[:1], scores[1:, None])
    assert gained[0], f"{scores} has a sudden gain"
    assert reversed_[0] == expected, f"reversal of the gain in {scores}"


def test_masked_helpers():
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    y = np.array([[2.0, 4.0, 6.0, 1.0]])
    mask = np.array([[True, True, True, False]])
    assert masked_mean(x, mask)[0] == 2.0
    assert masked_corr(x, y, mask)[0] == pytest.approx(1.0)
    with np.errstate(all="ignore"):
        assert np.isnan(masked_mean(x, np.zeros_like(mask))[0]), "an empty mask gives NaN, not 0"


def test_cohort_metrics_known_answer():
    c = {
        "intake_phq9": np.array([[20.0, 15.0, 12.0, 8.0]]),
        "final_phq9": np.array([[8.0, 15.0, 19.0, 6.0]]),
        "sessions_attended": np.array([[10, 1, 6, 4]]),
        "end_type": np.array([[1, 3, 2, 1]]),
        "mean_alliance": np.array([[50.0, 30.0, 40.0, 44.0]]),
        "early_alliance": np.array([[48.0, 30.0, 38.0, 40.0]]),
        "ruptures": np.array([[2, 1, 1, 0]]),
        "repairs": np.array([[1, 0, 1, 0]]),
        "dropout_cause": np.array([[0, 1, 0, 0]]),  # the one dropout left mainly for a weak alliance
    }
    m = cohort_metrics(c)
    assert m["dropout_rate"][0] == 0.25
    assert m["mean_sessions"][0] == 5.25
    # Finished: clients 0, 2, 3. At caseness among them: 0 and 2; 0 recovered.
    assert m["recovery_rate"][0] == 0.5
    assert m["reliable_improvement_rate"][0] == pytest.approx(1 / 3)  # client 0 (12 points)
    assert m["reliable_deterioration_rate"][0] == pytest.approx(1 / 3)  # client 2 (7 points worse)
    assert m["mean_alliance"][0] == 41.0
    assert m["mean_change"][0] == pytest.approx((12 + 0 - 7 + 2) / 4)
    assert m["ruptures_per_client"][0] == 1.0
    assert m["repair_share"][0] == 0.5
    change = c["intake_phq9"][0] - c["final_phq9"][0]
    assert m["alliance_outcome_r"][0] == pytest.approx(np.corrcoef(c["early_alliance"][0], change)[0, 1])
    # completers' early alliance 48, 38, 40 (mean 42, squares 56) against the dropout's 30; pooled SD sqrt(56 / 2)
    assert m["alliance_dropout_d"][0] == pytest.approx(12 / np.sqrt(28))
    assert m["relationship_share"][0] == 1.0, "the one dropout left for a relationship reason"


def test_alliance_outcome_correlation_is_positive_at_baseline():
    from sim import simulate

    r = simulate("baseline", clients=1500, seed=2).summary["alliance_outcome_r"]
    assert 0.1 < r < 0.6, f"the early alliance should predict improvement (r = {r:.3f}; meta-analytic r about .28)"
    assert not math.isnan(r)
