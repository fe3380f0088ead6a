"""The session dynamics: one week of every dyad, written once over arrays.

Every array is shaped (n_sets, n_clients); parameters are arrays shaped (n_sets, 1) and random
draws are shaped (n_clients,), so one call advances every parameter set of a batch at once and a set
gives the same numbers alone or in any batch (all operations are elementwise along the set axis).

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

from dataclasses import dataclass, fields

import numpy as np
from scipy.special import expit

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
_EARLY_WEEKS = 3  # "early phase" of the dropout hazard
_FEEDBACK_RAMP = 8  # sessions over which the expected improvement (not_on_track_points) accrues


def wai_sr(bond, goal, task):
    """Working Alliance Inventory, short revised (12 items, 1-5): total on 12-60 from 0-1 parts."""
    return 12.0 + 16.0 * (bond + goal + task)


@dataclass
class Dyads:
    """What stays fixed over a course, per dyad; each field shape (n_sets, n_clients)."""

    anxiety: np.ndarray  # attachment anxiety rescaled to 0-1
    avoidance: np.ndarray  # attachment avoidance rescaled to 0-1
    cultural_match: np.ndarray  # same culture group (bool)
    strain: np.ndarray  # cultural strain: mismatch x salience x (1 - therapist humility)
    perceived_empathy: np.ndarray
    bond_target: np.ndarray
    bond_speed: np.ndarray
    goal_target: np.ndarray
    task_target: np.ndarray
    trust: np.ndarray  # share of the bond the client turns into disclosure
    rupture_static: np.ndarray  # per-session rupture probability without a preceding break
    rupture_scale: np.ndarray  # base risk, to which relative risks are added
    rupture_drop: np.ndarray  # bond lost at a rupture
    repair_chance: np.ndarray  # per-session repair probability as the therapist sees the client
    repair_open: np.ndarray  # the same with withdrawal made visible by feedback
    cancel_risk: np.ndarray
    break_dent: np.ndarray  # bond lost at a cancelled week
    attend_logit: np.ndarray  # attendance log-odds of a fully engaged client
    competence: np.ndarray
    uses_feedback: np.ndarray
    barriers: np.ndarray
    readiness: np.ndarray
    support: np.ndarray
    intake: np.ndarray
    shock: np.ndarray  # PHQ-9 points a life event adds, after support


@dataclass
class State:
    """What changes session by session, per dyad; each field shape (n_sets, n_clients)."""

    bond: np.ndarray
    goal: np.ndarray
    task: np.ndarray
    disclosure: np.ndarray
    hope: np.ndarray
    engagement: np.ndarray
    severity: np.ndarray  # true severity on the PHQ-9 scale, continuous
    phq9: np.ndarray  # last administered PHQ-9 (intake before the first session)
    active: np.ndarray
    end_type: np.ndarray  # index into END_TYPES
    end_week: np.ndarray
    dropout_cause: np.ndarray  # index into DROPOUT_CAUSES
    attended: np.ndarray  # sessions attended
    pending: np.ndarray  # an unrepaired rupture
    pending_drop: np.ndarray  # bond lost at that rupture
    ruptures: np.ndarray
    repairs: np.ndarray
    missed_run: np.ndarray  # consecutive missed sessions
    below_run: np.ndarray  # consecutive sessions below caseness
    after_break: np.ndarray  # the previous week was cancelled
    off_track: np.ndarray  # flagged not on track at the last session
    ever_off_track: np.ndarray
    early_alliance: np.ndarray  # sum of WAI-SR over sessions 1-3
    early_goal: np.ndarray  # sum of goal agreement over sessions 1-3
    alliance_sum: np.ndarray  # sum of WAI-SR over attended sessions


@dataclass
class Draws:
    """One week's random numbers; each field shape (n_clients,)."""

    cancel: np.ndarray
    attend: np.ndarray
    rupture: np.ndarray
    repair: np.ndarray
    ending: np.ndarray
    dropout: np.ndarray
    drift: np.ndarray
    measurement: np.ndarray
    life_event: np.ndarray


