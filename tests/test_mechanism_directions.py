"""Direction tests for mechanisms that no other test pins down.

Each test fails if its mechanism is removed from sim/dyads.py or sim/dynamics.py, or turned the
wrong way. As in tests/test_dynamics.py, each comparison runs its parameter sets as one batch (they
share their random draws), pools a few seeds, and gives the measured values in its message. Where a
mechanism only shows inside a week (a dent in the bond, a rupture's dip), the test reads the
recorded sessions.
"""

import numpy as np

from sim import records
from sim.dynamics import CASENESS, END_TYPES
from sim.population import ATTACHMENT_STYLES
from tests.conftest import events_of, fmt, mean_of, pooled, run_sets, style_is

SECURE, ANXIOUS = (ATTACHMENT_STYLES.index(s) for s in ("secure", "anxious"))
INCONSISTENT = {"therapist_consistency_mean": 0.3}  # plenty of cancelled weeks


def _seen(c, s):
    """Clients of set ``s`` who attended at least one session."""
    return c.state.attended[s] > 0


def _client_trait(c, s, name):
    return np.broadcast_to(getattr(c.clients, name), c.state.active.shape)[s]


def _final(key, mask=None):
    """Mean of a state variable (disclosure, hope, ...) at the end of the course, over clients seen."""

    def metric(o, c, s):
        chosen = _seen(c, s) if mask is None else _seen(c, s) & mask(o, c, s)
        return float(getattr(c.state, key)[s][chosen].mean())

    return metric


def _mean_change(o, c, s):
    return float((o["intake_phq9"][s] - o["final_phq9"][s]).mean())


def _bond_changes(c, s):
    """The sessions table of set ``s`` with the week's change in bond (WAI-SR subscale, 4-20) and style."""
    table = records.sessions_table(c, s)
    start = 4.0 + 16.0 * c.p["alliance_initial"][s, 0]
    table["bond_change"] = table["bond"] - table.groupby("client_id")["bond"].shift(1).fillna(start)
    table["style"] = _client_trait(c, s, "attachment_style")[table["client_id"].to_numpy()]
    return table


def _bond_lost_at(event: str, style: int):
    """Mean bond (WAI-SR subscale points) lost in the weeks with this event, among clients of a style."""

    def metric(o, c, s):
        table = _bond_changes(c, s)
        rows = table[table["event"].str.contains(event) & (table["style"] == style)]
        return float(-rows["bond_change"].mean())

    return metric


# ── 1. disclosure grows toward bond x trust ──────────────────────────────────────────────────

# No ruptures, and a bond that starts well below its target: the bond grows, so disclosure has room to grow.
NO_RUPTURES = {"rupture_rate": 0.0, "alliance_initial": 0.3}


def test_disclosure_rate_raises_disclosure():
    sets = [{**NO_RUPTURES, "disclosure_rate": 0.05}, {**NO_RUPTURES, "disclosure_rate": 0.6}]
    slow, fast = pooled(_final("disclosure"), sets)
    assert fast > slow + 0.03, (
        f"a faster disclosure rate should raise disclosure toward bond x trust (final disclosure {fmt([slow, fast])})"
    )


def test_disclosure_rate_raises_improvement_through_the_gate():
    sets = [{**NO_RUPTURES, "disclosure_gate": 1.0, "disclosure_rate": r} for r in (0.05, 0.6)]
    slow, fast = pooled(_mean_change, sets)
    assert fast > slow + 0.3, (
        f"faster disclosure should open the disclosure gate and raise PHQ-9 improvement (got {fmt([slow, fast])})"
    )


def test_trusting_clients_gain_more_disclosure():
    def gain(low_avoidance: bool):
        def metric(o, c, s):
            avoidance = c.dyads.avoidance[s]
            half = avoidance < np.median(avoidance) if low_avoidance else avoidance >= np.median(avoidance)
            initial = c.p["alliance_initial"][s, 0] * c.dyads.trust[s]
            return float((c.state.disclosure[s] - initial)[_seen(c, s) & half].mean())

        return metric

    (trusting,) = pooled(gain(True), [{}])
    (guarded,) = pooled(gain(False), [{}])
    assert trusting > guarded + 0.03, (
        f"clients with more trust (less avoidance) should gain more disclosure over the course "
        f"(gain: high avoidance {guarded:.4f}, low avoidance {trusting:.4f})"
    )


