"""The session dynamics: one week of every dyad, written once over arrays.

Every state array is shaped (n_sets, n_clients); parameters are arrays shaped (n_sets,) and random
draws are shaped (n_clients,), so one call advances every parameter set of a batch at once, and a
set gives the same numbers alone or in any batch: each dyad's update reads only its own slot, its
set's parameters and its client's draws. The kernel is compiled with numba (cached on disk): a
scalar loop updates each dyad in one pass instead of building dozens of temporary arrays, which is
what makes sweeps of 10^5 runs take minutes (see docs/performance.md).

Scales: bond, goal agreement, task agreement, disclosure, hope and engagement are on 0-1 (reported
on the WAI-SR, see :func:`wai_sr`); severity is on the PHQ-9 scale (0-27). The order of a week:

1. therapist cancellations and holidays (a dent in the bond, more for anxious clients);
2. attendance (engagement, practical barriers after the therapist's flexibility, the reaction to a
   break); a missed session's chance of being missed is put down to those causes (sim/reasons.py);
3. at an attended session: rupture onset, repair of an earlier rupture, growth of bond, goal and
   task agreement, disclosure and hope (anchored to the client's expectancy); feedback-informed
   renegotiation of goals, repair and motivation for clients flagged at the last session;
4. symptom change: improvement by the session's dose at the client's own rate of response (some
   clients worsen), harmful sessions in weak alliances, life events, natural remission and drift,
   the reversal of an earlier sudden gain; a sudden gain (more likely with disclosure, hope and a
   repaired rupture) that strengthens the bond; the PHQ-9 administered at the session; routine
   outcome monitoring against the expected-recovery curve and the alliance (sim/expected.py);
5. endings: planned completion, a good-enough ending chosen once the client has improved reliably
   and is below caseness, or dropout, whose chance that week is split over its reasons.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from sim import reasons
from sim.dyads import Dyads, State, per_set
from sim.expected import CURVE
from sim.jit import kernel
from sim.reasons import miss_shares_exp, shapley_scratch, shapley_shares_into

# Event flags, one bit each, as stored in the per-week event record.
ATTENDED, MISSED, CANCELLED, HOLIDAY = 1, 2, 4, 8
RUPTURE, REPAIR, LIFE_EVENT, OFF_TRACK = 16, 32, 64, 128
GOOD_ENOUGH, COMPLETED, DROPOUT = 256, 512, 1024
SUDDEN_GAIN, GAIN_REVERSED = 2048, 4096

END_TYPES = ("active", "completed", "good_enough", "dropout")
RUPTURE_CAUSES = ("", "everyday strain", "confrontation", "withdrawal", "cultural misunderstanding", "a break")
DROPOUT_CAUSES = ("", *reasons.REASONS)
"""A dropout's main reason (index into this tuple; 0 for clients who did not drop out)."""
CASENESS = 10  # PHQ-9 >= 10 (NHS Talking Therapies)
# exp(-rate * k) of the expected-recovery curve for k = 0, 1, ... attended sessions, looked up rather
# than computed at every session (an exponential costs more than the rest of a session's update).
# The C library's exp, as in the kernel, not numpy's (which depends on the processor: sim/libm.py).
EXPECTED_DECAY = np.array([math.exp(-CURVE.rate * k) for k in range(64)])
RELIABLE_CHANGE = 6  # PHQ-9 points (NHS Talking Therapies)
EARLY_RESPONSE_SESSION = 4  # early response is read at the fourth session (Beard & Delgadillo 2019)


def wai_sr(bond, goal, task):
    """Working Alliance Inventory, short revised (12 items, 1-5): total on 12-60 from 0-1 parts."""
    return 12.0 + 16.0 * (bond + goal + task)


_wai_sr = kernel()(wai_sr)  # the same formula, callable inside the kernel


