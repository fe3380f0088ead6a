"""The engine's randomness contract: determinism, alone equals in-batch, common random numbers."""

import numpy as np
import pytest

from sim import parameters
from sim.engine import Cohort
from sim.run import batch_metrics, client_outcomes
from sim.streams import STREAMS, Streams
from tests.conftest import run_sets


def _assert_same(a: dict, b: dict, s_a: int = 0, s_b: int = 0, what: str = ""):
    assert a.keys() == b.keys()
    for key in a:
        x, y = np.asarray(a[key][s_a]), np.asarray(b[key][s_b])
        assert x.shape == y.shape, f"{what}: {key} has shape {x.shape} vs {y.shape}"
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{what}: {key} differs"


def test_same_seed_same_outcomes():
    a, _ = run_sets([{}], n_clients=500, n_therapists=25, seed=5)
    b, _ = run_sets([{}], n_clients=500, n_therapists=25, seed=5)
    _assert_same(a, b, what="same seed")


def test_different_seed_different_outcomes():
    a, _ = run_sets([{}], n_clients=500, n_therapists=25, seed=5)
    b, _ = run_sets([{}], n_clients=500, n_therapists=25, seed=6)
    for key in ("intake_phq9", "final_phq9", "therapist", "end_session"):
        assert not np.array_equal(a[key], b[key]), f"different seeds should give different {key}"


def test_replicates_are_different_and_independent():
    a, _ = run_sets([{}], n_clients=5000, n_therapists=100, seed=5, replicate=0)
    b, _ = run_sets([{}], n_clients=5000, n_therapists=100, seed=5, replicate=1)
    assert not np.array_equal(a["intake_phq9"], b["intake_phq9"]), "replicates should differ"
    r = np.corrcoef(a["intake_phq9"][0], b["intake_phq9"][0])[0, 1]
    assert abs(r) < 0.05, f"replicates of a seed should be independent (intake r = {r:.3f})"


def test_streams_are_independent_and_named():
    streams = Streams(3)
    draws = np.stack([streams.uniform(name, 20_000) for name in STREAMS])
    r = np.corrcoef(draws)
    off = r[~np.eye(len(STREAMS), dtype=bool)]
    assert np.abs(off).max() < 0.05, f"streams should be independent (max |r| = {np.abs(off).max():.3f})"
    # Drawing from one stream leaves the others' numbers unchanged.
    fresh, used = Streams(3), Streams(3)
    used.uniform("rupture", 1000)
    assert np.array_equal(fresh.uniform("dropout", 10), used.uniform("dropout", 10))


@pytest.mark.parametrize("bad", [(-1, 0), (0, -1)])
def test_streams_refuse_negative_seeds(bad):
    with pytest.raises(ValueError):
        Streams(*bad)


def _varied_sets():
    """Parameter sets that differ in every group, including all four matching policies."""
    changes = [
        {"matching_policy": "cultural_match", "therapist_empathy_mean": 0.3, "client_minority_share": 0.5},
        {"matching_policy": "attachment_informed", "planned_sessions": 8, "life_event_rate": 0.05},
        {"matching_policy": "lowest_caseload", "therapist_capacity_mean": 5.0, "extra_weeks": 0},
        {"matching_policy": "random", "planned_break_start": 3, "planned_break_weeks": 2, "followup_weeks": 0},
        {"responsiveness_sd": 1.2, "followup_weeks": 104, "early_risk_amplifier": 4.0, "sudden_gain_rate": 0.4},
        {"outcome_measure": "last_observed", "planned_sessions": 30, "therapist_feedback_share": 1.0},
    ]
    return [parameters.resolve(c) for c in changes]


@pytest.mark.parametrize("k", range(6))
def test_alone_equals_in_batch(k):
    sets = _varied_sets()
    batch = client_outcomes(Cohort(sets, 300, 15, seed=9, replicate=2).run())
    alone = client_outcomes(Cohort(sets[k], 300, 15, seed=9, replicate=2).run())
    _assert_same(alone, batch, 0, k, what=f"set {k} alone vs in batch")


