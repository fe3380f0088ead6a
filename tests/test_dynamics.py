"""Direction tests: one per mechanism, two runs on common random numbers, one parameter changed.

Every comparison runs the parameter sets as one batch (they share their random draws), pools a few
seeds, and states the measured values in its message.
"""

import numpy as np
import pytest

from sim import dynamics
from sim.dynamics import CASENESS
from sim.population import ATTACHMENT_STYLES
from sim.reasons import REASONS
from tests.conftest import cause_share, end_share, flags, fmt, mean_of, pooled, run_sets, style_is

SECURE, ANXIOUS, AVOIDANT = (ATTACHMENT_STYLES.index(s) for s in ("secure", "anxious", "avoidant"))
BREAK = {"planned_break_start": 5, "planned_break_weeks": 3}
WEEK_AFTER_BREAK = BREAK["planned_break_start"] + BREAK["planned_break_weeks"]


def test_wai_sr_spans_12_to_60():
    assert dynamics.wai_sr(0.0, 0.0, 0.0) == 12.0
    assert dynamics.wai_sr(1.0, 1.0, 1.0) == 60.0
    assert dynamics.wai_sr(0.5, 0.5, 0.5) == 36.0


# ── empathy ───────────────────────────────────────────────────────────────────────────────────


def test_empathy_lowers_dropout():
    low, high = pooled(end_share("dropout"), [{"therapist_empathy_mean": 0.3}, {"therapist_empathy_mean": 0.9}])
    assert high < low, f"raising therapist empathy should lower dropout (got {fmt([low, high])})"


def test_empathy_raises_alliance():
    low, high = pooled(mean_of("mean_alliance"), [{"therapist_empathy_mean": 0.3}, {"therapist_empathy_mean": 0.9}])
    assert high > low + 1.0, f"raising therapist empathy should raise the mean WAI-SR (got {fmt([low, high])})"


def test_empathy_raises_perceived_empathy_and_lowers_ruptures():
    sets = [{"therapist_empathy_mean": 0.3}, {"therapist_empathy_mean": 0.9}]
    perceived = pooled(mean_of("perceived_empathy"), sets)
    ruptures = pooled(mean_of("ruptures"), sets)
    assert perceived[1] > perceived[0], f"raising empathy should raise perceived empathy (got {fmt(perceived)})"
    assert ruptures[1] < ruptures[0], f"raising empathy should lower ruptures per client (got {fmt(ruptures)})"


# ── cultural mismatch and humility ────────────────────────────────────────────────────────────

MIXED = {"client_minority_share": 0.6, "therapist_minority_share": 0.3}


def _mismatched(o, c, s):
    return ~o["cultural_match"][s]


def test_humility_lowers_ruptures_in_mismatched_dyads():
    sets = [{**MIXED, "therapist_humility_mean": 0.1}, {**MIXED, "therapist_humility_mean": 0.9}]
    low, high = pooled(mean_of("ruptures", _mismatched), sets)
    assert high < low, f"raising cultural humility should lower ruptures in mismatched dyads (got {fmt([low, high])})"


def test_humility_leaves_matched_dyads_untouched():
    sets = [{**MIXED, "therapist_humility_mean": 0.1}, {**MIXED, "therapist_humility_mean": 0.9}]
    o, _ = run_sets(sets)
    matched = o["cultural_match"][0]
    assert np.array_equal(matched, o["cultural_match"][1]), "random matching must not depend on humility"
    assert matched.sum() > 100
    for key in ("ruptures", "sessions_attended", "final_phq9"):
        assert np.array_equal(o[key][0][matched], o[key][1][matched]), (
            f"humility only offsets cultural strain, so culturally matched dyads should have identical {key}"
        )


def test_cultural_strain_raises_ruptures_in_mismatched_dyads():
    sets = [{**MIXED, "cultural_strain_rupture": 0.0}, {**MIXED, "cultural_strain_rupture": 4.0}]
    low, high = pooled(mean_of("ruptures", _mismatched), sets)
    assert high > low, f"more cultural strain should raise ruptures in mismatched dyads (got {fmt([low, high])})"