def intake(p: dict, therapist: dict, client, assignment_match: np.ndarray) -> Dyads:
    """Dyad constants from parameters, the assigned therapist's traits and the client's traits.

    Args:
        p: parameters, arrays shaped (n_sets, 1).
        therapist: the assigned therapist's traits gathered per client, shape (n_sets, n_clients).
        client: :class:`sim.population.Clients`.
        assignment_match: whether client and therapist share a culture group.
    """
    anxiety = (client.attachment_anxiety - 1.0) / 6.0
    avoidance = (client.attachment_avoidance - 1.0) / 6.0
    strain = ~assignment_match * client.salience * (1.0 - therapist["humility"])
    perceived = np.clip(
        therapist["empathy"] * (1.0 - p["cultural_strain_empathy"] * strain)
        + p["perceived_empathy_noise"] * client.perception_noise,
        0.0,
        1.0,
    )
    bond_target = np.clip(
        p["bond_base"] + p["bond_empathy_weight"] * perceived - p["avoidant_trust_penalty"] * avoidance, 0.0, 1.0
    )
    bond_speed = np.clip(
        p["bond_rate"] * (1.0 + p["anxious_bond_speedup"] * anxiety) * (1.0 - p["avoidant_bond_slowdown"] * avoidance),
        0.0,
        1.0,
    )
    competence = therapist["competence"]
    rupture_scale = p["rupture_rate"] * (1.0 - p["rupture_empathy_protection"] * perceived)
    relative = 1.0 + p["rupture_anxiety"] * anxiety + p["rupture_avoidance"] * avoidance
    relative = relative + p["cultural_strain_rupture"] * strain
    repair_open = p["repair_rate"] * (0.2 + 0.8 * therapist["repair_skill"])
    load = therapist["load"]
    overload = np.maximum(0.0, load / therapist["capacity"] - 1.0)
    return Dyads(
        anxiety=anxiety,
        avoidance=avoidance,
        cultural_match=assignment_match,
        strain=strain,
        perceived_empathy=perceived,
        bond_target=bond_target,
        bond_speed=bond_speed,
        goal_target=np.clip(p["agreement_base"] + p["goal_readiness_weight"] * client.readiness, 0.0, 1.0),
        task_target=np.clip(p["agreement_base"] + p["task_competence_weight"] * competence, 0.0, 1.0),
        trust=1.0 - 0.5 * avoidance,
        rupture_static=np.clip(rupture_scale * relative, 0.0, 1.0),
        rupture_scale=rupture_scale,
        rupture_drop=p["rupture_depth"] * (1.0 + anxiety),
        repair_chance=repair_open * (1.0 - p["withdrawal_concealment"] * avoidance),
        repair_open=repair_open,
        cancel_risk=p["cancellation_rate"] * (1.0 - therapist["consistency"]) + p["overload_cancellation"] * overload,
        break_dent=p["cancellation_trust_dent"] * (1.0 + p["anxious_break_sensitivity"] * anxiety),
        attend_logit=p["attendance_base"] - p["barriers_attendance"] * client.barriers,
        competence=competence,
        uses_feedback=therapist["uses_feedback"],
        barriers=client.barriers,
        readiness=client.readiness,
        support=client.support,
        intake=client.intake_phq9,
        shock=p["life_event_size"] * (1.0 - p["support_buffer"] * client.support),
    )


def initial_state(p: dict, d: Dyads, client) -> State:
    """State before the first session: alliance at its initial level, hope at expectancy."""
    shape = d.intake.shape
    start = np.broadcast_to(p["alliance_initial"], shape).astype(float)
    zeros_i = np.zeros(shape, dtype=np.int16)
    return State(
        bond=start.copy(),
        goal=start.copy(),
        task=start.copy(),
        disclosure=start * d.trust,
        hope=np.array(client.expectancy, dtype=float),
        engagement=(start + client.expectancy + client.readiness) / 3.0,
        severity=d.intake.astype(float),
        phq9=d.intake.astype(float),
        active=np.ones(shape, dtype=bool),
        end_type=np.zeros(shape, dtype=np.int8),
        end_week=zeros_i.copy(),
        dropout_cause=np.zeros(shape, dtype=np.int8),
        attended=zeros_i.copy(),
        pending=np.zeros(shape, dtype=bool),
        pending_drop=np.zeros(shape),
        ruptures=zeros_i.copy(),
        repairs=zeros_i.copy(),
        missed_run=zeros_i.copy(),
        below_run=zeros_i.copy(),
        after_break=np.zeros(shape, dtype=bool),
        off_track=np.zeros(shape, dtype=bool),
        ever_off_track=np.zeros(shape, dtype=bool),
        early_alliance=np.zeros(shape),
        early_goal=np.zeros(shape),
        alliance_sum=np.zeros(shape),
    )


def copy_state(s: State) -> State:
    """An independent copy of a state."""
    return State(**{f.name: getattr(s, f.name).copy() for f in fields(State)})


