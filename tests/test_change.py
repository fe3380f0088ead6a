"""How clients change: direction tests for the mechanisms of symptom change, each shown to need its mechanism.

As in tests/test_dynamics.py, each comparison runs its parameter sets as one batch (common random
numbers), pools a few seeds, and gives the measured values in its message. Where a test claims that
something happens without a mechanism (sudden gains without measurement error, deterioration without
life events), it also checks that the effect vanishes when the mechanism that should carry it is removed,
so it cannot pass for the wrong reason.
"""

import numpy as np

from sim import records
from sim.dynamics import CASENESS, SUDDEN_GAIN
from sim.run import simulate
from tests.conftest import flags, fmt, mean_of, pooled, run_sets


def _gainers(o, c, s):
    """Share of clients with at least one sudden gain (the dynamic events)."""
    return float((o["sudden_gains"][s] > 0).mean())


def _detected_gains(o, c, s):
    """Share of completed and good-enough courses whose scores meet the sudden-gain criteria."""
    table = records.clients_table(c, o, s)
    planned = table["end_type"].isin(["completed", "good_enough"])
    return float(table.loc[planned, "sudden_gain"].mean())


def _deterioration(o, c, s):
    return float(flags(o, s)["reliable_deterioration"][o["sessions_attended"][s] >= 2].mean())


# ── response trajectories ─────────────────────────────────────────────────────────────────────


def test_responsiveness_spreads_outcomes_and_makes_early_response_predictive():
    def spread(o, c, s):
        seen = o["sessions_attended"][s] >= 2
        return float((o["intake_phq9"][s] - o["final_phq9"][s])[seen].std())

    def early_response_d(o, c, s):
        seen = o["sessions_attended"][s] >= 5
        change = (o["intake_phq9"][s] - o["final_phq9"][s])[seen]
        early = (o["early_change"][s] >= 0.25 * o["intake_phq9"][s])[seen]
        a, b = change[early], change[~early]
        return float((a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))

    sets = [{"responsiveness_sd": 0.0}, {"responsiveness_sd": 0.8}]
    flat, spread_out = pooled(spread, sets)
    assert spread_out > flat + 0.5, (
        f"client-level responsiveness should spread the change (SD {fmt([flat, spread_out])})"
    )
    alike, differing = pooled(early_response_d, sets)
    assert differing > alike + 0.2, (
        f"when clients differ in how fast they respond, early response should predict outcome more "
        f"(d of early responders {fmt([alike, differing])})"
    )


def test_negative_responders_worsen_without_life_events():
    world = {"life_event_rate": 0.0, "worsening_rate": 0.0}  # neither life events nor harmful sessions
    none, some = pooled(_deterioration, [{**world, "responsiveness_sd": 0.0}, {**world, "responsiveness_sd": 1.0}])
    assert some > none, f"clients who respond negatively should deteriorate with no life event ({fmt([none, some])})"


def test_some_clients_deteriorate_with_life_events_off():
    (with_harm,) = pooled(_deterioration, [{"life_event_rate": 0.0}])
    assert with_harm > 0.01, (
        f"harmful sessions and negative response should still bring deterioration ({with_harm:.3f})"
    )
    (without,) = pooled(_deterioration, [{"life_event_rate": 0.0, "worsening_rate": 0.0, "responsiveness_sd": 0.0}])
    assert without < with_harm / 2, (
        f"with life events, harmful sessions and negative response all removed, deterioration should nearly vanish "
        f"({with_harm:.3f} -> {without:.3f})"
    )


def test_an_open_rupture_stalls_the_work():
    def change(o, c, s):
        return float((o["intake_phq9"][s] - o["final_phq9"][s]).mean())

    none, stalled = pooled(change, [{"rupture_stall": 0.0}, {"rupture_stall": 1.0}])
    assert stalled < none - 0.1, f"sessions with an open rupture should do less ({fmt([none, stalled])})"