def test_mismatch_lowers_perceived_empathy_when_salient():
    sets = [{**MIXED, "cultural_salience_mean": 0.9, "therapist_humility_mean": 0.1}]
    o, c = run_sets(sets, n_clients=4000)
    matched = o["cultural_match"][0]
    pe_match = o["perceived_empathy"][0][matched].mean()
    pe_mismatch = o["perceived_empathy"][0][~matched].mean()
    assert pe_mismatch < pe_match - 0.03, (
        f"salient cultural mismatch with a humble-less therapist should lower perceived empathy "
        f"(matched {pe_match:.3f}, mismatched {pe_mismatch:.3f})"
    )


# ── rupture and repair ────────────────────────────────────────────────────────────────────────


def _repair_share(o, c, s):
    return float(o["repairs"][s].sum() / o["ruptures"][s].sum())


def test_repair_skill_repairs_more_ruptures():
    sets = [{"therapist_repair_mean": 0.2}, {"therapist_repair_mean": 0.9}]
    low, high = pooled(_repair_share, sets)
    assert high > low + 0.05, f"raising repair skill should repair a larger share of ruptures (got {fmt([low, high])})"


def test_repair_skill_lowers_the_weight_of_unrepaired_ruptures_in_dropout():
    def rupture_share(o, c, s):
        dropped = o["end_type"][s] == 3
        return float(o["reason_shares"][s][dropped, REASONS.index("unrepaired_rupture")].mean())

    sets = [{"therapist_repair_mean": 0.2}, {"therapist_repair_mean": 0.9}]
    low, high = pooled(rupture_share, sets)
    assert high < low, (
        f"raising repair skill should lower the share of unrepaired ruptures in why clients leave "
        f"(got {fmt([low, high])})"
    )


def test_rupture_rate_raises_ruptures():
    low, high = pooled(mean_of("ruptures"), [{"rupture_rate": 0.02}, {"rupture_rate": 0.15}])
    assert high > low, f"raising rupture_rate should raise ruptures per client (got {fmt([low, high])})"


def test_repair_bonus_strengthens_the_alliance():
    sets = [{"repair_bonus": 0.0, "rupture_rate": 0.15}, {"repair_bonus": 1.0, "rupture_rate": 0.15}]
    low, high = pooled(mean_of("mean_alliance"), sets)
    assert high > low, f"a repair that leaves the bond stronger should raise the mean alliance (got {fmt([low, high])})"


# ── attachment ────────────────────────────────────────────────────────────────────────────────


def _rupture_after_break(style: int):
    """Share of clients of a style with a rupture at the first session slot after the break."""

    def metric(o, c, s):
        from sim import records

        table = records.sessions_table(c, s)
        week = table[(table["session"] == WEEK_AFTER_BREAK) & table["attended"]]
        styles = np.broadcast_to(c.clients.attachment_style, o["end_type"].shape)[s]
        week = week[styles[week["client_id"].to_numpy()] == style]
        return float(week["event"].str.contains("rupture").mean())

    return metric


def test_break_raises_ruptures_for_anxious_clients_after_the_break():
    rates = pooled(_rupture_after_break(ANXIOUS), [{}, BREAK], record=True, n_clients=4000)
    assert rates[1] > rates[0], (
        f"a therapist break should raise anxious clients' rupture risk at the next session "
        f"(share rupturing at session {WEEK_AFTER_BREAK}: {fmt(rates)})"
    )


def test_break_hits_anxious_clients_harder_than_secure_clients():
    anxious = pooled(_rupture_after_break(ANXIOUS), [{}, BREAK], record=True, n_clients=8000)
    secure = pooled(_rupture_after_break(SECURE), [{}, BREAK], record=True, n_clients=8000)
    rise_anxious, rise_secure = anxious[1] - anxious[0], secure[1] - secure[0]
    assert rise_anxious > rise_secure, (
        f"a therapist break should raise ruptures more for anxious than for secure clients "
        f"(rise at session {WEEK_AFTER_BREAK}: anxious {fmt(anxious)}, secure {fmt(secure)})"
    )


def test_break_gives_anxious_clients_more_ruptures_over_the_course():
    # Enough extra weeks that the break does not cut courses short. Per session attended: a break
    # also costs sessions (missed and dropped out after it), which would hide the rise in risk.
    sets = [{"extra_weeks": 20}, {**BREAK, "extra_weeks": 20}]

    def ruptures_per_session(o, c, s):
        anxious = style_is(ANXIOUS)(o, c, s)
        return float(o["ruptures"][s][anxious].sum() / o["sessions_attended"][s][anxious].sum())

    without, with_break = pooled(ruptures_per_session, sets, n_clients=4000)
    assert with_break > without, (
        f"a therapist break should give anxious clients more ruptures per session over the course than no break "
        f"(ruptures per session attended: {fmt([without, with_break])})"
    )