def week(w: int, p: dict, d: Dyads, s: State, r: Draws) -> tuple[np.ndarray, np.ndarray]:
    """Advance every active dyad by one weekly session slot, in place.

    Args:
        w: the week, from 1.
        p: parameters, arrays shaped (n_sets, 1); ``last_week`` and holiday bounds included.
        d: dyad constants.
        s: state, updated in place.
        r: this week's draws.

    Returns:
        The week's event flags (uint16) and the cause of any rupture (index into RUPTURE_CAUSES),
        each shape (n_sets, n_clients).
    """
    active = s.active
    holiday = (w >= p["planned_break_start"]) & (w < p["planned_break_start"] + p["planned_break_weeks"])
    cancelled = active & ((r.cancel < d.cancel_risk) | holiday)
    p_attend = expit(d.attend_logit - p["engagement_attendance"] * (1.0 - s.engagement))
    open_slot = active & ~cancelled
    attended = open_slot & (r.attend < p_attend)
    missed = open_slot ^ attended
    flagged = attended & d.uses_feedback & s.off_track

    # A cancelled week dents trust; the next session carries a risk of an abandonment rupture.
    s.bond -= d.break_dent * cancelled
    np.maximum(s.bond, 0.0, out=s.bond)

    # Ruptures and repair.
    break_risk = (p["anxious_break_sensitivity"] * d.rupture_scale) * (d.anxiety * s.after_break)
    rupture = attended & ~s.pending & (r.rupture < d.rupture_static + break_risk)
    can_repair = attended & s.pending
    p_repair = np.where(flagged, d.repair_open + p["feedback_repair_boost"], d.repair_chance)
    repaired = can_repair & (r.repair < p_repair)
    drop = d.rupture_drop * rupture
    regain = s.pending_drop * (1.0 + p["repair_bonus"]) * repaired
    s.pending_drop = np.where(rupture, d.rupture_drop, s.pending_drop)
    s.pending = (s.pending | rupture) & ~repaired
    s.ruptures += rupture
    s.repairs += repaired
    s.after_break = cancelled

    # Alliance: the bond grows toward its target only while no rupture is unrepaired; goals and
    # tasks converge through shared goal setting, and feedback renegotiates a flagged client's goals.
    growth = d.bond_speed * (attended & ~s.pending)
    s.bond += growth * (d.bond_target - s.bond) - drop + regain
    collab = p["collaboration_rate"] * attended
    s.goal += collab * (d.goal_target - s.goal) - 0.5 * drop + 0.5 * regain
    s.goal += p["feedback_goal_boost"] * flagged * (1.0 - s.goal)
    s.task += collab * (d.task_target - s.task) - 0.5 * drop + 0.5 * regain
    for part in (s.bond, s.goal, s.task):
        np.clip(part, 0.0, 1.0, out=part)
    alliance = (s.bond + s.goal + s.task) / 3.0
    s.disclosure += (p["disclosure_rate"] * attended) * (s.bond * d.trust - s.disclosure)
    s.hope += (p["remoralization_rate"] * attended) * s.bond * (1.0 - s.hope)

    # Symptom change: negatively accelerated improvement by the session's dose, gated by disclosure;
    # weak alliances can make things worse; life events; natural remission and drift.
    w_a, w_c, w_h = p["alliance_improvement_weight"], p["competence_improvement_weight"], p["hope_improvement_weight"]
    dose = (w_a * alliance + w_c * d.competence + w_h * s.hope) / (w_a + w_c + w_h + 1e-12)
    gate = 1.0 - p["disclosure_gate"] * (1.0 - s.disclosure)
    improve = (p["improvement_rate"] * attended) * dose * gate * (0.5 + 0.5 * s.engagement) * s.severity
    weakness = np.maximum(0.0, p["weak_alliance_threshold"] - alliance) / (p["weak_alliance_threshold"] + 1e-12)
    worsen = (p["worsening_rate"] * attended) * weakness * (1.0 - p["feedback_adaptation"] * flagged)
    life = active & (r.life_event < p["life_event_rate"])
    change = worsen - improve + d.shock * life - p["natural_recovery_rate"] * s.severity
    s.severity += (change + p["symptom_noise_sd"] * r.drift) * active
    np.clip(s.severity, 0.0, 27.0, out=s.severity)

    # The PHQ-9 given at the session; felt progress feeds hope.
    score = np.clip(np.round(s.severity + p["measurement_error_sd"] * r.measurement), 0.0, 27.0)
    s.hope += (p["progress_hope_weight"] * attended) * (s.phq9 - score)
    np.clip(s.hope, 0.0, 1.0, out=s.hope)
    s.phq9 = np.where(attended, score, s.phq9)
    s.attended += attended
    target = (s.hope + alliance + d.readiness) / 3.0
    s.engagement += (p["engagement_rate"] * attended) * (target - s.engagement)
    wai = wai_sr(s.bond, s.goal, s.task)
    early = attended & (s.attended <= 3)
    s.early_alliance += wai * early
    s.early_goal += s.goal * early
    s.alliance_sum += wai * attended

    # Routine outcome monitoring: not on track when improvement lags the expected curve, or the
    # alliance is weak. Every client is classified; only feedback-using therapists act on it.
    expected = p["not_on_track_points"] * np.minimum(s.attended, _FEEDBACK_RAMP) / _FEEDBACK_RAMP
    lagging = (d.intake - s.phq9 < expected) | (alliance < p["weak_alliance_threshold"])
    s.off_track = np.where(attended, (s.attended >= 3) & lagging, s.off_track)
    s.ever_off_track |= s.off_track
    s.missed_run = np.where(attended, 0, s.missed_run + missed)
    s.below_run = np.where(attended, (s.below_run + 1) * (s.phq9 < CASENESS), s.below_run)

    # Endings: completion of the planned sessions or of the course window, a good-enough ending,
    # and otherwise a dropout hazard whose largest term is recorded as the cause.
    completed = active & ((s.attended >= p["planned_sessions"]) | (w >= p["last_week"]))
    good_enough = (
        attended
        & ~completed
        & (s.below_run >= 2)
        & (s.attended >= p["good_enough_min_sessions"])
        & (r.ending < p["good_enough_rate"])
    )
    terms = _dropout_terms(w, p, d, s, alliance)
    hazard = expit(p["dropout_base"] + sum(terms))
    dropout = active & ~completed & ~good_enough & (r.dropout < hazard)
    if dropout.any():
        where = np.nonzero(dropout)
        s.dropout_cause[where] = 1 + np.argmax(
            np.stack([np.broadcast_to(t, dropout.shape)[where] for t in terms]), axis=0
        )
    s.end_type[completed] = 1
    s.end_type[good_enough] = 2
    s.end_type[dropout] = 3
    ended = completed | good_enough | dropout
    s.end_week[ended] = w
    s.active = active & ~ended

    events = (
        attended * ATTENDED
        + missed * MISSED
        + cancelled * CANCELLED
        + (active & holiday) * HOLIDAY
        + rupture * RUPTURE
        + repaired * REPAIR
        + life * LIFE_EVENT
        + flagged * OFF_TRACK
        + good_enough * GOOD_ENOUGH
        + completed * COMPLETED
        + dropout * DROPOUT
    ).astype(np.uint16)
    return events, _rupture_cause(p, d, rupture, break_risk)