def test_perceived_empathy_adds_to_the_dose():
    def empathy_r(o, c, s):
        seen = o["sessions_attended"][s] >= 2
        change = (o["intake_phq9"][s] - o["final_phq9"][s])[seen]
        return float(np.corrcoef(o["perceived_empathy"][s][seen], change)[0, 1])

    low, high = pooled(empathy_r, [{"empathy_improvement_weight": 0.0}, {"empathy_improvement_weight": 1.0}])
    assert high > low + 0.03, f"empathy felt in the session should add to change (r {fmt([low, high])})"


# ── sudden gains ──────────────────────────────────────────────────────────────────────────────


def test_sudden_gains_occur_without_measurement_error():
    exact = {"measurement_error_sd": 0.0}
    with_gains, without = pooled(_detected_gains, [exact, {**exact, "sudden_gain_rate": 0.0}], record=True)
    assert with_gains > 0.05, f"with error-free scores, sudden gains should still occur ({with_gains:.3f})"
    assert with_gains > 3 * without, (
        f"they should come from the gain mechanism, not the slope of change ({fmt([without, with_gains])})"
    )


def test_a_repaired_rupture_can_be_the_turning_point():
    def gain_after_repair(o, c, s):
        events = np.stack(c.record.events)[:, s, :]
        repair = (events & 32) > 0  # REPAIR
        return float(((events & SUDDEN_GAIN) > 0)[repair].mean())

    low, high = pooled(gain_after_repair, [{"sudden_gain_trigger": 0.0}, {"sudden_gain_trigger": 5.0}], record=True)
    assert high > 2 * low, f"a repair should raise the chance of a gain at that session ({fmt([low, high])})"


def test_the_bond_strengthens_after_a_gain():
    def bond_rise(o, c, s):
        bond = np.stack(c.record.bond)[:, s, :].astype(float)
        events = np.stack(c.record.events)[:, s, :]
        gained = (events & SUDDEN_GAIN) > 0
        previous = np.vstack([np.full((1, bond.shape[1]), np.nan), bond[:-1]])
        return float(np.nanmean((bond - previous)[gained]))

    none, some = pooled(bond_rise, [{"sudden_gain_bond": 0.0}, {"sudden_gain_bond": 0.5}], record=True)
    assert some > none + 0.02, f"the bond should rise more in the week of a sudden gain ({fmt([none, some])})"


def test_some_gains_reverse_and_reversal_needs_the_mechanism():
    def reversed_share(o, c, s):
        gained = o["sudden_gains"][s] > 0
        return float((o["gain_reversals"][s][gained] > 0).mean())

    none, some = pooled(reversed_share, [{"sudden_gain_reversal": 0.0}, {"sudden_gain_reversal": 0.1}])
    assert none == 0.0 and some > 0.2, f"a reversal rate should make some gains reverse ({fmt([none, some])})"


def test_gainers_improve_more():
    c = simulate("baseline", clients=4000, seed=3).clients
    done = c[c["end_type"].isin(["completed", "good_enough"])]
    change = done["intake_phq9"] - done["final_phq9"]
    assert change[done["sudden_gain"]].mean() > change[~done["sudden_gain"]].mean() + 2, (
        "clients with a sudden gain should end better off (Aderka et al. 2012: g = 0.62)"
    )


# ── routine outcome monitoring and feedback ───────────────────────────────────────────────────


def test_expected_recovery_curve_flags_lagging_clients_not_all():
    flagged = pooled(mean_of("not_on_track"), [{"not_on_track_margin": 3.0}, {"not_on_track_margin": 9.0}])
    assert flagged[0] > flagged[1], f"a wider margin above the expected curve should flag fewer ({fmt(flagged)})"
    (default,) = pooled(mean_of("not_on_track"), [{}])
    assert 0.15 <= default <= 0.45, f"about a third of clients should ever lag the expected curve ({default:.3f})"


def test_the_alliance_flag_adds_clients_with_a_weak_alliance():
    sets = [{"alliance_flag_level": 0.0}, {"alliance_flag_level": 0.6}]
    without, with_flag = pooled(mean_of("not_on_track"), sets)
    assert with_flag > without + 0.05, f"an alliance flag should flag more clients ({fmt([without, with_flag])})"