class WeekParams(NamedTuple):
    """The parameters the weekly kernel reads, each an array shaped (n_sets,)."""

    planned_break_start: np.ndarray
    planned_break_weeks: np.ndarray
    attendance_base: np.ndarray
    engagement_attendance: np.ndarray
    break_attendance: np.ndarray
    anxious_break_sensitivity: np.ndarray
    rupture_anxiety: np.ndarray
    rupture_avoidance: np.ndarray
    cultural_strain_rupture: np.ndarray
    feedback_repair_boost: np.ndarray
    repair_bonus: np.ndarray
    rupture_stall: np.ndarray
    collaboration_rate: np.ndarray
    feedback_goal_boost: np.ndarray
    feedback_engagement_boost: np.ndarray
    disclosure_rate: np.ndarray
    remoralization_rate: np.ndarray
    remoralization_lift: np.ndarray
    alliance_improvement_weight: np.ndarray
    competence_improvement_weight: np.ndarray
    empathy_improvement_weight: np.ndarray
    hope_improvement_weight: np.ndarray
    disclosure_gate: np.ndarray
    improvement_rate: np.ndarray
    weak_alliance_threshold: np.ndarray
    worsening_rate: np.ndarray
    feedback_adaptation: np.ndarray
    life_event_rate: np.ndarray
    natural_recovery_rate: np.ndarray
    symptom_noise_sd: np.ndarray
    measurement_error_sd: np.ndarray
    progress_hope_weight: np.ndarray
    engagement_rate: np.ndarray
    engagement_dose_weight: np.ndarray
    not_on_track_margin: np.ndarray
    alliance_flag_level: np.ndarray
    not_on_track_from_session: np.ndarray
    rupture_agreement_share: np.ndarray
    break_reaction_decay: np.ndarray
    sudden_gain_rate: np.ndarray
    sudden_gain_size: np.ndarray
    sudden_gain_trigger: np.ndarray
    sudden_gain_bond: np.ndarray
    sudden_gain_reversal: np.ndarray
    good_enough_run: np.ndarray
    planned_sessions: np.ndarray
    last_week: np.ndarray
    good_enough_min_sessions: np.ndarray
    good_enough_rate: np.ndarray
    dropout_base: np.ndarray
    dropout_alliance: np.ndarray
    alliance_reference: np.ndarray
    dropout_rupture: np.ndarray
    dropout_engagement: np.ndarray
    dropout_barriers: np.ndarray
    dropout_missed: np.ndarray
    dropout_breaks: np.ndarray
    dropout_improved: np.ndarray
    early_risk_amplifier: np.ndarray
    early_phase_sessions: np.ndarray

    @classmethod
    def from_stacked(cls, p: dict) -> WeekParams:
        """From stacked parameters (arrays shaped (n_sets, 1))."""
        return per_set(cls, p)


# Columns of the weekly draws, one per kind of decision (see :class:`Draws`).
D_CANCEL, D_ATTEND, D_RUPTURE, D_REPAIR, D_ENDING, D_DROPOUT_DRAW = 0, 1, 2, 3, 4, 5
D_DRIFT, D_MEASUREMENT, D_LIFE, D_GAIN, D_REVERSAL = 6, 7, 8, 9, 10
DRAW_COLUMNS = (
    "cancel",
    "attend",  # logit of the uniform: u < expit(x) exactly when logit(u) < x, without exp
    "rupture",
    "repair",
    "ending",
    "dropout",  # logit of the uniform
    "drift",  # standard normal
    "measurement",  # standard normal
    "life_event",
    "gain",
    "gain_reversal",
)


class Draws(NamedTuple):
    """The random numbers of every week, client by client.

    ``weekly`` is shaped (n_clients, n_weeks, len(DRAW_COLUMNS)): a client's whole course of draws lies
    together in memory, so the kernel reads each dyad's weeks from one contiguous block (the block is
    shared by every parameter set, and stays in cache while the sets run). The number of draws per
    week is fixed whatever the state, so drawing all weeks at once gives the same numbers as drawing
    week by week.
    """

    weekly: np.ndarray