def test_anxious_clients_bond_faster():
    sets = [{"anxious_bond_speedup": 0.0}, {"anxious_bond_speedup": 3.0}]
    slow, fast = pooled(mean_of("early_alliance", style_is(ANXIOUS)), sets)
    assert fast > slow, f"a faster anxious bond should raise anxious clients' early alliance (got {fmt([slow, fast])})"


def test_avoidance_lowers_early_alliance():
    sets = [{"attachment_avoidance_mean": 2.0}, {"attachment_avoidance_mean": 5.0}]
    low, high = pooled(mean_of("early_alliance"), sets)
    assert high < low, f"more attachment avoidance should lower the early alliance (got {fmt([low, high])})"


def test_avoidant_bond_slowdown_lowers_early_alliance():
    # The bond starts well below its target, so the speed of bonding shows in sessions 1-3.
    sets = [{"alliance_initial": 0.3, "avoidant_bond_slowdown": s} for s in (0.0, 1.0)]
    low, high = pooled(mean_of("early_alliance", style_is(AVOIDANT)), sets)
    assert high < low, f"a slower avoidant bond should lower avoidant clients' early alliance (got {fmt([low, high])})"


def test_avoidance_raises_ruptures():
    sets = [{"attachment_avoidance_mean": 2.0}, {"attachment_avoidance_mean": 5.0}]
    low, high = pooled(mean_of("ruptures"), sets)
    assert high > low, f"more attachment avoidance should raise ruptures per client (got {fmt([low, high])})"


def test_withdrawal_concealment_lowers_repairs_for_avoidant_clients():
    def repair_share_avoidant(o, c, s):
        mask = style_is(AVOIDANT)(o, c, s)
        return float(o["repairs"][s][mask].sum() / o["ruptures"][s][mask].sum())

    sets = [{"withdrawal_concealment": 0.0}, {"withdrawal_concealment": 1.0}]
    seen, hidden = pooled(repair_share_avoidant, sets)
    assert hidden < seen, f"concealed withdrawal should lower repairs for avoidant clients (got {fmt([seen, hidden])})"


def test_avoidance_raises_withdrawal_ruptures():
    # Rupture causes as the event log records them (the largest relative-risk term).
    from tests.conftest import events_of

    def withdrawals(o, c, s):
        return len(events_of(c, s, "rupture", "withdrawal")) / c.n_clients

    sets = [{"attachment_avoidance_mean": 2.0}, {"attachment_avoidance_mean": 5.0}]
    low, high = pooled(withdrawals, sets, record=True)
    assert high > low, f"more attachment avoidance should raise withdrawal ruptures per client (got {fmt([low, high])})"


# ── consistency ───────────────────────────────────────────────────────────────────────────────


def _cancellations(o, c, s):
    from tests.conftest import events_of

    return len(events_of(c, s, "cancelled")) / c.n_clients


def test_inconsistency_raises_cancellations():
    sets = [{"therapist_consistency_mean": 0.9}, {"therapist_consistency_mean": 0.3}]
    high, low = pooled(_cancellations, sets, record=True)
    assert low > high, f"lowering therapist consistency should raise cancellations per client (got {fmt([high, low])})"


def test_inconsistency_lowers_alliance():
    sets = [{"therapist_consistency_mean": 0.9}, {"therapist_consistency_mean": 0.3}]
    high, low = pooled(mean_of("mean_alliance"), sets)
    assert low < high, f"lowering therapist consistency should lower the mean alliance (got {fmt([high, low])})"


# ── feedback-informed care ────────────────────────────────────────────────────────────────────


def _deterioration_not_on_track(o, c, s):
    return float(flags(o, s)["reliable_deterioration"][o["not_on_track"][s]].mean())


def test_feedback_lowers_deterioration_among_not_on_track_clients():
    sets = [{"therapist_feedback_share": 0.0}, {"therapist_feedback_share": 1.0}]
    without, with_fb = pooled(_deterioration_not_on_track, sets, n_clients=4000)
    assert with_fb < without, (
        f"feedback-informed care should lower reliable deterioration among not-on-track clients "
        f"(got {fmt([without, with_fb])})"
    )


