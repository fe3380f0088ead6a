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
2. attendance (engagement and practical barriers);
3. at an attended session: rupture onset, repair of an earlier rupture, growth of bond, goal and
   task agreement, disclosure and hope, feedback-informed renegotiation for flagged clients;
4. symptom change: improvement by the session's dose, worsening in weak alliances, life events,
   natural remission and drift; the PHQ-9 administered at the session;
5. endings: planned completion, a good-enough ending, or dropout with its dominant cause.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from sim.dyads import Dyads, State

# Event flags, one bit each, as stored in the per-week event record.
ATTENDED, MISSED, CANCELLED, HOLIDAY = 1, 2, 4, 8
RUPTURE, REPAIR, LIFE_EVENT, OFF_TRACK = 16, 32, 64, 128
GOOD_ENOUGH, COMPLETED, DROPOUT = 256, 512, 1024

END_TYPES = ("active", "completed", "good_enough", "dropout")
RUPTURE_CAUSES = ("", "everyday strain", "confrontation", "withdrawal", "cultural misunderstanding", "a break")
DROPOUT_CAUSES = (
    "",
    "weak_alliance",
    "unrepaired_rupture",
    "low_engagement",
    "practical_barriers",
    "early_disengagement",
    "stopped_attending",
    "felt_better",
    "background",
)
# A risk factor names a dropout when its term is the largest and raises the odds by at least half;
# below that no factor stands out and the dropout is put down to the background rate of leaving.
CAUSE_MIN_LOG_ODDS = float(np.log(1.5))
CASENESS = 10  # PHQ-9 >= 10 (NHS Talking Therapies)


def wai_sr(bond, goal, task):
    """Working Alliance Inventory, short revised (12 items, 1-5): total on 12-60 from 0-1 parts."""
    return 12.0 + 16.0 * (bond + goal + task)


_wai_sr = njit(cache=True)(wai_sr)  # the same formula, callable inside the kernel


class WeekParams(NamedTuple):
    """The parameters the weekly kernel reads, each an array shaped (n_sets,)."""

    planned_break_start: np.ndarray
    planned_break_weeks: np.ndarray
    engagement_attendance: np.ndarray
    anxious_break_sensitivity: np.ndarray
    rupture_anxiety: np.ndarray
    rupture_avoidance: np.ndarray
    cultural_strain_rupture: np.ndarray
    feedback_repair_boost: np.ndarray
    repair_bonus: np.ndarray
    collaboration_rate: np.ndarray
    feedback_goal_boost: np.ndarray
    disclosure_rate: np.ndarray
    remoralization_rate: np.ndarray
    alliance_improvement_weight: np.ndarray
    competence_improvement_weight: np.ndarray
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
    not_on_track_worsening: np.ndarray
    not_on_track_from_session: np.ndarray
    rupture_agreement_share: np.ndarray
    break_reaction_decay: np.ndarray
    good_enough_run: np.ndarray
    early_phase_weeks: np.ndarray
    planned_sessions: np.ndarray
    last_week: np.ndarray
    good_enough_min_sessions: np.ndarray
    good_enough_rate: np.ndarray
    dropout_base: np.ndarray
    dropout_alliance: np.ndarray
    dropout_rupture: np.ndarray
    dropout_engagement: np.ndarray
    dropout_barriers: np.ndarray
    dropout_early: np.ndarray
    dropout_missed: np.ndarray
    dropout_improved: np.ndarray

    @classmethod
    def from_stacked(cls, p: dict) -> WeekParams:
        """From stacked parameters (arrays shaped (n_sets, 1))."""
        return cls(**{k: np.ascontiguousarray(np.asarray(p[k], dtype=float).ravel()) for k in cls._fields})