def week(w: int, p: WeekParams, d: Dyads, s: State, r: Draws) -> tuple[np.ndarray, np.ndarray]:
    """Advance every active dyad by one weekly session slot, updating ``s`` in place.

    Args:
        w: the week, from 1.
        p: parameters of every set.
        d: dyad constants.
        s: state, updated in place.
        r: the draws of every week (row ``w - 1`` is used).

    Returns:
        The week's event flags (uint16, bits as ATTENDED, RUPTURE, ...) and the cause of any
        rupture (index into RUPTURE_CAUSES), each shape (n_sets, n_clients).
    """
    events = np.zeros(s.bond.shape, dtype=np.uint16)
    rupture_cause = np.zeros(s.bond.shape, dtype=np.int8)
    _advance(w, w, p, d, s, r, events, rupture_cause, EXPECTED_DECAY)
    return events, rupture_cause


def course(first: int, last: int, p: WeekParams, d: Dyads, s: State, r: Draws) -> None:
    """Advance every dyad through weeks ``first`` to ``last`` (inclusive), updating ``s`` in place.

    Gives exactly the state that calling :func:`week` for each of those weeks gives, faster,
    without the per-week event record.
    """
    events = np.zeros(s.bond.shape, dtype=np.uint16)
    _advance(first, last, p, d, s, r, events, np.zeros(s.bond.shape, dtype=np.int8), EXPECTED_DECAY)


@kernel()
def _clip01(x):
    return min(max(x, 0.0), 1.0)