def test_feedback_raises_repairs():
    sets = [{"therapist_feedback_share": 0.0}, {"therapist_feedback_share": 1.0}]
    without, with_fb = pooled(_repair_share, sets)
    assert with_fb > without, f"feedback-informed care should repair more ruptures (got {fmt([without, with_fb])})"


# ── collaboration, disclosure, hope ───────────────────────────────────────────────────────────


def test_collaboration_raises_early_goal_agreement():
    low, high = pooled(mean_of("early_goal_agreement"), [{"collaboration_rate": 0.1}, {"collaboration_rate": 0.6}])
    assert high > low, f"faster collaboration should raise early goal agreement (got {fmt([low, high])})"


def _mean_change(o, c, s):
    return float((o["intake_phq9"][s] - o["final_phq9"][s]).mean())


def test_disclosure_gate_caps_change():
    open_, gated = pooled(_mean_change, [{"disclosure_gate": 0.0}, {"disclosure_gate": 1.0}])
    assert gated < open_, f"a stronger disclosure gate should lower PHQ-9 improvement (got {fmt([open_, gated])})"


def test_remoralization_raises_hope_early():
    def early_hope(o, c, s):
        from sim import records

        table = records.sessions_table(c, s)
        return float(table.loc[table["attended"] & (table["session"] <= 3), "hope"].mean())

    low, high = pooled(early_hope, [{"remoralization_rate": 0.0}, {"remoralization_rate": 0.6}], record=True)
    assert high > low, f"remoralization should raise hope in sessions 1-3 (got {fmt([low, high])})"


def test_remoralization_lift_raises_improvement():
    low, high = pooled(_mean_change, [{"remoralization_lift": 0.0}, {"remoralization_lift": 1.0}])
    assert high > low, f"a bond that lifts hope further should raise PHQ-9 improvement (got {fmt([low, high])})"


def test_hope_stays_anchored_to_expectancy():
    # Hope moves toward expectancy + lift x bond x (1 - expectancy): clients who came with little
    # hope keep less of it, where a common ceiling would erase the difference by the end.
    def final_hope_gap(o, c, s):
        expectancy = np.broadcast_to(c.clients.expectancy, o["end_type"].shape)[s]
        seen = c.state.attended[s] >= 6
        hope = c.state.hope[s][seen]
        low = expectancy[seen] < np.median(expectancy[seen])
        return float(hope[~low].mean() - hope[low].mean())

    gap = pooled(final_hope_gap, [{"remoralization_lift": 0.25}])[0]
    assert gap > 0.1, f"clients with more hope at intake should still hope more after six sessions (gap {gap:.3f})"


def test_expectancy_lowers_dropout():
    low, high = pooled(end_share("dropout"), [{"expectancy_mean": 0.2}, {"expectancy_mean": 0.9}])
    assert high < low, f"more hope at intake should lower dropout (got {fmt([low, high])})"


# ── engagement, barriers, attendance ──────────────────────────────────────────────────────────


def test_barriers_lower_sessions_attended():
    low, high = pooled(mean_of("sessions_attended"), [{"barriers_mean": 0.1}, {"barriers_mean": 0.7}])
    assert high < low, f"more practical barriers should lower sessions attended (got {fmt([low, high])})"


def test_barriers_raise_practical_barrier_dropouts():
    low, high = pooled(cause_share("practical_barriers"), [{"barriers_mean": 0.1}, {"barriers_mean": 0.7}])
    assert high > low, f"more practical barriers should raise practical_barriers dropouts (got {fmt([low, high])})"


def test_attendance_base_raises_sessions_attended():
    low, high = pooled(mean_of("sessions_attended"), [{"attendance_base": 1.0}, {"attendance_base": 5.0}])
    assert high > low, f"a higher attendance log-odds should raise sessions attended (got {fmt([low, high])})"


# ── symptoms, life events, support ────────────────────────────────────────────────────────────


def _deterioration(o, c, s):
    return float(flags(o, s)["reliable_deterioration"].mean())


def test_life_events_raise_deterioration():
    none, many = pooled(_deterioration, [{"life_event_rate": 0.0}, {"life_event_rate": 0.05}])
    assert many > none, f"more life events should raise reliable deterioration (got {fmt([none, many])})"