def _dropout_terms(w, p, d, s, alliance):
    """Log-odds contributions to the dropout hazard, in the order of DROPOUT_CAUSES[1:].

    Alliance and engagement count from the midpoint of their scales: below it they add risk, above
    it they protect. Every other term is zero when its risk factor is absent, so the largest term
    names the dominant cause of a dropout.
    """
    return (
        p["dropout_alliance"] * (0.5 - alliance),
        p["dropout_rupture"] * s.pending,
        p["dropout_engagement"] * (0.5 - s.engagement),
        p["dropout_barriers"] * d.barriers,
        p["dropout_early"] * (w <= _EARLY_WEEKS),
        p["dropout_missed"] * s.missed_run,
        p["dropout_improved"] * (s.phq9 < CASENESS),
    )


def _rupture_cause(p, d, rupture, break_risk):
    """The largest relative-risk term behind each rupture (index into RUPTURE_CAUSES)."""
    cause = np.zeros(rupture.shape, dtype=np.int8)
    if not rupture.any():
        return cause
    where = np.nonzero(rupture)
    scale = np.broadcast_to(d.rupture_scale, rupture.shape)[where] + 1e-12

    def at(x):
        return np.broadcast_to(x, rupture.shape)[where]

    terms = np.stack(
        [
            np.ones(len(where[0])),
            at(p["rupture_anxiety"] * d.anxiety),
            at(p["rupture_avoidance"] * d.avoidance),
            at(p["cultural_strain_rupture"] * d.strain),
            at(break_risk) / scale,
        ]
    )
    cause[where] = 1 + np.argmax(terms, axis=0)
    return cause
