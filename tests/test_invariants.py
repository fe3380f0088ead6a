"""Invariants over random parameter vectors drawn within the registry's bounds (hypothesis)."""

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sim import dynamics as dyn
from sim import parameters, records
from sim.engine import Cohort
from sim.outcomes import cohort_metrics
from sim.parameters import REGISTRY
from sim.run import client_outcomes
from tests.conftest import PARAM_VECTORS

N_CLIENTS, N_THERAPISTS = 80, 6
# No shrinking: a failing example is printed as drawn, and a failure stays quick.
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]
# derandomize: the same examples on every run, so CI passes or fails on the code, not on the draw.
FAST = settings(
    max_examples=100, deadline=None, phases=NO_SHRINK, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _run(ps, seed, record=True):
    cohort = Cohort(parameters.validate(ps), N_CLIENTS, N_THERAPISTS, seed, record=record).run()
    return client_outcomes(cohort), cohort


@FAST
@given(ps=PARAM_VECTORS, seed=st.integers(0, 2**32))
def test_states_stay_in_range_and_counts_add_up(ps, seed):
    o, cohort = _run(ps, seed)
    o = {k: v[0] for k, v in o.items()}
    last_week = ps["planned_sessions"] + ps["extra_weeks"]
    attended, end_session = o["sessions_attended"], o["end_session"]

    # End types partition the clients; each course ended within its window.
    counts = np.bincount(o["end_type"], minlength=4)
    assert counts[0] == 0 and counts[1:].sum() == N_CLIENTS, f"every course ends exactly one way, got {counts}"
    assert np.all((end_session >= 1) & (end_session <= last_week))
    assert np.all(attended <= end_session), "cannot attend more sessions than weeks elapsed"
    assert np.all(attended <= ps["planned_sessions"])
    completed, good_enough, dropout = (o["end_type"] == k for k in (1, 2, 3))
    assert np.all((attended[completed] == ps["planned_sessions"]) | (end_session[completed] == last_week))
    assert np.all(attended[good_enough] >= ps["good_enough_min_sessions"])
    assert np.all((o["dropout_cause"] > 0) == dropout), "a dropout cause exactly when the client dropped out"
    assert np.all(o["dropout_cause"] < len(dyn.DROPOUT_CAUSES))
    rupture_dropout = o["dropout_cause"] == dyn.DROPOUT_CAUSES.index("unrepaired_rupture")
    assert np.all(o["ruptures"][rupture_dropout] > o["repairs"][rupture_dropout]), (
        "a dropout put down to an unrepaired rupture needs a rupture still open"
    )
    if ps["dropout_barriers"] == 0 or ps["barriers_mean"] == ps["barriers_sd"] == 0:
        barrier_dropout = o["dropout_cause"] == dyn.DROPOUT_CAUSES.index("practical_barriers")
        assert not barrier_dropout.any(), "no dropout can be put down to barriers that add no risk"

    # Ruptures and repairs.
    assert np.all(o["repairs"] <= o["ruptures"]), "a repair needs a rupture"
    assert np.all(o["ruptures"] <= attended), "at most one rupture per attended session"

    # Scores on their scales; NaN only where no session was attended.
    for key in ("intake_phq9", "final_phq9", "followup_phq9"):
        x = o[key]
        assert not np.isnan(x).any(), key
        assert np.all((x >= 0) & (x <= 27) & (x == np.round(x))), f"{key} must be an integer PHQ-9 score"
    assert np.all(o["intake_phq9"] >= np.ceil(ps["intake_phq9_min"] - 1e-9))
    seen = attended > 0
    for key, lo, hi in (("early_alliance", 12, 60), ("mean_alliance", 12, 60), ("early_goal_agreement", 4, 20)):
        x = o[key]
        assert np.all(np.isnan(x) == ~seen), f"{key} is NaN exactly when no session was attended"
        assert np.all((x[seen] >= lo - 1e-9) & (x[seen] <= hi + 1e-9)), f"{key} outside [{lo}, {hi}]"
    assert np.all((o["perceived_empathy"] >= 0) & (o["perceived_empathy"] <= 1))
    if ps["followup_weeks"] == 0:
        assert not o["relapse"].any()

    # Session records: states in [0, 1], events consistent with the per-client counts.
    rec = cohort.record.arrays()
    for key in ("bond", "goal", "task", "disclosure", "hope", "engagement"):
        x = rec[key]
        assert not np.isnan(x).any(), f"{key} has NaN"
        assert x.min() >= 0 and x.max() <= 1, f"{key} outside [0, 1]: {x.min()}, {x.max()}"
    events = rec["events"][:, 0, :]
    att = (events & dyn.ATTENDED) > 0
    phq = rec["phq9"][:, 0, :]
    assert np.all(np.isnan(phq) == ~att), "a PHQ-9 score exactly at attended sessions"
    assert np.all((phq[att] >= 0) & (phq[att] <= 27))
    exclusive = att.astype(int) + ((events & dyn.MISSED) > 0) + ((events & dyn.CANCELLED) > 0)
    assert exclusive.max() <= 1, "a week is attended, missed or cancelled, never two of these"
    active = rec["active"][:, 0, :]
    assert not np.any(events[~active]), "no events after a course ended"
    assert np.array_equal(att.sum(axis=0), attended)
    assert np.array_equal(((events & dyn.RUPTURE) > 0).sum(axis=0), o["ruptures"])
    assert np.array_equal(((events & dyn.REPAIR) > 0).sum(axis=0), o["repairs"])
    endings = ((events & (dyn.COMPLETED | dyn.GOOD_ENOUGH | dyn.DROPOUT)) > 0).sum(axis=0)
    assert np.all(endings == 1), "exactly one ending event per client"

    # Cohort metrics: rates in [0, 1] where defined.
    m = cohort_metrics({k: v[None] for k, v in o.items()})
    for name in ("dropout_rate", "recovery_rate", "reliable_improvement_rate", "reliable_deterioration_rate"):
        x = float(m[name][0])
        assert np.isnan(x) or 0 <= x <= 1, name
    assert 0 <= m["mean_sessions"][0] <= ps["planned_sessions"]

    # The output tables are consistent with the outcomes.
    table = records.clients_table(cohort, client_outcomes(cohort))
    assert len(table) == N_CLIENTS
    assert set(table["end_type"]) <= {"completed", "good_enough", "dropout"}
    sessions = records.sessions_table(cohort)
    assert np.array_equal(sessions.groupby("client_id")["attended"].sum().to_numpy(), attended)
    for key in ("bond", "goal", "task"):
        assert sessions[key].between(4, 20).all(), key
    assert sessions["alliance"].between(12, 60).all()


@settings(max_examples=15, deadline=None, phases=NO_SHRINK, derandomize=True)
@given(ps=PARAM_VECTORS, other=PARAM_VECTORS, seed=st.integers(0, 2**32), k=st.integers(0, 2))
def test_any_set_alone_equals_in_batch(ps, other, seed, k):
    ps, other = parameters.validate(ps), parameters.validate(other)
    batch = [other] * 3
    batch[k] = ps
    together = client_outcomes(Cohort(batch, 40, 4, seed).run())
    alone = client_outcomes(Cohort(ps, 40, 4, seed).run())
    for key, value in alone.items():
        assert np.array_equal(value[0], together[key][k], equal_nan=value.dtype.kind == "f"), key


@settings(max_examples=30, deadline=None, phases=NO_SHRINK, derandomize=True)
@given(data=st.data())
def test_validation_accepts_the_range_and_refuses_outside(data):
    name = data.draw(st.sampled_from([n for n, p in REGISTRY.items() if p.kind == "float"]))
    p = REGISTRY[name]
    inside = data.draw(st.floats(p.low, p.high))
    assert p.validate(inside) == inside
    outside = data.draw(
        st.one_of(st.floats(max_value=p.low, exclude_max=True), st.floats(min_value=p.high, exclude_min=True))
    )
    try:
        p.validate(outside)
    except parameters.ParameterError as err:
        assert name in str(err)
    else:
        raise AssertionError(f"{name} = {outside} should be refused")