class Draws(NamedTuple):
    """The random numbers of every week; each field shape (n_weeks, n_clients).

    The number of draws per week is fixed whatever the state, so drawing all weeks at once gives
    the same numbers as drawing week by week.
    """

    cancel: np.ndarray
    attend: np.ndarray
    rupture: np.ndarray
    repair: np.ndarray
    ending: np.ndarray
    dropout: np.ndarray
    drift: np.ndarray  # standard normal
    measurement: np.ndarray  # standard normal
    life_event: np.ndarray
    attend_logit: np.ndarray  # logit of ``attend``: u < expit(x) exactly when logit(u) < x, without exp
    dropout_logit: np.ndarray  # logit of ``dropout``


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
    _advance(w, w, p, d, s, r, events, rupture_cause)
    return events, rupture_cause


def course(first: int, last: int, p: WeekParams, d: Dyads, s: State, r: Draws) -> None:
    """Advance every dyad through weeks ``first`` to ``last`` (inclusive), updating ``s`` in place.

    Gives exactly the state that calling :func:`week` for each of those weeks gives, faster,
    without the per-week event record.
    """
    events = np.zeros(s.bond.shape, dtype=np.uint16)
    _advance(first, last, p, d, s, r, events, np.zeros(s.bond.shape, dtype=np.int8))


@njit(cache=True)
def _clip01(x):
    return min(max(x, 0.0), 1.0)