# fastmath={"nnan"}: the compiler may assume that no value is NaN, which frees its comparisons and
# clamps of NaN's rules (about 13% of the kernel's time) and changes no result: no NaN can arise,
# since the parameters are finite (checked in sim.engine.stack), every division's denominator is kept
# away from zero, and the draws are finite or -inf (the log-odds of a uniform 0). The flags that
# would change results (contracting into FMA, reassociating, reciprocals) stay off;
# tests/test_fastmath.py compares with a build without the flag, bit for bit.
@kernel(error_model="numpy", fastmath={"nnan"})
def _advance(first, last, p, d, s, r, events, rupture_cause, expected_decay):  # noqa: C901, PLR0915 (one pass over a dyad's weeks, in order)
    """Weeks ``first`` to ``last`` of every dyad, in place; events of the last week simulated.

    Each dyad runs through all its weeks before the next one starts, its state held in local
    variables (registers) and written back once: the arrays could alias for all the compiler knows,
    so reading and writing them in every week would cost memory traffic the body does not need.
    The whole week is one loop body: a call per dyad-week would cost more than the body itself.
    """
    n_sets, n_clients = s.bond.shape
    terms = np.empty(len(reasons.HAZARD_TERMS))
    term_shares = np.empty(len(reasons.HAZARD_TERMS))
    scratch = shapley_scratch(len(reasons.HAZARD_TERMS))  # allocated once, not at every dropout
    for k in range(n_sets):
        # The set's parameters the loops read, loaded once: the compiler cannot keep array reads out of the
        # inner loops itself (the arrays could alias those the loop writes).
        alliance_flag_level_k = p.alliance_flag_level[k]
        alliance_reference_k = p.alliance_reference[k]
        anxious_break_sensitivity_k = p.anxious_break_sensitivity[k]
        break_attendance_k = p.break_attendance[k]
        collaboration_rate_k = p.collaboration_rate[k]
        cultural_strain_rupture_k = p.cultural_strain_rupture[k]
        disclosure_gate_k = p.disclosure_gate[k]
        disclosure_rate_k = p.disclosure_rate[k]
        dropout_alliance_k = p.dropout_alliance[k]
        dropout_barriers_k = p.dropout_barriers[k]
        dropout_base_k = p.dropout_base[k]
        dropout_breaks_k = p.dropout_breaks[k]
        dropout_engagement_k = p.dropout_engagement[k]
        dropout_improved_k = p.dropout_improved[k]
        dropout_missed_k = p.dropout_missed[k]
        dropout_rupture_k = p.dropout_rupture[k]
        early_phase_sessions_k = p.early_phase_sessions[k]
        early_risk_amplifier_k = p.early_risk_amplifier[k]
        engagement_attendance_k = p.engagement_attendance[k]
        engagement_rate_k = p.engagement_rate[k]
        feedback_adaptation_k = p.feedback_adaptation[k]
        feedback_engagement_boost_k = p.feedback_engagement_boost[k]
        feedback_goal_boost_k = p.feedback_goal_boost[k]
        feedback_repair_boost_k = p.feedback_repair_boost[k]
        good_enough_min_sessions_k = p.good_enough_min_sessions[k]
        good_enough_rate_k = p.good_enough_rate[k]
        improvement_rate_k = p.improvement_rate[k]
        last_week_k = p.last_week[k]
        life_event_rate_k = p.life_event_rate[k]
        measurement_error_sd_k = p.measurement_error_sd[k]
        natural_recovery_rate_k = p.natural_recovery_rate[k]
        not_on_track_margin_k = p.not_on_track_margin[k]
        planned_sessions_k = p.planned_sessions[k]
        progress_hope_weight_k = p.progress_hope_weight[k]
        remoralization_rate_k = p.remoralization_rate[k]
        rupture_anxiety_k = p.rupture_anxiety[k]
        rupture_avoidance_k = p.rupture_avoidance[k]
        rupture_stall_k = p.rupture_stall[k]
        sudden_gain_bond_k = p.sudden_gain_bond[k]
        sudden_gain_rate_k = p.sudden_gain_rate[k]
        sudden_gain_reversal_k = p.sudden_gain_reversal[k]
        sudden_gain_size_k = p.sudden_gain_size[k]
        sudden_gain_trigger_k = p.sudden_gain_trigger[k]
        symptom_noise_sd_k = p.symptom_noise_sd[k]
        worsening_rate_k = p.worsening_rate[k]
        start, wat = p.planned_break_start[k], p.weak_alliance_threshold[k]
        w_a, w_c = p.alliance_improvement_weight[k], p.competence_improvement_weight[k]
        w_h, w_e = p.hope_improvement_weight[k], p.engagement_dose_weight[k]
        share, decay = p.rupture_agreement_share[k], p.break_reaction_decay[k]
        flag_from, good_run = p.not_on_track_from_session[k], p.good_enough_run[k]
        w_p = p.empathy_improvement_weight[k]
        w_sum, wat_eps = w_a + w_c + w_h + w_p + 1e-12, wat + 1e-12
        break_end, bonus = start + p.planned_break_weeks[k], 1.0 + p.repair_bonus[k]
        attend_base, lift = p.attendance_base[k], p.remoralization_lift[k]
        attend_odds = np.exp(attend_base)
        for i in range(n_clients):
            if not s.active[k, i] or first > last:
                continue
            # The dyad's constants and state, loaded once.
            avoidance_i = d.avoidance[k, i]
            bond_speed_i = d.bond_speed[k, i]
            bond_target_i = d.bond_target[k, i]
            break_dent_i = d.break_dent[k, i]
            goal_target_i = d.goal_target[k, i]
            readiness_i = d.readiness[k, i]
            repair_chance_i = d.repair_chance[k, i]
            repair_open_i = d.repair_open[k, i]
            rupture_drop_i = d.rupture_drop[k, i]
            rupture_static_i = d.rupture_static[k, i]
            shock_i = d.shock[k, i]
            task_target_i = d.task_target[k, i]
            trust_i = d.trust[k, i]
            anxiety, strain, rupture_scale = d.anxiety[k, i], d.strain[k, i], d.rupture_scale[k, i]
            uses_feedback, cancel_risk, barrier_attend = (
                d.uses_feedback[k, i],
                d.cancel_risk[k, i],
                d.barrier_attend[k, i],
            )
            break_base = anxious_break_sensitivity_k * rupture_scale * anxiety
            barrier_exp = np.exp(-barrier_attend)
            fixed_dose = w_c * d.competence[k, i] + w_p * d.perceived_empathy[k, i]  # what the therapist brings
            intake, expectancy, hold = d.intake[k, i], d.expectancy[k, i], d.hold[k, i]
            responsiveness, asymptote = d.responsiveness[k, i], d.expected_asymptote[k, i]
            barriers_risk = dropout_barriers_k * d.barriers[k, i]
            break_dropout = dropout_breaks_k * (1.0 + anxious_break_sensitivity_k * anxiety)
            bond, goal, task = s.bond[k, i], s.goal[k, i], s.task[k, i]
            disclosure, hope, engagement = s.disclosure[k, i], s.hope[k, i], s.engagement[k, i]
            severity, phq9 = s.severity[k, i], s.phq9[k, i]
            active, attended_n = True, s.attended[k, i]
            end_type, end_week, dropout_cause = s.end_type[k, i], s.end_week[k, i], s.dropout_cause[k, i]
            pending, pending_drop = s.pending[k, i], s.pending_drop[k, i]
            ruptures, repairs = s.ruptures[k, i], s.repairs[k, i]
            missed_run, well_run, abandonment = s.missed_run[k, i], s.well_run[k, i], s.abandonment[k, i]
            off_track, ever_off_track = s.off_track[k, i], s.ever_off_track[k, i]
            early_alliance, early_goal, alliance_sum = s.early_alliance[k, i], s.early_goal[k, i], s.alliance_sum[k, i]
            early_phq9 = s.early_phq9[k, i]
            gain_pending, gains, reversals = s.gain_pending[k, i], s.gains[k, i], s.reversals[k, i]
            c0, c1, c2, c3 = (
                s.miss_credit[k, i, 0],
                s.miss_credit[k, i, 1],
                s.miss_credit[k, i, 2],
                s.miss_credit[k, i, 3],
            )
            ev, cause = 0, 0
            rw = r.weekly[i]  # this client's draws, (n_weeks, columns)
            for w in range(first, last + 1):
                if not active:
                    break
                t = w - 1  # row of this week's draws
                holiday = start > 0 and start <= w < break_end
                ev, cause = 0, 0

                # 1-2. Cancellations and holidays dent trust; attendance follows engagement, barriers and
                # the reaction to a break. A missed session's chance is split over what lowered it.
                cancelled = holiday or rw[t, D_CANCEL] < cancel_risk
                attended = False
                missed = False
                if not cancelled:
                    disengaged = engagement_attendance_k * (1.0 - engagement)
                    broken = break_attendance_k * abandonment
                    attended = rw[t, D_ATTEND] < attend_base - barrier_attend - disengaged - broken
                    missed = not attended
                    if missed:
                        # exp(-0) is 1 exactly: the exponentials are skipped where a term is absent or constant
                        e2 = np.exp(-broken) if broken != 0.0 else 1.0
                        m0, m1, m2, m3 = miss_shares_exp(attend_odds, barrier_exp, np.exp(-disengaged), e2)
                        c0, c1, c2, c3 = c0 + m0, c1 + m1, c2 + m2, c3 + m3
                flagged = attended and uses_feedback and off_track
                if cancelled:
                    bond = max(bond - break_dent_i, 0.0)
                    abandonment += 1.0
                    ev |= HOLIDAY if holiday else CANCELLED

                # 3. Ruptures (risk rises after cancelled weeks, the more of them the more, for anxious
                # clients) and repair of an earlier one; a repair restores the bond, can leave it stronger.
                break_risk = break_base * abandonment
                rupture = attended and not pending and rw[t, D_RUPTURE] < rupture_static_i + break_risk
                repaired = False
                if attended and pending:
                    p_repair = repair_open_i + feedback_repair_boost_k if flagged else repair_chance_i
                    repaired = rw[t, D_REPAIR] < p_repair
                drop = rupture_drop_i if rupture else 0.0
                regain = pending_drop * bonus if repaired else 0.0
                if rupture:
                    pending_drop = drop
                    pending = True
                    ruptures += 1
                    cause = _rupture_cause(
                        rupture_anxiety_k * anxiety,
                        rupture_avoidance_k * avoidance_i,
                        cultural_strain_rupture_k * strain,
                        break_risk / (rupture_scale + 1e-12),
                    )
                    ev |= RUPTURE
                if repaired:
                    pending = False
                    repairs += 1
                    ev |= REPAIR
                if attended:
                    abandonment *= decay  # the reaction fades over the sessions after a break

                # The bond grows toward its target only while no rupture is unrepaired, and not at the
                # session spent on a repair (the repair itself is that session's gain); goals and tasks
                # converge through shared goal setting; feedback renegotiates a flagged client's goals
                # and addresses motivation.
                if attended:
                    if not pending and not repaired:
                        bond += bond_speed_i * (bond_target_i - bond)
                    collab = collaboration_rate_k
                    goal += collab * (goal_target_i - goal)
                    task += collab * (task_target_i - task)
                bond = _clip01(bond - drop + regain)
                # Goal and task agreement dip with the bond but recover through collaboration alone:
                # a repair mends the bond, frozen while the rupture is open.
                goal = goal - share * drop
                if flagged:
                    goal += feedback_goal_boost_k * (1.0 - goal)
                    engagement += feedback_engagement_boost_k * (1.0 - engagement)
                    ev |= OFF_TRACK
                goal = _clip01(goal)
                task = _clip01(task - share * drop)
                alliance = (bond + goal + task) / 3.0
                if attended:
                    disclosure += disclosure_rate_k * (bond * trust_i - disclosure)
                    # Hope is anchored to the client's expectancy: the bond lifts it part of the way
                    # to full hope, so clients who came with little hope keep less of it.
                    hope_target = expectancy + lift * bond * (1.0 - expectancy)
                    hope += remoralization_rate_k * (hope_target - hope)

                # 4. Symptoms: negatively accelerated improvement by the session's dose at the client's
                # own rate of response, gated by disclosure; harmful sessions in weak alliances; life
                # events; remission and drift; an earlier sudden gain may be lost again.
                change = -natural_recovery_rate_k * severity
                adapted = 1.0 - feedback_adaptation_k if flagged else 1.0
                if attended:
                    dose = (w_a * alliance + fixed_dose + w_h * hope) / w_sum
                    gate = 1.0 - disclosure_gate_k * (1.0 - disclosure)
                    engaged = 1.0 - w_e + w_e * engagement
                    # A negative responder worsens with the work of therapy; feedback changes course.
                    response = responsiveness if responsiveness >= 0.0 else responsiveness * adapted
                    stalled = 1.0 - rupture_stall_k * pending  # an open rupture stalls the work
                    change -= improvement_rate_k * response * dose * gate * engaged * stalled * severity
                    weakness = max(0.0, wat - alliance) / wat_eps
                    change += worsening_rate_k * weakness * adapted
                if rw[t, D_LIFE] < life_event_rate_k:
                    change += shock_i
                    ev |= LIFE_EVENT
                if gain_pending > 0.0 and rw[t, D_REVERSAL] < sudden_gain_reversal_k:
                    change += gain_pending
                    gain_pending = 0.0
                    reversals += 1
                    ev |= GAIN_REVERSED
                severity = min(max(severity + change + symptom_noise_sd_k * rw[t, D_DRIFT], 0.0), 27.0)
                # A sudden gain: change at once, likelier when the client discloses and hopes, and
                # after a repaired rupture; the alliance strengthens after it.
                if attended:
                    turning = 1.0 + sudden_gain_trigger_k * repaired
                    p_gain = sudden_gain_rate_k * disclosure * hope * turning
                    if rw[t, D_GAIN] < p_gain:
                        gained = sudden_gain_size_k * severity
                        severity -= gained
                        gain_pending = gained
                        gains += 1
                        bond += sudden_gain_bond_k * (1.0 - bond)
                        ev |= SUDDEN_GAIN

                # The PHQ-9 given at the session; felt progress feeds hope, both feed engagement.
                if attended:
                    ev |= ATTENDED
                    score = min(max(np.rint(severity + measurement_error_sd_k * rw[t, D_MEASUREMENT]), 0.0), 27.0)
                    hope = _clip01(hope + progress_hope_weight_k * (phq9 - score))
                    phq9 = score
                    attended_n += 1
                    target = (hope + alliance + readiness_i) / 3.0
                    engagement += engagement_rate_k * (target - engagement)
                    wai = _wai_sr(bond, goal, task)
                    if attended_n <= 3:
                        early_alliance += wai
                        early_goal += goal
                    alliance_sum += wai
                    if attended_n == EARLY_RESPONSE_SESSION:
                        early_phq9 = score
                    # Routine outcome monitoring: not on track when the score lies the margin above the
                    # expected-recovery curve for this intake, or the alliance is weak. Every client is
                    # classified; only feedback-using therapists act on it (at the next session).
                    fading = expected_decay[min(attended_n, expected_decay.shape[0] - 1)]  # exp(-rate * sessions)
                    expected = intake * (asymptote + (1.0 - asymptote) * fading)
                    lagging = score - expected >= not_on_track_margin_k
                    off_track = attended_n >= flag_from and (lagging or alliance < alliance_flag_level_k)
                    ever_off_track |= off_track
                    missed_run = 0
                    c0, c1, c2, c3 = 0.0, 0.0, 0.0, 0.0
                    well = score < CASENESS and intake - score >= RELIABLE_CHANGE
                    well_run = well_run + 1 if well else 0
                elif missed:
                    missed_run += 1
                    ev |= MISSED

                # 5. Endings: the planned sessions or the course window completed, a good-enough
                # ending the client chooses once improved reliably and below caseness, or a dropout.
                end = 0
                if attended_n >= planned_sessions_k or w >= last_week_k:
                    end = 1
                    ev |= COMPLETED
                elif (
                    attended
                    and well_run >= good_run
                    and attended_n >= good_enough_min_sessions_k
                    and rw[t, D_ENDING] < good_enough_rate_k
                ):
                    end = 2
                    ev |= GOOD_ENOUGH
                else:
                    # Every term is a risk that is zero when absent; the therapist's retention skill
                    # removes part of each, and each weighs more before the early phase is over.
                    # (Scalars, not an array, so the compiler keeps them in registers; the array is
                    # filled only when the client leaves.)
                    scale = hold * (1.0 + early_risk_amplifier_k * (attended_n < early_phase_sessions_k))
                    felt = max(0.0, intake - phq9) / max(intake, 1.0)
                    t_alliance = dropout_alliance_k * max(0.0, alliance_reference_k - alliance) * scale
                    t_rupture = dropout_rupture_k * pending * scale
                    t_engagement = dropout_engagement_k * (1.0 - engagement) * scale
                    t_barriers = barriers_risk * scale
                    t_missed = dropout_missed_k * missed_run * scale
                    t_improved = dropout_improved_k * felt * scale
                    t_breaks = break_dropout * abandonment * scale
                    logit = dropout_base_k + (
                        t_alliance + t_rupture + t_engagement + t_barriers + t_missed + t_improved + t_breaks
                    )
                    if rw[t, D_DROPOUT_DRAW] < logit:
                        end = 3
                        ev |= DROPOUT
                        terms[0], terms[1], terms[2], terms[3] = t_alliance, t_rupture, t_engagement, t_barriers
                        terms[4], terms[5], terms[6] = t_missed, t_improved, t_breaks
                        shares = s.reason_shares[k, i]
                        dropout_cause = _attribute(dropout_base_k, terms, term_shares, scratch, c0, c1, c2, c3, shares)
                if end:
                    end_type, end_week, active = end, w, False

            # The state, written back once.
            s.bond[k, i], s.goal[k, i], s.task[k, i] = bond, goal, task
            s.disclosure[k, i], s.hope[k, i], s.engagement[k, i] = disclosure, hope, engagement
            s.severity[k, i], s.phq9[k, i] = severity, phq9
            s.active[k, i], s.attended[k, i] = active, attended_n
            s.end_type[k, i], s.end_week[k, i], s.dropout_cause[k, i] = end_type, end_week, dropout_cause
            s.pending[k, i], s.pending_drop[k, i] = pending, pending_drop
            s.ruptures[k, i], s.repairs[k, i] = ruptures, repairs
            s.missed_run[k, i], s.well_run[k, i], s.abandonment[k, i] = missed_run, well_run, abandonment
            s.off_track[k, i], s.ever_off_track[k, i] = off_track, ever_off_track
            s.early_alliance[k, i], s.early_goal[k, i], s.alliance_sum[k, i] = early_alliance, early_goal, alliance_sum
            s.early_phq9[k, i] = early_phq9
            s.gain_pending[k, i], s.gains[k, i], s.reversals[k, i] = gain_pending, gains, reversals
            s.miss_credit[k, i, 0], s.miss_credit[k, i, 1], s.miss_credit[k, i, 2], s.miss_credit[k, i, 3] = (
                c0,
                c1,
                c2,
                c3,
            )
            events[k, i] = ev
            rupture_cause[k, i] = cause