def test_trust_raises_disclosure_at_an_equal_bond():
    # Avoidance kept out of the bond (no ruptures, no avoidant penalty or slowdown), so only trust
    # separates the two halves: disclosure should settle near bond x trust, higher for trusting clients.
    world = {"rupture_rate": 0.0, "avoidant_trust_penalty": 0.0, "avoidant_bond_slowdown": 0.0}

    def by_avoidance(key: str, low_avoidance: bool):
        def metric(o, c, s):
            avoidance = c.dyads.avoidance[s]
            half = avoidance < np.median(avoidance) if low_avoidance else avoidance >= np.median(avoidance)
            return float(getattr(c.state, key)[s][_seen(c, s) & half].mean())

        return metric

    disclosure = [pooled(by_avoidance("disclosure", low), [world])[0] for low in (False, True)]
    bond = [pooled(by_avoidance("bond", low), [world])[0] for low in (False, True)]
    assert disclosure[1] > disclosure[0] + 0.07, (
        f"at an equal bond, clients with more trust (less avoidance) should disclose more "
        f"(final disclosure, high -> low avoidance: {fmt(disclosure)}; bond {fmt(bond)})"
    )


# ── 2. cancellations dent the bond, more for anxious clients ────────────────────────────────


def test_cancelled_weeks_dent_the_bond_more_for_anxious_clients():
    secure, anxious = (
        pooled(_bond_lost_at("cancelled", style), [INCONSISTENT], record=True)[0] for style in (SECURE, ANXIOUS)
    )
    assert secure > 0.5, f"a cancelled week should lower the bond (mean WAI-SR bond points lost: {secure:.3f})"
    assert anxious > secure + 0.15, (
        f"a cancelled week should dent an anxious client's bond more than a secure client's "
        f"(bond points lost: secure {secure:.3f}, anxious {anxious:.3f})"
    )


def test_cancellations_lower_the_alliance_through_the_dent():
    sets = [{"therapist_consistency_mean": c, "cancellation_trust_dent": d} for d in (0.0, 0.15) for c in (0.9, 0.3)]
    alliance = pooled(mean_of("mean_alliance"), sets)
    loss_without, loss_with = alliance[0] - alliance[1], alliance[2] - alliance[3]
    assert loss_with > loss_without + 0.8, (
        f"lowering therapist consistency should lower the mean alliance more when cancellations dent the bond "
        f"(WAI-SR lost: without a dent {loss_without:.3f}, with a dent {loss_with:.3f})"
    )


# ── 3. anxious rupture sensitivity ──────────────────────────────────────────────────────────


def test_rupture_anxiety_raises_ruptures_among_anxious_clients():
    sets = [{"rupture_anxiety": 0.0}, {"rupture_anxiety": 3.0}]
    anxious = pooled(mean_of("ruptures", style_is(ANXIOUS)), sets)
    secure = pooled(mean_of("ruptures", style_is(SECURE)), sets)
    rise_anxious, rise_secure = anxious[1] - anxious[0], secure[1] - secure[0]
    assert rise_anxious > 0.2, (
        f"raising rupture_anxiety should raise ruptures among anxious clients (got {fmt(anxious)})"
    )
    assert rise_anxious > rise_secure + 0.03, (
        f"raising rupture_anxiety should raise ruptures more for anxious than for secure clients "
        f"(ruptures per client: anxious {fmt(anxious)}, secure {fmt(secure)})"
    )


# ── 4. the anxious fragile bond ─────────────────────────────────────────────────────────────


def test_rupture_dips_the_bond_deeper_for_anxious_clients():
    secure, anxious = (pooled(_bond_lost_at("rupture", style), [{}], record=True)[0] for style in (SECURE, ANXIOUS))
    assert secure > 1.0, f"a rupture should lower the bond (mean WAI-SR bond points lost: {secure:.3f})"
    assert anxious > secure + 0.5, (
        f"a rupture should dip an anxious client's bond deeper than a secure client's "
        f"(bond points lost: secure {secure:.3f}, anxious {anxious:.3f})"
    )


# ── 5. felt progress feeds hope ─────────────────────────────────────────────────────────────