@njit(cache=True)
def _advance(first, last, p, d, s, r, events, rupture_cause):  # noqa: C901, PLR0915 (one pass over a dyad's weeks, in order)
    """Weeks ``first`` to ``last`` of every dyad, in place; events of the last week simulated.

    Each dyad runs through all its weeks before the next one starts, its state held in local
    variables (registers) and written back once: the arrays could alias for all the compiler knows,
    so reading and writing them in every week would cost memory traffic the body does not need.
    The whole week is one loop body: a call per dyad-week would cost more than the body itself.
    """
    n_sets, n_clients = s.bond.shape
    for k in range(n_sets):
        start, wat = p.planned_break_start[k], p.weak_alliance_threshold[k]
        w_a, w_c = p.alliance_improvement_weight[k], p.competence_improvement_weight[k]
        w_h, w_e = p.hope_improvement_weight[k], p.engagement_dose_weight[k]
        share, decay = p.rupture_agreement_share[k], p.break_reaction_decay[k]
        flag_from, good_run, early_weeks = p.not_on_track_from_session[k], p.good_enough_run[k], p.early_phase_weeks[k]
        w_sum, wat_eps = w_a + w_c + w_h + 1e-12, wat + 1e-12
        break_end, bonus = start + p.planned_break_weeks[k], 1.0 + p.repair_bonus[k]
        for i in range(n_clients):
            if not s.active[k, i] or first > last:
                continue
            # The dyad's constants and state, loaded once.
            anxiety, strain, rupture_scale = d.anxiety[k, i], d.strain[k, i], d.rupture_scale[k, i]
            uses_feedback, cancel_risk, attend_logit = d.uses_feedback[k, i], d.cancel_risk[k, i], d.attend_logit[k, i]
            break_base = p.anxious_break_sensitivity[k] * rupture_scale * anxiety
            competence_dose = w_c * d.competence[k, i]
            barriers_risk = p.dropout_barriers[k] * d.barriers[k, i]
            bond, goal, task = s.bond[k, i], s.goal[k, i], s.task[k, i]
            disclosure, hope, engagement = s.disclosure[k, i], s.hope[k, i], s.engagement[k, i]
            severity, phq9 = s.severity[k, i], s.phq9[k, i]
            active, attended_n = True, s.attended[k, i]
            end_type, end_week, dropout_cause = s.end_type[k, i], s.end_week[k, i], s.dropout_cause[k, i]
            pending, pending_drop = s.pending[k, i], s.pending_drop[k, i]
            ruptures, repairs = s.ruptures[k, i], s.repairs[k, i]
            missed_run, below_run, abandonment = s.missed_run[k, i], s.below_run[k, i], s.abandonment[k, i]
            off_track, ever_off_track = s.off_track[k, i], s.ever_off_track[k, i]
            early_alliance, early_goal, alliance_sum = s.early_alliance[k, i], s.early_goal[k, i], s.alliance_sum[k, i]
            ev, cause = 0, 0
            for w in range(first, last + 1):
                if not active:
                    break
                t = w - 1  # row of this week's draws
                holiday = start > 0 and start <= w < break_end
                ev, cause = 0, 0

                # 1-2. Cancellations and holidays dent trust; attendance follows engagement and barriers.
                cancelled = holiday or r.cancel[t, i] < cancel_risk
                attended = False
                missed = False
                if not cancelled:
                    attended = r.attend_logit[t, i] < attend_logit - p.engagement_attendance[k] * (1.0 - engagement)
                    missed = not attended
                flagged = attended and uses_feedback and off_track
                if cancelled:
                    bond = max(bond - d.break_dent[k, i], 0.0)
                    abandonment += 1.0
                    ev |= HOLIDAY if holiday else CANCELLED

                # 3. Ruptures (risk rises after cancelled weeks, the more of them the more, for anxious
                # clients) and repair of an earlier one; a repair restores the bond, can leave it stronger.
                break_risk = break_base * abandonment
                rupture = attended and not pending and r.rupture[t, i] < d.rupture_static[k, i] + break_risk
                repaired = False
                if attended and pending:
                    p_repair = d.repair_open[k, i] + p.feedback_repair_boost[k] if flagged else d.repair_chance[k, i]
                    repaired = r.repair[t, i] < p_repair
                drop = d.rupture_drop[k, i] if rupture else 0.0
                regain = pending_drop * bonus if repaired else 0.0
                if rupture:
                    pending_drop = drop
                    pending = True
                    ruptures += 1
                    cause = _rupture_cause(
                        p.rupture_anxiety[k] * anxiety,
                        p.rupture_avoidance[k] * d.avoidance[k, i],
                        p.cultural_strain_rupture[k] * strain,
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
                # converge through shared goal setting; feedback renegotiates a flagged client's goals.
                if attended:
                    if not pending and not repaired:
                        bond += d.bond_speed[k, i] * (d.bond_target[k, i] - bond)
                    collab = p.collaboration_rate[k]
                    goal += collab * (d.goal_target[k, i] - goal)
                    task += collab * (d.task_target[k, i] - task)
                bond = _clip01(bond - drop + regain)
                # Goal and task agreement dip with the bond but recover through collaboration alone:
                # a repair mends the bond, frozen while the rupture is open.
                goal = goal - share * drop
                if flagged:
                    goal += p.feedback_goal_boost[k] * (1.0 - goal)
                    ev |= OFF_TRACK
                goal = _clip01(goal)
                task = _clip01(task - share * drop)
                alliance = (bond + goal + task) / 3.0
                if attended:
                    disclosure += p.disclosure_rate[k] * (bond * d.trust[k, i] - disclosure)
                    hope += p.remoralization_rate[k] * bond * (1.0 - hope)

                # 4. Symptoms: negatively accelerated improvement by the session's dose, gated by
                # disclosure; weak alliances can make things worse; life events; remission and drift.
                change = -p.natural_recovery_rate[k] * severity
                if attended:
                    dose = (w_a * alliance + competence_dose + w_h * hope) / w_sum
                    gate = 1.0 - p.disclosure_gate[k] * (1.0 - disclosure)
                    engaged = 1.0 - w_e + w_e * engagement
                    change -= p.improvement_rate[k] * dose * gate * engaged * severity
                    weakness = max(0.0, wat - alliance) / wat_eps
                    adapted = 1.0 - p.feedback_adaptation[k] if flagged else 1.0
                    change += p.worsening_rate[k] * weakness * adapted
                if r.life_event[t, i] < p.life_event_rate[k]:
                    change += d.shock[k, i]
                    ev |= LIFE_EVENT
                severity = min(max(severity + change + p.symptom_noise_sd[k] * r.drift[t, i], 0.0), 27.0)

                # The PHQ-9 given at the session; felt progress feeds hope, both feed engagement.
                if attended:
                    ev |= ATTENDED
                    score = min(max(np.rint(severity + p.measurement_error_sd[k] * r.measurement[t, i]), 0.0), 27.0)
                    hope = _clip01(hope + p.progress_hope_weight[k] * (phq9 - score))
                    phq9 = score
                    attended_n += 1
                    target = (hope + alliance + d.readiness[k, i]) / 3.0
                    engagement += p.engagement_rate[k] * (target - engagement)
                    wai = _wai_sr(bond, goal, task)
                    if attended_n <= 3:
                        early_alliance += wai
                        early_goal += goal
                    alliance_sum += wai
                    # Routine outcome monitoring: not on track when the score has risen by the
                    # flagging threshold since intake. Every client is classified; only
                    # feedback-using therapists act on it (at the next session).
                    lagging = score - d.intake[k, i] >= p.not_on_track_worsening[k]
                    off_track = attended_n >= flag_from and lagging
                    ever_off_track |= off_track
                    missed_run = 0
                    below_run = below_run + 1 if score < CASENESS else 0
                elif missed:
                    missed_run += 1
                    ev |= MISSED

                # 5. Endings: the planned sessions or the course window completed, a good-enough
                # ending, or a dropout hazard whose largest term is recorded as the cause.
                end = 0
                if attended_n >= p.planned_sessions[k] or w >= p.last_week[k]:
                    end = 1
                    ev |= COMPLETED
                elif (
                    attended
                    and below_run >= good_run
                    and attended_n >= p.good_enough_min_sessions[k]
                    and r.ending[t, i] < p.good_enough_rate[k]
                ):
                    end = 2
                    ev |= GOOD_ENOUGH
                else:
                    terms = (
                        p.dropout_alliance[k] * (wat - alliance),
                        p.dropout_rupture[k] * pending,
                        p.dropout_engagement[k] * (0.5 - engagement),
                        barriers_risk,
                        p.dropout_early[k] * (w <= early_weeks),
                        p.dropout_missed[k] * missed_run,
                        p.dropout_improved[k] * (phq9 < CASENESS),
                    )
                    hazard_cause, logit = _dropout_hazard(p.dropout_base[k], terms)
                    if r.dropout_logit[t, i] < logit:
                        end = 3
                        dropout_cause = hazard_cause
                        ev |= DROPOUT
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
            s.missed_run[k, i], s.below_run[k, i], s.abandonment[k, i] = missed_run, below_run, abandonment
            s.off_track[k, i], s.ever_off_track[k, i] = off_track, ever_off_track
            s.early_alliance[k, i], s.early_goal[k, i], s.alliance_sum[k, i] = early_alliance, early_goal, alliance_sum
            events[k, i] = ev
            rupture_cause[k, i] = cause


@njit(cache=True)
def _dropout_hazard(base, terms):
    """Dropout log-odds and its dominant cause (index into DROPOUT_CAUSES).

    The terms, in the order of DROPOUT_CAUSES[1:-1], are log-odds added to ``base``. Alliance counts
    from the weak-alliance threshold and engagement from the midpoint of its scale: below them they
    add risk, above them they protect. Every other term is zero when its risk factor is absent. The
    largest term names the dominant cause if it raises the odds by at least half
    (:data:`CAUSE_MIN_LOG_ODDS`); otherwise no factor stands out and the cause is "background".
    """
    total, best, cause = base, CAUSE_MIN_LOG_ODDS, len(terms) + 1
    for j in range(len(terms)):
        total += terms[j]
        if terms[j] >= best:
            best, cause = terms[j], j + 1
    return cause, total


@njit(cache=True)
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