@kernel()
def _attribute(base, terms, term_shares, scratch, c0, c1, c2, c3, out):
    """Split a dropout's chance of leaving over its reasons; returns the main reason (DROPOUT_CAUSES).

    ``out`` (shape (n_reasons,)) receives each reason's share of the week's chance of leaving: the
    Shapley share of every hazard term, the missed sessions' share split by why they were missed
    (``c0..c3``, the run's accumulated shares in the order of reasons.MISS_CAUSES), and the
    background share put down to life circumstances. The shares sum to one. ``scratch``: working
    memory from :func:`sim.reasons.shapley_scratch` for the hazard terms.
    """
    present, work, members = scratch
    background = shapley_shares_into(base, terms, term_shares, present, work, members)
    out[:] = 0.0
    out[reasons.LIFE] += background
    for j in range(terms.shape[0]):
        if j != reasons.MISSED_TERM:
            out[reasons.TERM_REASON[j]] += term_shares[j]
    missed = term_shares[reasons.MISSED_TERM]
    credit = c0 + c1 + c2 + c3
    if missed > 0.0 and credit > 0.0:
        out[reasons.PRACTICAL_BARRIERS] += missed * c0 / credit
        out[reasons.LOW_ENGAGEMENT] += missed * c1 / credit
        out[reasons.THERAPY_BREAKS] += missed * c2 / credit
        out[reasons.LIFE] += missed * c3 / credit
    best = 0
    for j in range(out.shape[0]):
        if out[j] > out[best]:
            best = j
    return best + 1


@kernel()
def _rupture_cause(anxiety, avoidance, culture, abandonment):
    """What a rupture is attributed to (index into RUPTURE_CAUSES), from its relative risks.

    The relative risk a factor adds to the base risk (1) names the rupture when it is the largest
    and at least half the base; otherwise the rupture is everyday strain.
    """
    best, cause = 0.5, 1
    added = (anxiety, avoidance, culture, abandonment)
    for j in range(4):
        if added[j] >= best:
            best, cause = added[j], j + 2
    return cause