def test_felt_progress_raises_hope_and_felt_worsening_lowers_it():
    def hope_of(improved: bool):
        def mask(o, c, s):
            felt = c.dyads.intake[s] - c.state.phq9[s]  # intake minus the last score administered
            return felt >= 5 if improved else felt <= -1

        return _final("hope", mask)

    # Without remoralization hope is not held near its ceiling, so progress can move it both ways.
    sets = [{"remoralization_rate": 0.0, "progress_hope_weight": w} for w in (0.0, 0.1)]
    improvers = pooled(hope_of(True), sets)
    worsened = pooled(hope_of(False), sets)
    assert improvers[1] > improvers[0] + 0.1, (
        f"weighting felt progress should raise the hope of clients whose scores fell (got {fmt(improvers)})"
    )
    assert worsened[1] < worsened[0] - 0.1, (
        f"weighting felt progress should lower the hope of clients whose scores rose (got {fmt(worsened)})"
    )


# ── 6. hope in the therapeutic dose ─────────────────────────────────────────────────────────


def test_hope_weight_raises_improvement_when_hope_is_high_and_lowers_it_when_low():
    def sets(expectancy):
        # Without remoralization hope stays near expectancy, well above or below the alliance.
        world = {"expectancy_mean": expectancy, "remoralization_rate": 0.0}
        return [{**world, "hope_improvement_weight": w} for w in (0.0, 1.0)]

    hopeful = pooled(_mean_change, sets(0.95))
    hopeless = pooled(_mean_change, sets(0.05))
    assert hopeful[1] > hopeful[0] + 0.3, (
        f"weighting hope in the dose should raise improvement when clients are hopeful (got {fmt(hopeful)})"
    )
    assert hopeless[1] < hopeless[0] - 0.8, (
        f"weighting hope in the dose should lower improvement when clients have little hope (got {fmt(hopeless)})"
    )


# ── 7. engagement drives attendance ─────────────────────────────────────────────────────────


def test_engagement_attendance_raises_missed_sessions_most_among_low_engagement_clients():
    def missed_share(low_engagement: bool):
        """Share of the sessions a client was offered (not cancelled) that the client missed."""

        def metric(o, c, s):
            table = records.sessions_table(c, s)
            start = (
                c.p["alliance_initial"][s, 0] + _client_trait(c, s, "expectancy") + _client_trait(c, s, "readiness")
            ) / 3
            half = start < np.median(start) if low_engagement else start >= np.median(start)
            table = table[half[table["client_id"].to_numpy()]]
            missed = table["event"].str.contains("missed")
            return float(missed[table["attended"] | missed].mean())

        return metric

    sets = [{"engagement_attendance": 0.0}, {"engagement_attendance": 6.0}]
    low = pooled(missed_share(True), sets, record=True)
    high = pooled(missed_share(False), sets, record=True)
    assert low[1] > low[0] + 0.2, (
        f"raising engagement_attendance should raise missed sessions among low-engagement clients (got {fmt(low)})"
    )
    assert low[1] - low[0] > high[1] - high[0] + 0.1, (
        f"raising engagement_attendance should raise missed sessions more for low- than for high-engagement "
        f"clients (missed share: low {fmt(low)}, high {fmt(high)})"
    )


# ── 8. the engagement update ────────────────────────────────────────────────────────────────


def test_engagement_rate_raises_engagement():
    world = {"readiness_mean": 0.9}  # a target well above engagement at intake
    slow, fast = pooled(_final("engagement"), [{**world, "engagement_rate": 0.01}, {**world, "engagement_rate": 0.8}])
    assert fast > slow + 0.03, (
        f"engagement moves toward (hope + alliance + readiness) / 3, above its intake level, so a faster "
        f"engagement rate should raise final engagement (got {fmt([slow, fast])})"
    )


def test_engagement_follows_the_alliance():
    low, high = pooled(_final("engagement"), [{"therapist_empathy_mean": 0.2}, {"therapist_empathy_mean": 0.9}])
    assert high > low + 0.03, (
        f"engagement should follow the alliance, so more empathic therapists should leave clients more "
        f"engaged (final engagement {fmt([low, high])})"
    )


# ── 9. technical competence ─────────────────────────────────────────────────────────────────


def test_competence_raises_improvement_through_the_dose():
    # Competence kept out of task agreement, so only the dose carries it.
    sets = [{"task_competence_weight": 0.0, "therapist_competence_mean": m} for m in (0.2, 0.95)]
    low, high = pooled(_mean_change, sets)
    assert high > low + 0.4, f"more competent therapists should bring more PHQ-9 improvement (got {fmt([low, high])})"