def test_support_buffers_life_events():
    sets = [{"life_event_rate": 0.05, "support_buffer": 0.0}, {"life_event_rate": 0.05, "support_buffer": 1.0}]
    unbuffered, buffered = pooled(_deterioration, sets)
    assert buffered < unbuffered, (
        f"support that buffers life events should lower reliable deterioration (got {fmt([unbuffered, buffered])})"
    )


def test_worsening_in_weak_alliances_raises_deterioration():
    sets = [
        {"worsening_rate": 0.0, "weak_alliance_threshold": 0.8},
        {"worsening_rate": 4.0, "weak_alliance_threshold": 0.8},
    ]
    none, much = pooled(_deterioration, sets)
    assert much > none, f"a worsening path for weak alliances should raise deterioration (got {fmt([none, much])})"


def test_improvement_rate_raises_recovery():
    def recovery(o, c, s):
        return float(flags(o, s)["recovery"].mean())

    low, high = pooled(recovery, [{"improvement_rate": 0.05}, {"improvement_rate": 0.2}])
    assert high > low, f"a higher improvement rate should raise recovery (got {fmt([low, high])})"


def test_alliance_weight_makes_alliance_predict_outcome():
    def alliance_outcome_r(o, c, s):
        seen = o["sessions_attended"][s] > 0
        change = (o["intake_phq9"][s] - o["final_phq9"][s])[seen]
        return float(np.corrcoef(o["early_alliance"][s][seen], change)[0, 1])

    sets = [{"alliance_improvement_weight": 0.0}, {"alliance_improvement_weight": 1.0}]
    low, high = pooled(alliance_outcome_r, sets)
    assert high > low, f"weighting the alliance in the dose should raise r(alliance, change) (got {fmt([low, high])})"


# ── dropout hazard ────────────────────────────────────────────────────────────────────────────

WEAK_WORLD = {"alliance_initial": 0.2, "bond_base": 0.1, "agreement_base": 0.1, "therapist_empathy_mean": 0.1}
BREAKS_WORLD = {"therapist_consistency_mean": 0.2, "planned_break_start": 4, "planned_break_weeks": 3}


@pytest.mark.parametrize(
    ("name", "low", "high", "cause", "world"),
    [
        ("dropout_alliance", 1.0, 8.0, "weak_alliance", WEAK_WORLD),
        ("dropout_rupture", 0.0, 4.0, "unrepaired_rupture", {}),
        ("dropout_engagement", 0.0, 8.0, "low_engagement", {"readiness_mean": 0.1, "expectancy_mean": 0.1}),
        ("dropout_barriers", 0.0, 4.0, "practical_barriers", {}),
        ("dropout_missed", 0.0, 3.0, "practical_barriers", {"barriers_mean": 0.6}),
        ("break_attendance", 0.0, 3.0, "therapy_breaks", BREAKS_WORLD),
        ("dropout_breaks", 0.0, 2.0, "therapy_breaks", BREAKS_WORLD),
        ("dropout_improved", 0.0, 6.0, "felt_better", {}),
    ],
)
def test_dropout_term_raises_its_cause(name, low, high, cause, world):
    sets = [{**world, name: low}, {**world, name: high}]
    causes = pooled(cause_share(cause), sets)
    dropout = pooled(end_share("dropout"), sets)
    assert causes[1] > causes[0], f"raising {name} should raise {cause} dropouts (got {fmt(causes)})"
    assert dropout[1] > dropout[0], f"raising {name} should raise dropout (got {fmt(dropout)})"


def test_dropout_base_raises_dropout():
    low, high = pooled(end_share("dropout"), [{"dropout_base": -7.0}, {"dropout_base": -5.0}])
    assert high > low, f"raising dropout_base should raise dropout (got {fmt([low, high])})"


def test_early_risk_amplifier_raises_dropout_before_the_second_session():
    def early(o, c, s):
        return float(((o["end_type"][s] == 3) & (o["sessions_attended"][s] <= 1)).mean())

    def later(o, c, s):
        return float(((o["end_type"][s] == 3) & (o["sessions_attended"][s] >= 3)).mean())

    sets = [{"early_risk_amplifier": 0.0}, {"early_risk_amplifier": 4.0}]
    low, high = pooled(early, sets)
    assert high > 2 * low, (
        f"amplifying the early risks should raise dropout after at most one session (got {fmt([low, high])})"
    )
    before, after = pooled(later, sets)
    assert after <= before, f"the amplifier acts before the second session only (later dropout {fmt([before, after])})"


