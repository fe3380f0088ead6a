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
)
CASENESS = 10  # PHQ-9 >= 10 (NHS Talking Therapies)
EARLY_WEEKS = 3  # "early phase" of the dropout hazard


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
    not_on_track_worsening: np.ndarray
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
def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


@njit(cache=True)
def _clip01(x):
    return min(max(x, 0.0), 1.0)


@njit(cache=True)
def _advance(first, last, p, d, s, r, events, rupture_cause):  # noqa: C901 (one pass over a dyad's week, in order)
    """Weeks ``first`` to ``last`` of every dyad, in place; events of the last week simulated.

    Each dyad runs through all its weeks before the next one starts, so its state stays in cache.
    The whole week is one loop body: a call per dyad-week would cost more than the body itself.
    """
    n_sets, n_clients = s.bond.shape
    for k in range(n_sets):
        start, wat = p.planned_break_start[k], p.weak_alliance_threshold[k]
        for i in range(n_clients):
            for w in range(first, last + 1):
                if not s.active[k, i]:
                    break
                t = w - 1  # row of this week's draws
                holiday = start > 0 and start <= w < start + p.planned_break_weeks[k]
                ev, cause = 0, 0

                # 1-2. Cancellations and holidays dent trust; attendance follows engagement and barriers.
                cancelled = holiday or r.cancel[t, i] < d.cancel_risk[k, i]
                attended = False
                missed = False
                if not cancelled:
                    p_attend = _expit(d.attend_logit[k, i] - p.engagement_attendance[k] * (1.0 - s.engagement[k, i]))
                    attended = r.attend[t, i] < p_attend
                    missed = not attended
                flagged = attended and d.uses_feedback[k, i] and s.off_track[k, i]
                bond, goal, task = s.bond[k, i], s.goal[k, i], s.task[k, i]
                if cancelled:
                    bond = max(bond - d.break_dent[k, i], 0.0)
                    s.abandonment[k, i] += 1.0
                    ev |= HOLIDAY if holiday else CANCELLED

                # 3. Ruptures (risk rises after cancelled weeks, the more of them the more, for anxious
                # clients) and repair of an earlier one; a repair restores the bond, can leave it stronger.
                break_risk = p.anxious_break_sensitivity[k] * d.rupture_scale[k, i] * d.anxiety[k, i]
                break_risk *= s.abandonment[k, i]
                rupture = attended and not s.pending[k, i] and r.rupture[t, i] < d.rupture_static[k, i] + break_risk
                repaired = False
                if attended and s.pending[k, i]:
                    p_repair = d.repair_open[k, i] + p.feedback_repair_boost[k] if flagged else d.repair_chance[k, i]
                    repaired = r.repair[t, i] < p_repair
                drop = d.rupture_drop[k, i] if rupture else 0.0
                regain = s.pending_drop[k, i] * (1.0 + p.repair_bonus[k]) if repaired else 0.0
                if rupture:
                    s.pending_drop[k, i] = drop
                    s.pending[k, i] = True
                    s.ruptures[k, i] += 1
                    cause = _rupture_cause(
                        p.rupture_anxiety[k] * d.anxiety[k, i],
                        p.rupture_avoidance[k] * d.avoidance[k, i],
                        p.cultural_strain_rupture[k] * d.strain[k, i],
                        break_risk / (d.rupture_scale[k, i] + 1e-12),
                    )
                    ev |= RUPTURE
                if repaired:
                    s.pending[k, i] = False
                    s.repairs[k, i] += 1
                    ev |= REPAIR
                if attended:
                    s.abandonment[k, i] *= 0.5  # the reaction fades over the sessions after a break

                # The bond grows toward its target only while no rupture is unrepaired; goals and tasks
                # converge through shared goal setting; feedback renegotiates a flagged client's goals.
                if attended:
                    if not s.pending[k, i]:
                        bond += d.bond_speed[k, i] * (d.bond_target[k, i] - bond)
                    collab = p.collaboration_rate[k]
                    goal += collab * (d.goal_target[k, i] - goal)
                    task += collab * (d.task_target[k, i] - task)
                bond = _clip01(bond - drop + regain)
                goal = goal - 0.5 * drop + 0.5 * regain
                if flagged:
                    goal += p.feedback_goal_boost[k] * (1.0 - goal)
                    ev |= OFF_TRACK
                goal = _clip01(goal)
                task = _clip01(task - 0.5 * drop + 0.5 * regain)
                s.bond[k, i], s.goal[k, i], s.task[k, i] = bond, goal, task
                alliance = (bond + goal + task) / 3.0
                hope = s.hope[k, i]
                if attended:
                    s.disclosure[k, i] += p.disclosure_rate[k] * (bond * d.trust[k, i] - s.disclosure[k, i])
                    hope += p.remoralization_rate[k] * bond * (1.0 - hope)

                # 4. Symptoms: negatively accelerated improvement by the session's dose, gated by
                # disclosure; weak alliances can make things worse; life events; remission and drift.
                severity = s.severity[k, i]
                change = -p.natural_recovery_rate[k] * severity
                if attended:
                    w_a, w_c = p.alliance_improvement_weight[k], p.competence_improvement_weight[k]
                    w_h = p.hope_improvement_weight[k]
                    dose = (w_a * alliance + w_c * d.competence[k, i] + w_h * hope) / (w_a + w_c + w_h + 1e-12)
                    gate = 1.0 - p.disclosure_gate[k] * (1.0 - s.disclosure[k, i])
                    engaged = 0.5 + 0.5 * s.engagement[k, i]
                    change -= p.improvement_rate[k] * dose * gate * engaged * severity
                    weakness = max(0.0, wat - alliance) / (wat + 1e-12)
                    adapted = 1.0 - p.feedback_adaptation[k] if flagged else 1.0
                    change += p.worsening_rate[k] * weakness * adapted
                if r.life_event[t, i] < p.life_event_rate[k]:
                    change += d.shock[k, i]
                    ev |= LIFE_EVENT
                severity = min(max(severity + change + p.symptom_noise_sd[k] * r.drift[t, i], 0.0), 27.0)
                s.severity[k, i] = severity

                # The PHQ-9 given at the session; felt progress feeds hope, both feed engagement.
                if attended:
                    ev |= ATTENDED
                    score = min(max(np.rint(severity + p.measurement_error_sd[k] * r.measurement[t, i]), 0.0), 27.0)
                    hope = _clip01(hope + p.progress_hope_weight[k] * (s.phq9[k, i] - score))
                    s.phq9[k, i] = score
                    n = s.attended[k, i] + 1
                    s.attended[k, i] = n
                    target = (hope + alliance + d.readiness[k, i]) / 3.0
                    s.engagement[k, i] += p.engagement_rate[k] * (target - s.engagement[k, i])
                    wai = _wai_sr(bond, goal, task)
                    if n <= 3:
                        s.early_alliance[k, i] += wai
                        s.early_goal[k, i] += goal
                    s.alliance_sum[k, i] += wai
                    # Routine outcome monitoring: not on track when the score has risen by the
                    # flagging threshold since intake. Every client is classified; only
                    # feedback-using therapists act on it (at the next session).
                    lagging = score - d.intake[k, i] >= p.not_on_track_worsening[k]
                    s.off_track[k, i] = n >= 3 and lagging
                    s.ever_off_track[k, i] |= s.off_track[k, i]
                    s.missed_run[k, i] = 0
                    s.below_run[k, i] = s.below_run[k, i] + 1 if score < CASENESS else 0
                elif missed:
                    s.missed_run[k, i] += 1
                    ev |= MISSED
                s.hope[k, i] = hope

                # 5. Endings: the planned sessions or the course window completed, a good-enough
                # ending, or a dropout hazard whose largest term is recorded as the cause.
                end = 0
                if s.attended[k, i] >= p.planned_sessions[k] or w >= p.last_week[k]:
                    end = 1
                    ev |= COMPLETED
                elif (
                    attended
                    and s.below_run[k, i] >= 2
                    and s.attended[k, i] >= p.good_enough_min_sessions[k]
                    and r.ending[t, i] < p.good_enough_rate[k]
                ):
                    end = 2
                    ev |= GOOD_ENOUGH
                else:
                    terms = (
                        p.dropout_alliance[k] * (wat - alliance),
                        p.dropout_rupture[k] * s.pending[k, i],
                        p.dropout_engagement[k] * (0.5 - s.engagement[k, i]),
                        p.dropout_barriers[k] * d.barriers[k, i],
                        p.dropout_early[k] * (w <= EARLY_WEEKS),
                        p.dropout_missed[k] * s.missed_run[k, i],
                        p.dropout_improved[k] * (s.phq9[k, i] < CASENESS),
                    )
                    dropout_cause, logit = _dropout_hazard(p.dropout_base[k], terms)
                    if r.dropout[t, i] < _expit(logit):
                        end = 3
                        s.dropout_cause[k, i] = dropout_cause
                        ev |= DROPOUT
                if end:
                    s.end_type[k, i] = end
                    s.end_week[k, i] = w
                    s.active[k, i] = False
                events[k, i] = ev
                rupture_cause[k, i] = cause


@njit(cache=True)
def _dropout_hazard(base, terms):
    """Dropout log-odds and its dominant cause (index into DROPOUT_CAUSES).

    The terms, in the order of DROPOUT_CAUSES[1:], are log-odds added to ``base``. Alliance counts
    from the weak-alliance threshold and engagement from the midpoint of its scale: below them they
    add risk, above them they protect. Every other term is zero when its risk factor is absent, so
    the largest term names the dominant cause.
    """
    total, best, cause = base, -np.inf, 0
    for j in range(len(terms)):
        total += terms[j]
        if terms[j] > best:
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