def test_alone_equals_in_batch_for_metrics():
    sets = _varied_sets()
    batch = batch_metrics(sets, 300, 15, seed=4)
    for k, ps in enumerate(sets):
        alone = batch_metrics([ps], 300, 15, seed=4)
        for name, values in batch.items():
            assert values.shape == (len(sets),)
            assert np.array_equal(alone[name][0], values[k], equal_nan=True), f"{name} of set {k} differs alone"


def test_reordering_a_batch_permutes_its_results():
    sets = _varied_sets()
    order = [3, 0, 5, 4, 2, 1]
    a = client_outcomes(Cohort(sets, 200, 10, seed=2).run())
    b = client_outcomes(Cohort([sets[i] for i in order], 200, 10, seed=2).run())
    for j, i in enumerate(order):
        _assert_same(a, b, i, j, what=f"set {i} at position {j}")


def test_identical_sets_in_a_batch_share_their_draws():
    o, _ = run_sets([{}, {}], n_clients=500, n_therapists=25)
    _assert_same(o, o, 0, 1, what="two copies of one set in a batch")


def test_common_random_numbers_keep_the_population():
    # Parameter sets of one replicate share their draws: a mechanism parameter leaves the
    # population and the assignment unchanged.
    o, c = run_sets([{}, {"rupture_rate": 0.2}, {"improvement_rate": 0.3}], n_clients=500, n_therapists=25)
    for s in (1, 2):
        assert np.array_equal(o["intake_phq9"][0], o["intake_phq9"][s])
        assert np.array_equal(o["therapist"][0], o["therapist"][s])
        assert np.array_equal(o["perceived_empathy"][0], o["perceived_empathy"][s])


def test_follow_up_parameters_leave_the_course_unchanged():
    o, _ = run_sets([{"relapse_rate": 0.1}, {"relapse_rate": 0.9}], n_clients=1000, n_therapists=50)
    for key in ("end_type", "end_session", "sessions_attended", "ruptures", "final_phq9", "mean_alliance"):
        assert np.array_equal(o[key][0], o[key][1], equal_nan=True), f"relapse_rate should not change {key}"
    assert not np.array_equal(o["followup_phq9"][0], o["followup_phq9"][1]), "relapse_rate should change follow-up"


def test_raising_a_trait_mean_shifts_every_therapist():
    _, c = run_sets([{"therapist_empathy_mean": 0.4}, {"therapist_empathy_mean": 0.7}], n_clients=10, n_therapists=200)
    low, high = c.therapists.empathy[0], c.therapists.empathy[1]
    assert np.all(high >= low), "common random numbers: a higher mean should raise every therapist's empathy"
    assert np.corrcoef(low, high)[0, 1] > 0.95, "the same therapists, shifted, not a reshuffled population"


def test_recording_does_not_change_results():
    ps = parameters.resolve({})
    plain = client_outcomes(Cohort(ps, 300, 15, seed=8).run())
    recorded = client_outcomes(Cohort(ps, 300, 15, seed=8, record=True).run())
    _assert_same(plain, recorded, what="record=True vs False")


def test_stepping_equals_running():
    ps = parameters.resolve({})
    ran = client_outcomes(Cohort(ps, 300, 15, seed=8).run())
    cohort = Cohort(ps, 300, 15, seed=8)
    weeks = 0
    while not cohort.done:
        cohort.step()
        weeks += 1
    assert weeks <= ps["planned_sessions"] + ps["extra_weeks"]
    _assert_same(ran, client_outcomes(cohort), what="step() loop vs run()")


def test_every_course_ends():
    o, _ = run_sets([{}, {"planned_sessions": 40, "extra_weeks": 20}], n_clients=500, n_therapists=25)
    assert np.all(o["end_type"] > 0), "after run() every course should have ended"


@pytest.mark.parametrize(("clients", "therapists"), [(0, 5), (5, 0)])
def test_cohort_refuses_empty(clients, therapists):
    with pytest.raises(ValueError):
        Cohort(parameters.resolve({}), clients, therapists, seed=1)