def test_retention_skill_lowers_dropout():
    low, high = pooled(end_share("dropout"), [{"therapist_retention_mean": 0.1}, {"therapist_retention_mean": 0.9}])
    assert high < low, f"therapists better at keeping clients should lose fewer of them (got {fmt([low, high])})"


def test_retention_skill_varies_dropout_between_therapists_not_outcome():
    from analysis.estimators import icc_latent_binary, icc_random_intercept

    def icc_dropout(o, c, s):
        return icc_latent_binary(o["end_type"][s] == 3, o["therapist"][s])

    def icc_change(o, c, s):
        seen = o["sessions_attended"][s] >= 2
        change = (o["intake_phq9"][s] - o["final_phq9"][s])[seen]
        return icc_random_intercept(change.astype(float), o["therapist"][s][seen])

    sets = [{"therapist_retention_sd": 0.0}, {"therapist_retention_sd": 0.5}]
    same, spread = pooled(icc_dropout, sets)
    assert spread > same + 0.03, (
        f"a spread of retention skill should raise the between-therapist share of dropout (ICC {fmt([same, spread])})"
    )
    change_same, change_spread = pooled(icc_change, sets)
    assert abs(change_spread - change_same) < 0.02, (
        f"retention skill is separate from outcome skill: the ICC of change should barely move "
        f"({fmt([change_same, change_spread])})"
    )


# ── endings ───────────────────────────────────────────────────────────────────────────────────


def test_good_enough_rate_raises_good_enough_endings():
    low, high = pooled(end_share("good_enough"), [{"good_enough_rate": 0.0}, {"good_enough_rate": 0.8}])
    assert low == 0.0, f"good_enough_rate = 0 should give no good-enough endings (got {low:.4f})"
    assert high > 0.05, f"raising good_enough_rate should raise good-enough endings (got {fmt([low, high])})"


def test_good_enough_rate_lowers_sessions():
    low, high = pooled(mean_of("sessions_attended"), [{"good_enough_rate": 0.0}, {"good_enough_rate": 0.8}])
    assert high < low, f"more good-enough endings should lower sessions attended (got {fmt([low, high])})"


def test_planned_sessions_raise_sessions_attended():
    short, long_ = pooled(mean_of("sessions_attended"), [{"planned_sessions": 8}, {"planned_sessions": 20}])
    assert long_ > short, f"more planned sessions should raise sessions attended (got {fmt([short, long_])})"


def test_planned_sessions_cap_sessions_attended():
    o, _ = run_sets([{"planned_sessions": 6}])
    assert o["sessions_attended"].max() == 6, "no client should attend more than the planned sessions"


# ── follow-up ─────────────────────────────────────────────────────────────────────────────────


def _followup_recovered(o, c, s):
    recovered = o["final_phq9"][s] < CASENESS
    return float(o["followup_phq9"][s][recovered].mean())


def test_relapse_rate_raises_followup_phq9_among_recovered():
    low, high = pooled(_followup_recovered, [{"relapse_rate": 0.1}, {"relapse_rate": 0.8}])
    assert high > low, (
        f"a higher relapse rate should raise follow-up PHQ-9 among the recovered (got {fmt([low, high])})"
    )


def test_relapse_support_buffer_lowers_relapse():
    low, high = pooled(mean_of("relapse"), [{"relapse_support_buffer": 0.0}, {"relapse_support_buffer": 1.0}])
    assert high < low, f"support built in therapy should lower relapse (got {fmt([low, high])})"


def test_social_support_protects_recovered_clients_from_relapse():
    o, c = run_sets([{"relapse_rate": 0.8}], n_clients=8000)
    support = np.broadcast_to(c.clients.support, o["end_type"].shape)[0]
    at_risk = o["final_phq9"][0] < CASENESS
    relapse = o["relapse"][0]
    high = support >= np.median(support)
    supported, unsupported = relapse[at_risk & high].mean(), relapse[at_risk & ~high].mean()
    assert supported < unsupported, (
        f"recovered clients with more social support should relapse less (low {unsupported:.3f}, high {supported:.3f})"
    )


def test_no_followup_means_no_relapse():
    o, _ = run_sets([{"followup_weeks": 0}])
    assert not o["relapse"].any(), "with no follow-up period nobody can relapse"
    assert np.array_equal(o["followup_phq9"], o["final_phq9"]), "with no follow-up, follow-up PHQ-9 is the final one"