def test_feedback_addresses_motivation_of_flagged_clients():
    base = {"therapist_feedback_share": 1.0}
    sets = [{**base, "feedback_engagement_boost": 0.0}, {**base, "feedback_engagement_boost": 0.8}]

    def flagged_dropout(o, c, s):
        flagged = o["not_on_track"][s]
        return float((o["end_type"][s][flagged] == 3).mean())

    none, boosted = pooled(flagged_dropout, sets)
    assert boosted < none, f"addressing motivation should keep more flagged clients ({fmt([none, boosted])})"


# ── hope and the follow-up ────────────────────────────────────────────────────────────────────


def test_intake_expectancy_still_predicts_outcome():
    c = simulate("baseline", clients=6000, seed=5).clients
    finished = c[c["finished_course"]]
    r = np.corrcoef(finished["expectancy"], finished["intake_phq9"] - finished["final_phq9"])[0, 1]
    assert r > 0.08, f"hope anchored to expectancy should keep intake expectancy predictive (r = {r:.3f})"


FOLLOW_YEAR = {"followup_weeks": 52}


def _recovered(o, s):
    return (o["sessions_attended"][s] >= 2) & (o["intake_phq9"][s] >= CASENESS) & (o["final_phq9"][s] < CASENESS)


def test_relapse_is_likelier_early_and_with_residual_symptoms():
    o, _ = run_sets([FOLLOW_YEAR], n_clients=8000)
    rec = _recovered(o, 0)
    weeks = o["relapse_week"][0][rec & o["relapse"][0]]
    assert (weeks <= 26).mean() > 0.6, (
        f"most first-year relapses should come in the first six months ({weeks.mean():.1f})"
    )
    residual = o["final_phq9"][0] >= 5
    low, high = o["relapse"][0][rec & ~residual].mean(), o["relapse"][0][rec & residual].mean()
    assert high > low, f"residual symptoms should raise relapse ({low:.3f} vs {high:.3f})"


def test_relapse_decay_and_residual_weight_carry_those_patterns():
    def early_share(o, c, s):
        weeks = o["relapse_week"][s][_recovered(o, s) & o["relapse"][s]]
        return float((weeks <= 13).mean())

    slow, fast = pooled(
        early_share, [{**FOLLOW_YEAR, "relapse_decay_weeks": 104.0}, {**FOLLOW_YEAR, "relapse_decay_weeks": 8.0}]
    )
    assert fast > slow + 0.2, f"a faster-falling hazard should concentrate relapse early ({fmt([slow, fast])})"

    def residual_gap(o, c, s):
        rec, residual = _recovered(o, s), o["final_phq9"][s] >= 5
        return float(o["relapse"][s][rec & residual].mean() - o["relapse"][s][rec & ~residual].mean())

    flat, steep = pooled(
        residual_gap, [{**FOLLOW_YEAR, "relapse_residual": 0.0}, {**FOLLOW_YEAR, "relapse_residual": 0.3}]
    )
    assert steep > flat + 0.05, f"the residual weight should open the gap in relapse ({fmt([flat, steep])})"


def test_the_follow_up_does_not_carry_everyone_below_caseness():
    o, _ = run_sets([{"followup_weeks": 104}], n_clients=6000)
    unrecovered = (o["sessions_attended"][0] >= 2) & (o["final_phq9"][0] >= CASENESS)
    still = (o["followup_phq9"][0][unrecovered] >= CASENESS).mean()
    assert 0.15 < still < 0.9, (
        f"two years on, some clients who did not recover should still be at caseness ({still:.2f})"
    )


def test_life_events_continue_after_the_course():
    def worse_at_followup(o, c, s):
        return float((o["followup_phq9"][s] - o["final_phq9"][s]).mean())

    calm, eventful = pooled(
        worse_at_followup, [{**FOLLOW_YEAR, "life_event_rate": 0.0}, {**FOLLOW_YEAR, "life_event_rate": 0.05}]
    )
    assert eventful > calm + 1.0, (
        f"life events after the course should raise the follow-up PHQ-9 ({fmt([calm, eventful])})"
    )