def test_competence_raises_task_agreement():
    # Competence kept out of the dose, so only task agreement carries it.
    sets = [{"competence_improvement_weight": 0.0, "therapist_competence_mean": m} for m in (0.2, 0.95)]
    low, high = pooled(_final("task"), sets)
    assert high > low + 0.1, f"more competent therapists should reach higher task agreement (got {fmt([low, high])})"


# ── 10. caseload overload ───────────────────────────────────────────────────────────────────


def _cancellations(o, c, s):
    return len(events_of(c, s, "cancelled")) / c.n_clients


def test_overloaded_caseloads_raise_cancellations():
    # 2000 clients over 100 therapists is 20 each: a capacity of 10 doubles every caseload's strain.
    roomy, overloaded = pooled(
        _cancellations, [{"therapist_capacity_mean": 40.0}, {"therapist_capacity_mean": 10.0}], record=True
    )
    assert overloaded > roomy + 1.0, (
        f"caseloads above capacity should raise cancellations per client (got {fmt([roomy, overloaded])})"
    )


def test_overload_cancellation_raises_cancellations_only_when_overloaded():
    def sets(capacity):
        return [{"therapist_capacity_mean": capacity, "overload_cancellation": x} for x in (0.0, 0.4)]

    overloaded = pooled(_cancellations, sets(10.0), record=True)
    roomy = pooled(_cancellations, sets(40.0), record=True)
    assert overloaded[1] > overloaded[0] + 3.0, (
        f"raising overload_cancellation should raise cancellations when caseloads exceed capacity "
        f"(got {fmt(overloaded)})"
    )
    assert roomy[1] - roomy[0] < 0.2, (
        f"overload_cancellation should barely matter when caseloads are within capacity (got {fmt(roomy)})"
    )


# ── 11. a good-enough ending only once reliably improved and below caseness ─────────────────────────────


def test_good_enough_endings_follow_two_sessions_reliably_improved_and_below_caseness():
    good_enough = END_TYPES.index("good_enough")
    for seed in (11, 12, 13):
        o, c = run_sets([{"good_enough_rate": 0.8, "good_enough_min_sessions": 2}], seed=seed, record=True)
        ended = np.flatnonzero(o["end_type"][0] == good_enough)
        assert len(ended) > 100, f"a high good_enough_rate should give good-enough endings (got {len(ended)})"
        table = records.sessions_table(c, 0)
        last_two = table[table["attended"] & np.isin(table["client_id"], ended)].groupby("client_id").tail(2)
        assert (last_two.groupby("client_id").size() == 2).all(), "a good-enough ending needs two attended sessions"
        intake = o["intake_phq9"][0][last_two["client_id"].to_numpy()]
        unwell = last_two[(last_two["phq9"].to_numpy() >= CASENESS) | (intake - last_two["phq9"].to_numpy() < 6)]
        assert unwell.empty, (
            f"a good-enough ending should come only after two sessions reliably improved (6 points below intake) "
            f"and below caseness ({CASENESS}); seed {seed}: {unwell['client_id'].nunique()} of {len(ended)} "
            f"endings were not"
        )


# ── 12. life events, relapse size, natural recovery ─────────────────────────────────────────


def test_bigger_life_events_worsen_final_phq9():
    sets = [{"life_event_rate": 0.05, "life_event_size": 0.0}, {"life_event_rate": 0.05, "life_event_size": 12.0}]
    small, big = pooled(mean_of("final_phq9"), sets)
    assert big > small + 2.0, f"bigger life events should raise the final PHQ-9 (got {fmt([small, big])})"


def test_bigger_relapses_worsen_followup_relative_to_final():
    def followup_minus_final(o, c, s):
        return float((o["followup_phq9"][s] - o["final_phq9"][s]).mean())

    small, big = pooled(followup_minus_final, [{"relapse_size": 0.0}, {"relapse_size": 16.0}])
    assert big > small + 0.5, (
        f"a bigger relapse_size should raise the follow-up PHQ-9 relative to the final one (got {fmt([small, big])})"
    )


def test_natural_recovery_raises_improvement():
    none, some = pooled(_mean_change, [{"natural_recovery_rate": 0.0}, {"natural_recovery_rate": 0.05}])
    assert some > none + 2.0, f"a higher natural_recovery_rate should raise PHQ-9 improvement (got {fmt([none, some])})"
